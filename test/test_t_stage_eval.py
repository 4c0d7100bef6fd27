"""T-stage metrics (hnseg.evaluation.t_stage): accuracy, Mann–Whitney AUC, confusion, files."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from hnseg.errors import CaseMatchingError, OutputFormatError
from hnseg.evaluation.t_stage import (
    average_ranks,
    binary_auc,
    evaluate_t_stage_folders,
    read_t_stage,
    t_stage_metrics,
)
from hnseg.tasks.npc import T_STAGES, TStageOutput


def P(t1, t2, t3, t4):
    return {"T1": t1, "T2": t2, "T3": t3, "T4": t4}


# true: T1, T2, T2, T3 (no T4).
#   case 1 → T1 (correct), case 2 → T2 (correct), case 3 → T1 (wrong), case 4 → T3 (correct)
TRUE = ["T1", "T2", "T2", "T3"]
PROBS = [
    P(0.7, 0.1, 0.1, 0.1),
    P(0.2, 0.5, 0.2, 0.1),
    P(0.4, 0.3, 0.2, 0.1),
    P(0.1, 0.3, 0.5, 0.1),
]


def test_hand_example():
    m = t_stage_metrics(TRUE, PROBS, T_STAGES)
    assert (m.n, m.n_correct, m.accuracy) == (4, 3, 0.75)
    # T1: positive 0.7 above every negative (0.2, 0.4, 0.1) → 1
    # T2: positives 0.5, 0.3 vs negatives 0.1, 0.3: pairs 1 + 1 + 1 + ½ (tie 0.3 = 0.3) → 3.5/4
    # T3: positive 0.5 vs 0.1, 0.2, 0.2 → 1;  T4: no positive → None
    assert m.per_class_auc == {"T1": 1.0, "T2": 0.875, "T3": 1.0, "T4": None}
    assert m.auc_classes == ["T1", "T2", "T3"]
    assert m.macro_auc == pytest.approx((1 + 0.875 + 1) / 3, abs=1e-15)
    assert m.confusion_matrix == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert [c.predicted for c in m.cases] == ["T1", "T2", "T1", "T3"]
    assert any("T4" in n for n in m.notes)
    assert "macro AUC 0.9583" in m.to_table()


def test_tie_counts_one_half_and_rank_formula_matches_pairs():
    assert binary_auc([0.3, 0.3], [True, False]) == 0.5
    assert binary_auc([0.1, 0.3, 0.3, 0.5], [False, True, False, True]) == 0.875
    assert average_ranks(np.array([0.1, 0.3, 0.3, 0.5])).tolist() == [1.0, 2.5, 2.5, 4.0]
    rng = np.random.default_rng(3)
    for _ in range(20):
        s = rng.integers(0, 4, size=15) / 4  # many ties
        y = rng.random(15) < 0.4
        if y.all() or not y.any():
            continue
        pairs = [(1.0 if a > b else 0.5 if a == b else 0.0)
                 for a, b in itertools.product(s[y], s[~y])]
        assert binary_auc(s, y) == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)


def test_perfect_and_inverse_separation():
    true = ["T1", "T1", "T4", "T4"]
    good = [P(0.9, 0.05, 0.03, 0.02), P(0.6, 0.2, 0.1, 0.1), P(0.1, 0.1, 0.1, 0.7), P(0.2, 0.1, 0.1, 0.6)]
    m = t_stage_metrics(true, good)
    assert m.accuracy == 1.0
    assert m.per_class_auc["T1"] == 1.0 and m.per_class_auc["T4"] == 1.0
    # T2, T3 have no positive → None, left out of the macro mean
    assert m.per_class_auc["T2"] is None and m.per_class_auc["T3"] is None
    assert m.macro_auc == 1.0
    assert binary_auc([0.9, 0.8, 0.1], [False, False, True]) == 0.0


def test_class_without_negatives_and_no_defined_auc():
    m = t_stage_metrics(["T2", "T2"], [P(0.1, 0.6, 0.2, 0.1), P(0.5, 0.3, 0.1, 0.1)])
    assert m.per_class_auc == {"T1": None, "T2": None, "T3": None, "T4": None}
    assert m.macro_auc is None and m.auc_classes == []
    assert m.accuracy == 0.5
    assert "null" not in m.to_table() and "macro AUC -" in m.to_table()


def test_accepts_t_stage_outputs_and_validates():
    outs = [TStageOutput.from_probabilities([p[c] for c in T_STAGES]) for p in PROBS]
    assert t_stage_metrics(TRUE, outs).model_dump(exclude={"cases"}) == \
        t_stage_metrics(TRUE, PROBS).model_dump(exclude={"cases"})
    with pytest.raises(ValueError, match="not among the classes"):
        t_stage_metrics(["T5"], [PROBS[0]])
    with pytest.raises(ValueError, match="lack the classes"):
        t_stage_metrics(["T1"], [{"T1": 1.0}])
    with pytest.raises(ValueError, match="2 true labels but 1"):
        t_stage_metrics(["T1", "T2"], [PROBS[0]])
    with pytest.raises(ValueError, match="at least one"):
        t_stage_metrics([], [])


def _write(path: Path, probs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TStageOutput.from_probabilities(probs).model_dump_json())
    return path


def test_folders_both_layouts_and_invalid_json(tmp_path):
    gt, pr = tmp_path / "gt", tmp_path / "pr"
    for i, (t, p) in enumerate(zip(TRUE, PROBS), start=1):
        _write(gt / f"{i}_t-stage.json", [1.0 if c == t else 0.0 for c in T_STAGES])
        probs = [p[c] for c in T_STAGES]
        # cases 1-2 flat, 3-4 grand-challenge folders
        _write(pr / f"{i}_t-stage.json" if i <= 2 else pr / str(i) / "t-stage.json", probs)
    m = evaluate_t_stage_folders(gt, pr)
    assert m is not None and (m.n, m.accuracy, m.per_class_auc["T2"]) == (4, 0.75, 0.875)
    assert [c.case_id for c in m.cases] == ["1", "2", "3", "4"]
    assert m.cases[2].pred_file == str(pr / "3" / "t-stage.json")

    assert evaluate_t_stage_folders(tmp_path / "nothing", pr) is None
    with pytest.raises(CaseMatchingError, match=r"missing for \['5'\]"):
        evaluate_t_stage_folders(gt, pr, case_ids=["1", "2", "3", "4", "5"])

    bad = pr / "3" / "t-stage.json"
    bad.write_text('{"t_stage": "T2", "probabilities": {"T1": 0.5, "T2": 0.5}}')
    with pytest.raises(OutputFormatError) as exc:
        evaluate_t_stage_folders(gt, pr)
    assert str(bad) in str(exc.value) and "probabilities" in str(exc.value)
    bad.write_text("{oops")
    with pytest.raises(OutputFormatError, match="expected a T-stage JSON object"):
        read_t_stage(bad)
    bad.unlink()
    with pytest.raises(CaseMatchingError, match=r"no prediction .*\['3'\]"):
        evaluate_t_stage_folders(gt, pr)
