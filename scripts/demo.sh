#!/usr/bin/env bash
# Run the container's main job on each bundled example case (test/input/<case>/, grand-challenge
# layout) with the demo weights, then score each case's mask against test/ground_truth/<case>/; a
# bad-input case (test/expected_output/<case>/EXPECTED_ERROR) must stop with the error it names. A
# case whose inputs fit several tasks names its task in test/run_env/<case>.env (HNSEG_TASK=…).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${1:-test/output}
rm -rf "$OUT"
mkdir -p "$OUT"
for case_dir in test/input/*/; do
    case=$(basename "$case_dir")
    echo "== $case"
    unset HNSEG_TASK
    if [ -f "test/run_env/$case.env" ]; then set -a; . "test/run_env/$case.env"; set +a; fi
    expected_error=test/expected_output/$case/EXPECTED_ERROR
    if [ -f "$expected_error" ]; then  # a bad-input case: it must fail with its named error
        if "$PY" inference.py --input "$case_dir" --output "$OUT/$case" 2>"$OUT/$case.log"; then
            echo "expected $(cat "$expected_error"), but the run succeeded"; exit 1
        fi
        line=$(grep -m1 "^$(cat "$expected_error"): " "$OUT/$case.log") || { cat "$OUT/$case.log"; exit 1; }
        echo "stopped as expected (bad input, nothing written): $line"
        continue
    fi
    if ! "$PY" inference.py --input "$case_dir" --output "$OUT/$case" 2>"$OUT/$case.log"; then
        cat "$OUT/$case.log"; exit 1
    fi
    find "$OUT/$case" -type f | sort | sed "s/^/written: /"
    # one case at a time: ground truth and prediction as <case>/ sub-folders of two scratch folders
    score=$(mktemp -d)
    mkdir -p "$score/gt" "$score/pred"
    cp -r "test/ground_truth/$case" "$score/gt/$case"
    cp -r "$OUT/$case" "$score/pred/$case"
    "$PY" -m hnseg.cli evaluate --gt "$score/gt" --pred "$score/pred" --task "${case%-*}" --no-progress
    rm -rf "$score"
done
