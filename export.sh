#!/usr/bin/env bash
# Export the algorithm for grand-challenge: the image as a dated, gzipped `docker save` tarball, and
# the weights as model.tar.gz (grand-challenge's separate Model upload, extracted to /opt/ml/model).
#
#   ./export.sh [--image NAME:TAG] [--out DIR] [--weights DIR] [--no-image] [--no-model]
#
#   --image     image to save (default: $HNSEG_IMAGE or hnseg:latest; build it with ./build.sh)
#   --out       destination folder (default: export/)
#   --weights   folder of task weight folders to pack (default: weights/; variants/ is left out)
#   --no-image / --no-model   skip one of the two tarballs
#
# Writes OUT/hnseg_<version>_<YYYY-MM-DD>.tar.gz and OUT/model.tar.gz (task folders at its top:
# hntsmrg-task1/, hntsmrg-task2/, each verified against its sha256 manifest first), then prints
# their sizes and sha256. Each file appears complete or not at all (temp name, then rename).
set -euo pipefail
cd "$(dirname "$0")"

IMAGE=${HNSEG_IMAGE:-hnseg:latest}
OUT=export
WEIGHTS=weights
DO_IMAGE=1
DO_MODEL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --image) IMAGE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --weights) WEIGHTS=$2; shift 2 ;;
    --no-image) DO_IMAGE=0; shift ;;
    --no-model) DO_MODEL=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "export.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

docker image inspect "$IMAGE" >/dev/null 2>&1 || {
  echo "export.sh: image $IMAGE not found; build it first with ./build.sh" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
GZIP_CMD=(gzip -c -n)
command -v pigz >/dev/null 2>&1 && GZIP_CMD=(pigz -c -n)

report() { printf '%-40s %10s  sha256 %s\n' "$(basename "$1")" "$(du -h "$1" | cut -f1)" "$(sha256sum "$1" | cut -d' ' -f1)"; }

if [ "$DO_MODEL" = 1 ]; then
  WEIGHTS=$(cd "$WEIGHTS" && pwd)
  mapfile -t TASKS < <(find "$WEIGHTS" -mindepth 2 -maxdepth 2 -name hnseg_weights.json -printf '%h\n' | xargs -rn1 basename | sort)
  [ "${#TASKS[@]}" -gt 0 ] || { echo "export.sh: no <task>/hnseg_weights.json under $WEIGHTS" >&2; exit 2; }
  echo "verifying ${TASKS[*]} (sha256 manifests) with $IMAGE"
  # grand-challenge's restrictions; verify builds the networks, and nnU-Net's trainer module imports
  # matplotlib, which needs a writable temp folder (MPLCONFIGDIR points into /tmp)
  docker run --rm --network none --read-only --tmpfs /tmp:rw,size=512m,mode=1777 --cap-drop ALL \
    --security-opt no-new-privileges --entrypoint python -v "$WEIGHTS":/weights:ro "$IMAGE" \
    -m hnseg weights verify "${TASKS[@]/#//weights/}"
  tmp="$OUT/.model.tar.gz.part"
  # reproducible: sorted names, fixed owner and time, no gzip timestamp
  tar -C "$WEIGHTS" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=a+rX,u+w \
    -cf - "${TASKS[@]}" | "${GZIP_CMD[@]}" >"$tmp"
  mv -f "$tmp" "$OUT/model.tar.gz"
  report "$OUT/model.tar.gz"
fi

if [ "$DO_IMAGE" = 1 ]; then
  name="hnseg_${VERSION}_$(date +%Y-%m-%d).tar.gz"
  tmp="$OUT/.$name.part"
  echo "saving $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1/1e9}') uncompressed)"
  docker save "$IMAGE" | "${GZIP_CMD[@]}" >"$tmp"
  mv -f "$tmp" "$OUT/$name"
  report "$OUT/$name"
fi
