#!/usr/bin/env bash
# Reproduce the committed demo weights: phantom release → nnU-Net (tiny CPU configuration, 5 folds).
# Phantom-trained demo weights, NOT for clinical use. ~1 h on 2 CPU cores.
#
#   bash scripts/train_demo_weights.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-work/demo}
N_PATIENTS=${N_PATIENTS:-32}
EPOCHS=${EPOCHS:-30}
ITERS=${ITERS:-25}
. .venv/bin/activate

hnseg phantoms --out "$WORK/release" --n "$N_PATIENTS" --seed 0 --layout release

common=(--release "$WORK/release" --tiny --epochs "$EPOCHS" --iterations "$ITERS" --val-iterations 5
        --folds 0,1,2,3,4 --device cpu --seed 0 --demo
        --note "phantom-trained demo weights, not for clinical use")

hnseg train --task hntsmrg-task1 --work "$WORK/task1" --out weights/hntsmrg-task1 "${common[@]}"
hnseg train --task hntsmrg-task2 --prior box --work "$WORK/task2-box" --out weights/hntsmrg-task2 "${common[@]}"
# Benchmark variants: trained exactly the same way, only the prior differs.
hnseg train --task hntsmrg-task2 --prior band --work "$WORK/task2-band" \
    --out weights/variants/hntsmrg-task2-band "${common[@]}"
hnseg train --task hntsmrg-task2 --prior none --work "$WORK/task2-none" \
    --out weights/variants/hntsmrg-task2-none "${common[@]}"
