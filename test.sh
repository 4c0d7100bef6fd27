#!/usr/bin/env bash
# Validate the algorithm container the way grand-challenge runs it, on every case under test/input/.
#
#   ./test.sh [--no-build] [--image NAME:TAG] [--cases DIR] [--expected DIR] [--model DIR]
#             [--run-env DIR] [--memory 8g] [--max-voxel-fraction F] [--keep DIR] [-- BUILD.SH ARGS…]
#
# For each case folder DIR/<case>/ (grand-challenge layout: inputs.json + images/<slug>/*.mha) the
# container runs with --network none, /input read-only, a read-only root file system with a tmpfs /tmp,
# --cap-drop ALL, no-new-privileges, a pids and a memory limit, --shm-size, and --gpus all only when
# a GPU is usable. Then:
#   - a case with EXPECTED/<case>/EXPECTED_ERROR must exit non-zero, print the error named in that
#     file, and leave /output empty;
#   - any other case must exit 0 and its /output must match EXPECTED/<case>/ (same files, same geometry,
#     identical voxels; checked by `hnseg compare` inside the image, so the host needs only Docker).
# A per-case verdict is printed; the exit status is non-zero on any mismatch.
#
#   --no-build           use the existing image (default: ./build.sh first, with the args after --)
#   --model DIR          mount DIR at /opt/ml/model (a grand-challenge model tarball, extracted)
#   --run-env DIR        a case with DIR/<case>.env runs with that --env-file (default test/run_env):
#                        e.g. HNSEG_TASK=segrap-task2, as an image built with ./build.sh --task would
#   --max-voxel-fraction label maps may differ in F x (expected foreground voxels). Default 0 on the
#                        CPU. On a GPU (used when nvidia-smi sees one and torch in the image can use
#                        it) the default is 0.005: the expected outputs were made on a CPU, and GPU
#                        convolutions sum in another order, flipping voxels at the 0.5 boundary.
#   --keep DIR           keep every case's output and log under DIR (default: a temp folder, removed)
set -euo pipefail
cd "$(dirname "$0")"

IMAGE=${HNSEG_IMAGE:-hnseg:latest}
CASES=test/input
EXPECTED=test/expected_output
MODEL=""
RUN_ENV=test/run_env
MEMORY=8g
FRACTION=""
KEEP=""
BUILD=1
BUILD_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    --image) IMAGE=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    --expected) EXPECTED=$2; shift 2 ;;
    --model) MODEL=$(cd "$2" && pwd); shift 2 ;;
    --run-env) RUN_ENV=$2; shift 2 ;;
    --memory) MEMORY=$2; shift 2 ;;
    --max-voxel-fraction) FRACTION=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    --) shift; BUILD_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
CASES=$(cd "$CASES" && pwd)
EXPECTED=$(cd "$EXPECTED" && pwd)

if [ "$BUILD" = 1 ]; then
  ./build.sh --tag "$IMAGE" "${BUILD_ARGS[@]}"
fi

# grand-challenge rejects images that run as root
USER_OF_IMAGE=$(docker image inspect --format '{{.Config.User}}' "$IMAGE")
case "${USER_OF_IMAGE%%:*}" in
  ""|root|0) echo "FAIL image $IMAGE runs as root (Config.User '$USER_OF_IMAGE'); grand-challenge rejects it" >&2; exit 1 ;;
esac
echo "image $IMAGE: user $USER_OF_IMAGE, $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1/1e9}')"

GPU_ARGS=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  # a GPU on the host is usable only if Docker can hand it over and the image's torch can drive it
  if docker run --rm --network none --gpus all --entrypoint python "$IMAGE" \
       -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    GPU_ARGS=(--gpus all)
    FRACTION=${FRACTION:-0.005}
    echo "GPU found: running with --gpus all (label maps may differ in $FRACTION of the expected foreground)"
  else
    echo "WARNING: nvidia-smi sees a GPU but the container cannot use it (NVIDIA container toolkit? driver too old for the image's CUDA?): running on the CPU"
  fi
else
  echo "no GPU: running on the CPU"
fi
FRACTION=${FRACTION:-0}

if [ -n "$KEEP" ]; then
  mkdir -p "$KEEP"; WORK=$(cd "$KEEP" && pwd)
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/hnseg-test.XXXXXX")
fi
cleanup() {
  # outputs belong to the image's user: remove them from inside a container when we may not
  if [ -z "$KEEP" ]; then
    rm -rf "$WORK" 2>/dev/null || {
      docker run --rm --network none --entrypoint sh -v "$WORK":/work "$IMAGE" -c 'rm -rf /work/*' >/dev/null 2>&1 || true
      rm -rf "$WORK" || true
    }
  fi
}
trap cleanup EXIT

# grand-challenge's restrictions (see ../README.md); /input and /output are added per case
RUN_FLAGS=(--rm --network none --read-only --tmpfs /tmp:rw,exec,size=4g,mode=1777
           --cap-drop ALL --security-opt no-new-privileges
           --pids-limit 256 --memory "$MEMORY" --memory-swap "$MEMORY" --shm-size 2g "${GPU_ARGS[@]}")
[ -n "$MODEL" ] && RUN_FLAGS+=(-v "$MODEL":/opt/ml/model:ro)
echo "docker run ${RUN_FLAGS[*]} -v <case>:/input:ro -v <out>:/output $IMAGE"

run_case() {  # $1 case name, $2 output dir, $3 log file; prints the container's exit code
  local env_args=()
  [ -f "$RUN_ENV/$1.env" ] && env_args=(--env-file "$RUN_ENV/$1.env")
  set +e
  docker run "${RUN_FLAGS[@]}" "${env_args[@]}" -v "$CASES/$1":/input:ro -v "$2":/output "$IMAGE" >"$3" 2>&1
  echo $?
  set -e
}

FAILED=0
N=0
declare -a SUMMARY
for dir in "$CASES"/*/; do
  case=$(basename "$dir")
  N=$((N + 1))
  out="$WORK/$case/output"
  log="$WORK/$case/container.log"
  mkdir -p "$out"
  chmod 777 "$out"  # writable by the image's non-root user, as grand-challenge's /output is
  echo "== $case"
  start=$(date +%s%N)
  rc=$(run_case "$case" "$out" "$log")
  ms=$((($(date +%s%N) - start) / 1000000))
  secs="$((ms / 1000)).$((ms % 1000 / 100))"
  verdict=PASS
  if [ -f "$EXPECTED/$case/EXPECTED_ERROR" ]; then
    want=$(head -n1 "$EXPECTED/$case/EXPECTED_ERROR")
    leftovers=$(find "$out" -mindepth 1 | head -n 5)
    if [ "$rc" = 0 ]; then
      verdict=FAIL; echo "  FAIL expected a non-zero exit with $want, got exit 0"
    elif ! grep -q "^$want: " "$log"; then
      verdict=FAIL; echo "  FAIL exit $rc but no '$want: …' line in the container's output"
    elif [ -n "$leftovers" ]; then
      verdict=FAIL; echo "  FAIL /output is not empty after the failure: $leftovers"
    else
      echo "  ok   exit $rc, /output empty: $(grep -m1 "^$want: " "$log" | cut -c1-160)…"
    fi
  elif [ "$rc" != 0 ]; then
    verdict=FAIL; echo "  FAIL container exited $rc; last lines of its output:"; tail -n 15 "$log" | sed 's/^/    /'
  elif [ ! -d "$EXPECTED/$case" ]; then
    verdict=FAIL; echo "  FAIL no expected output folder $EXPECTED/$case"
  else
    set +e
    docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
      --entrypoint python -v "$EXPECTED/$case":/expected:ro -v "$out":/actual:ro "$IMAGE" \
      -m hnseg compare --expected /expected --actual /actual --max-voxel-fraction "$FRACTION"
    [ $? = 0 ] || verdict=FAIL
    set -e
  fi
  [ "$verdict" = PASS ] || FAILED=$((FAILED + 1))
  SUMMARY+=("$(printf '%-36s %-5s exit %-3s %8ss' "$case" "$verdict" "$rc" "$secs")")
done

echo
echo "case                                 verdict exit    wall"
printf '%s\n' "${SUMMARY[@]}"
if [ "$N" = 0 ]; then echo "test.sh: no case folders under $CASES" >&2; exit 1; fi
echo "$((N - FAILED)) passed, $FAILED failed"
[ "$FAILED" = 0 ]
