#!/usr/bin/env bash
# Reproduce the committed CPU-trained CT demo weights (segrap-task1, npc-targets) on a 2-core machine
# without a GPU: phantom releases (seeds 0…39) → nnU-Net plan/preprocess with a tiny configuration at
# 3 mm isotropic spacing (patch 48×64×64, 5-stage one-conv PlainConvUNet 16…192 features, batch 2) →
# fold 0 of both tasks trained side by side, each within a wall-clock budget, with the AdamW
# variants of the task's trainer (hnseg/training/trainers/adamw.py: SGD barely starts in so few
# iterations) → export (float16). Phantom-trained demo weights, NOT for clinical use.
# Measured run: benchmarks/README.md.
#
#   bash scripts/train_ct_demo_weights_cpu.sh [WORK_DIR] [MINUTES]
#
# Environment: TASKS (default both), OUT_ROOT (weights), N_CASES (40), EPOCHS (40), HNSEG (command).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-work/demo-ct-cpu}
MINUTES=${2:-75}
TASKS=${TASKS:-segrap-task1 npc-targets}
OUT_ROOT=${OUT_ROOT:-weights}
N_CASES=${N_CASES:-40}
EPOCHS=${EPOCHS:-40}
. scripts/ct_demo_common.sh
export OMP_NUM_THREADS=2 nnUNet_compile=false nnUNet_n_proc_DA=1
mkdir -p "$WORK"
note="phantom-trained demo weights (CPU, AdamW, one fold), not for clinical use (scripts/train_ct_demo_weights_cpu.sh)"

trainer_of() { case $1 in npc-targets) echo nnUNetTrainerHnsegMultiTaskAdam ;; *) echo nnUNetTrainerDiceFocalAdam ;; esac; }

make_releases 2

for t in $TASKS; do
    $HNSEG train --task "$t" --release "$(release_of "$t")" --work "$WORK/$t" --steps convert,plan \
        --tiny --tiny-patch 48,64,64 --tiny-spacing 3,3,3 --tiny-features 16,32,64,128,192 --tiny-batch 2 \
        --processes 1 --seed 0 > "$WORK/$t.plan.log" 2>&1
done

# one task at a time on both cores; npc-targets last (it starts from the segrap-task1 checkpoint)
for t in $(printf '%s\n' $TASKS | grep -v '^npc-targets$') $(printf '%s\n' $TASKS | grep '^npc-targets$'); do
    start=()
    if [ "$t" = npc-targets ]; then
        start=(--pretrained "$OUT_ROOT/segrap-task1/model/fold_0/checkpoint_final.pth")
    fi
    $HNSEG train --task "$t" --work "$WORK/$t" --steps train --folds 0 --device cpu --trainer "$(trainer_of "$t")" \
        --epochs "$EPOCHS" --iterations 50 --val-iterations 4 --minutes-per-fold "$MINUTES" --seed 0 "${start[@]}" \
        > "$WORK/$t.fold0.log" 2>&1
    $HNSEG train --task "$t" --release "$(release_of "$t")" --work "$WORK/$t" --steps export --folds 0 \
        --trainer "$(trainer_of "$t")" --out "$OUT_ROOT/$t" --weights-dtype float16 --demo --note "$note" --seed 0
done
echo "CT demo weights written under $OUT_ROOT/"
