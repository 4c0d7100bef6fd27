#!/usr/bin/env bash
# Build and tag the hnseg algorithm image (linux/amd64).
#
#   ./build.sh [--tag NAME:TAG] [--base IMAGE] [--local-wheels DIR] [--torch-requirements FILE]
#              [--task TASK] [-- EXTRA DOCKER BUILD ARGS…]
#
#   --tag                image name (default: $HNSEG_IMAGE or hnseg:latest; also tagged hnseg:<version>)
#   --base               BASE_IMAGE build arg (default: the pinned python:3.11 slim image in Dockerfile)
#   --local-wheels DIR   install every dependency from the wheel files in DIR (a folder inside this
#                        repository, e.g. .wheels) instead of the package index: air-gapped builds
#   --torch-requirements FILE   torch/torchvision pins (default requirements-torch-cuda12.txt)
#   --task TASK          bake HNSEG_TASK=TASK into the image: the task it runs when the inputs fit
#                        several (an image for SegRap task 1 or task 2; grand-challenge passes no flags)
#   Any argument after -- goes to `docker build` unchanged (e.g. --build-arg X=Y, --no-cache).
set -euo pipefail
cd "$(dirname "$0")"

TAG=${HNSEG_IMAGE:-hnseg:latest}
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=$2; shift 2 ;;
    --base) ARGS+=(--build-arg "BASE_IMAGE=$2"); shift 2 ;;
    --local-wheels)
      dir=${2%/}
      case "$dir" in /*|../*) echo "build.sh: --local-wheels $2: expected a folder inside $(pwd) (the build context)" >&2; exit 2 ;; esac
      [ -d "$dir" ] || { echo "build.sh: --local-wheels $2: no such folder" >&2; exit 2; }
      ls "$dir"/*.whl >/dev/null 2>&1 || { echo "build.sh: --local-wheels $2: expected .whl files, found none" >&2; exit 2; }
      ARGS+=(--build-arg "LOCAL_WHEELS=$dir"); shift 2 ;;
    --torch-requirements)
      [ -f "$2" ] || { echo "build.sh: --torch-requirements $2: no such file" >&2; exit 2; }
      ARGS+=(--build-arg "TORCH_REQUIREMENTS=$2"); shift 2 ;;
    --task)
      case "$2" in hntsmrg-task1|hntsmrg-task2|segrap-task1|segrap-task2|npc-targets) ;;
        *) echo "build.sh: --task $2: expected one of hntsmrg-task1 hntsmrg-task2 segrap-task1 segrap-task2 npc-targets" >&2; exit 2 ;;
      esac
      ARGS+=(--build-arg "TASK=$2"); shift 2 ;;
    --) shift; ARGS+=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
echo "building $TAG (hnseg $VERSION) for linux/amd64; build args: ${ARGS[*]:-(defaults)}"
docker build --platform linux/amd64 -t "$TAG" -t "${TAG%%:*}:$VERSION" "${ARGS[@]}" .
docker image inspect "$TAG" --format 'built {{.RepoTags}}: {{.Size}} bytes, user {{.Config.User}}'
