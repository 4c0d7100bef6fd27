#!/usr/bin/env bash
# Image size and the wall time / peak memory of containerized cases on this machine, run with
# test.sh's grand-challenge flags (CPU unless a GPU is usable). Prints numbers; not a test.
#   benchmarks/container_case.sh [IMAGE] [CASE_DIR …]   (default hnseg:latest, the two bundled cases)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-hnseg:latest}; shift || true
[ $# -gt 0 ] || set -- test/input/hntsmrg-task1-5101 test/input/hntsmrg-task2-5100
docker image inspect --format 'image {{index .RepoTags 0}}: {{.Size}} bytes' "$IMAGE" \
  | awk '{printf "%s %s %.2f GB (%.2f GiB) uncompressed\n", $1, $2, $3/1e9, $3/2^30}'
GPU=(); nvidia-smi -L >/dev/null 2>&1 && GPU=(--gpus all)
printf '%-28s %10s %14s\n' case wall_s peak_rss_MiB
for case in "$@"; do
  out=$(mktemp -d); chmod 777 "$out"
  start=$(date +%s%N)
  # same entry point, wrapped to report the process's peak resident memory
  rss=$(docker run --rm --network none --read-only --tmpfs /tmp:rw,exec,size=4g \
        --cap-drop ALL --security-opt no-new-privileges --pids-limit 256 --memory 8g --shm-size 2g \
        "${GPU[@]}" -v "$(cd "$case" && pwd)":/input:ro -v "$out":/output --entrypoint python "$IMAGE" -c '
import resource, runpy, sys
sys.argv = ["inference.py"]
try:
    runpy.run_path("inference.py", run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)' 2>/dev/null | tail -n1)
  ms=$((($(date +%s%N) - start) / 1000000))
  printf '%-28s %10s %14s\n' "$(basename "$case")" "$((ms / 1000)).$((ms % 1000 / 100))" "$rss"
  rm -rf "$out"
done
