#!/usr/bin/env bash
# Reproduce the committed demo weights: phantom release → nnU-Net (tiny CPU configuration).
# Phantom-trained demo weights, NOT for clinical use. About 1 h on 2 CPU cores (two trainings run
# side by side, one thread each).
#
#   bash scripts/train_demo_weights.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-work/demo}
. .venv/bin/activate

[ -d "$WORK/release" ] || hnseg phantoms --out "$WORK/release" --n 48 --seed 0 --layout release

common=(--release "$WORK/release" --tiny --tiny-spacing 3.5,2.5,2.5 --tiny-patch 24,48,48
        --tiny-features 8,16,32,64 --tiny-batch 2 --epochs 100 --iterations 30 --val-iterations 4
        --device cpu --seed 0 --demo)
note="phantom-trained demo weights, not for clinical use"
export OMP_NUM_THREADS=1

# One training run: task, prior, work folder, weights folder, folds, note suffix.
train() {
    local task=$1 prior=$2 work=$3 out=$4 folds=$5 suffix=${6:-}
    hnseg train --task "$task" --prior "$prior" --work "$WORK/$work" --out "$out" --folds "$folds" \
        --note "$note$suffix" "${common[@]}"
}
variant="; prior-benchmark variant (folds 0,1 only)"

# stream 1: the shipped task-2 model (box prior = the seed's gradient map), 5 folds; then the
# no-prior benchmark variant (same recipe per fold, folds 0 and 1 only, to fit the CPU budget)
( train hntsmrg-task2 box task2-box weights/hntsmrg-task2 0,1,2,3,4
  train hntsmrg-task2 none task2-none weights/variants/hntsmrg-task2-none 0,1 "$variant"
) > "$WORK/stream1.log" 2>&1 &
s1=$!
# stream 2: task 1 (its profile has no prior channel, so --prior is ignored), 5 folds; then the
# box-free (band) prior benchmark variant, folds 0 and 1
( train hntsmrg-task1 box task1 weights/hntsmrg-task1 0,1,2,3,4
  train hntsmrg-task2 band task2-band weights/variants/hntsmrg-task2-band 0,1 "$variant"
) > "$WORK/stream2.log" 2>&1 &
s2=$!
wait "$s1"
wait "$s2"
echo "demo weights written under weights/"
