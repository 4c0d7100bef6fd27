# Sourced by scripts/train_ct_demo_weights*.sh: the hnseg command and the phantom releases.
# Needs WORK, N_CASES; sets HNSEG when unset; release_of TASK prints the task's release folder.
if [ -z "${HNSEG:-}" ]; then
    if [ -x .venv/bin/hnseg ]; then HNSEG=.venv/bin/hnseg; else HNSEG="python3 -m hnseg"; fi
fi

release_of() { case $1 in npc-targets) echo "$WORK/npc-release" ;; *) echo "$WORK/segrap-release" ;; esac; }

# make_releases JOBS: seeds 0…N_CASES-1 in the SegRap layout (both SegRap tasks) and the NPC layout
make_releases() {
    [ -d "$WORK/segrap-release" ] || $HNSEG phantoms --task segrap-task1 --layout release --n "$N_CASES" \
        --seed 0 --jobs "$1" --out "$WORK/segrap-release"
    [ -d "$WORK/npc-release" ] || $HNSEG phantoms --task npc-targets --layout release --n "$N_CASES" \
        --seed 0 --jobs "$1" --out "$WORK/npc-release"
}
