#!/usr/bin/env bash
# Reproduce the committed CT demo weights (segrap-task1, segrap-task2, npc-targets) on one GPU:
# phantom releases (seeds 0…N-1) → nnU-Net plan/preprocess (a 5-stage one-conv-per-stage plain
# U-Net at the planner's full-resolution spacing) → every fold of every task trained side by side,
# each within a wall-clock budget → export (float16 weights). Phantom-trained demo weights, NOT for
# clinical use. Measured run: see benchmarks/README.md (one H100, 16 cores).
#
#   bash scripts/train_ct_demo_weights.sh [WORK_DIR] [MINUTES_PER_FOLD]
#
# Environment: FOLDS (default "0 1 2"), N_CASES (40), EPOCHS (40), DEVICE (cuda), DA_WORKERS per
# training (2), TASKS (all three), OUT_ROOT (weights), HNSEG (command; default: the venv's hnseg,
# else "python3 -m hnseg").
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-work/demo-ct-gpu}
MINUTES=${2:-14}
FOLDS=${FOLDS:-0 1 2}
N_CASES=${N_CASES:-40}
EPOCHS=${EPOCHS:-40}
OUT_ROOT=${OUT_ROOT:-weights}
DEVICE=${DEVICE:-cuda}
TASKS=${TASKS:-segrap-task1 segrap-task2 npc-targets}
. scripts/ct_demo_common.sh
export nnUNet_n_proc_DA=${DA_WORKERS:-2} nnUNet_compile=false OMP_NUM_THREADS=1
mkdir -p "$WORK"
note="phantom-trained demo weights, not for clinical use (scripts/train_ct_demo_weights.sh)"

# task: patch (z,y,x voxels) and batch; all share features and the planner's spacing
patch_of() { case $1 in segrap-task2) echo 32,96,96 ;; *) echo 48,128,128 ;; esac; }

# 1. phantom releases (the SegRap layout serves both SegRap tasks)
make_releases 8

# 2. convert + plan + preprocess, the three tasks side by side
for t in $TASKS; do
    $HNSEG train --task "$t" --release "$(release_of "$t")" --work "$WORK/$t" --steps convert,plan \
        --tiny --tiny-patch "$(patch_of "$t")" --tiny-features 16,32,64,128,192 --tiny-batch 2 \
        --processes 4 --seed 0 > "$WORK/$t.plan.log" 2>&1 &
done
wait

# 3. every fold of every task at once, each within MINUTES
for t in $TASKS; do
    for f in $FOLDS; do
        $HNSEG train --task "$t" --work "$WORK/$t" --steps train --folds "$f" --device "$DEVICE" \
            --epochs "$EPOCHS" --iterations 50 --val-iterations 5 --minutes-per-fold "$MINUTES" --seed 0 \
            > "$WORK/$t.fold$f.log" 2>&1 &
    done
done
wait

# 4. export float16 weights into weights/<task>
folds=$(echo $FOLDS | tr ' ' ',')
for t in $TASKS; do
    $HNSEG train --task "$t" --release "$(release_of "$t")" --work "$WORK/$t" --steps export \
        --folds "$folds" --out "$OUT_ROOT/$t" --weights-dtype float16 --demo --note "$note" --seed 0
done
echo "CT demo weights written under $OUT_ROOT/"
