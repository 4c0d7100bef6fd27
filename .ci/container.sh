#!/usr/bin/env bash
# CI: build the algorithm image under a real Docker engine and validate it with test.sh.
#  1. install docker.io + debootstrap (Debian packages) if missing; start dockerd; fail loudly if it
#     does not come up;
#  2. build a stand-in python 3.11 base image from Debian packages (no image registry is reachable);
#  3. collect every wheel the image needs into .wheels/ (the host's pip and its indexes: the build
#     itself then needs no network), including the local torch/torchvision pair;
#  4. hadolint the Dockerfile; build with BASE_IMAGE + LOCAL_WHEELS through build.sh and run every
#     bundled case with test.sh (grand-challenge flags); then the container pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${HNSEG_IMAGE:-hnseg:ci}
BASE=hnseg-ci-base:bookworm-py311
PY=.venv/bin/python

step() { echo; echo "=== $(date +%H:%M:%S) $*"; }

step "docker engine"
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  nohup dockerd >/tmp/hnseg-ci-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
if ! docker info >/dev/null 2>&1; then
  echo "CI: the Docker engine did not start; dockerd's log:" >&2
  tail -n 40 /tmp/hnseg-ci-dockerd.log >&2 || true
  exit 1
fi
docker version --format 'engine started: server {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}'

step "stand-in base image from Debian packages"
bash .ci/base-image.sh "$BASE"

step "wheels for the offline build"
# pip's exit status decides (pipefail); grep only drops the index-location warnings, and its own
# "no line left" status 1 is not a failure
"$PY" -m pip wheel -q --disable-pip-version-check -w .wheels -r requirements-torch.txt -r requirements.txt 2>&1 \
  | { grep -v "^WARNING: Location" || [ $? -eq 1 ]; }
echo "$(ls .wheels/*.whl | wc -l) wheels, $(du -sh .wheels | cut -f1)"

step "hadolint"
.venv/bin/hadolint --failure-threshold style Dockerfile   # set -e: a finding stops CI here
echo "hadolint: Dockerfile clean"

step "build + test.sh"
start=$(date +%s)
./test.sh --image "$IMAGE" -- --base "$BASE" --local-wheels .wheels --torch-requirements requirements-torch.txt
echo "build + test.sh: $(($(date +%s) - start)) s"

step "container test suite"
HNSEG_TEST_IMAGE=$IMAGE "$PY" -m pytest -q -m container test/container
