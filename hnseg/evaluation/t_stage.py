"""T-stage classification metrics: accuracy, one-vs-rest AUC (macro), confusion matrix.

Definitions (pinned by ``test/test_t_stage_eval.py``):

* predicted class = argmax of the class probabilities (the first class, in ``classes`` order, on a
  tie — the same rule as :class:`hnseg.tasks.npc.TStageOutput`);
* accuracy = share of cases whose predicted class equals the true class;
* per-class AUC (one vs rest) = Mann–Whitney U / (n_pos · n_neg), with U from the rank sum of the
  positives' scores (average ranks, so a positive/negative tie counts 1/2). The score of class c is
  its probability. AUC is ``None`` for a class with no positive or no negative among the true labels;
* macro AUC = mean of the defined per-class AUCs (``None`` when none is defined);
* confusion matrix: ``confusion_matrix[i][j]`` = number of cases of true class ``classes[i]``
  predicted as ``classes[j]``.

Files: the ground truth of a case is ``<gt>/<case>_t-stage.json`` (or ``<gt>/<case>/t-stage.json``),
the prediction ``<pred>/<case>_t-stage.json`` or the grand-challenge output ``<pred>/<case>/t-stage.json``;
both hold a :class:`~hnseg.tasks.npc.TStageOutput` (``{"t_stage": "T2", "probabilities": {...}}``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hnseg.errors import CaseMatchingError, OutputFormatError
from hnseg.evaluation.report import _fmt
from hnseg.tasks.npc import OUTPUT_T_STAGE, T_STAGES, TStageOutput

AUC_DEFINITION = (
    "AUC (one vs rest, per class) = Mann-Whitney U / (n_pos * n_neg) with average ranks (ties count "
    "1/2), score = class probability; null when the class has no positive or no negative case; macro "
    "AUC = mean over the classes with a defined AUC"
)
ACCURACY_DEFINITION = "accuracy = share of cases whose argmax class equals the true class"
CONFUSION_DEFINITION = "confusion_matrix[i][j] = cases of true class classes[i] predicted as classes[j]"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TStageCase(_Model):
    case_id: str
    true: str
    predicted: str
    probabilities: dict[str, float]
    gt_file: str | None = None
    pred_file: str | None = None


class TStageMetrics(_Model):
    classes: list[str]
    n: int
    n_correct: int
    accuracy: float
    macro_auc: float | None = Field(description="mean of the defined per-class AUCs; null if none")
    auc_classes: list[str] = Field(description="classes whose AUC is defined (used in macro_auc)")
    per_class_auc: dict[str, float | None]
    confusion_matrix: list[list[int]] = Field(description="rows: true class, columns: predicted")
    cases: list[TStageCase] = Field(default_factory=list)
    definitions: list[str] = Field(
        default_factory=lambda: [ACCURACY_DEFINITION, AUC_DEFINITION, CONFUSION_DEFINITION]
    )
    notes: list[str] = Field(default_factory=list)

    def to_table(self) -> str:
        return format_t_stage_table(self)


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], sorted_vals.size]  # exclusive
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks_sorted = np.repeat(run_rank, ends - starts)
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def binary_auc(
    scores: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray
) -> float | None:
    """AUC of ``scores`` for the ``positive`` cases vs the rest (Mann–Whitney, ties 1/2); ``None``
    without positives or without negatives."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(
            f"scores and labels must be 1D of one length, got {scores.shape} and {positive.shape}"
        )
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(scores)
    u = math.fsum(ranks[positive]) - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _prob_vector(
    p: TStageOutput | Mapping[str, float], classes: Sequence[str], index: int
) -> list[float]:
    probs = p.probabilities if isinstance(p, TStageOutput) else p
    if not isinstance(probs, Mapping):
        raise ValueError(
            f"case {index}: expected a class → probability mapping, got {type(probs).__name__}"
        )
    missing = [c for c in classes if c not in probs]
    if missing:
        raise ValueError(f"case {index}: probabilities lack the classes {missing} (found {list(probs)})")
    values = [float(probs[c]) for c in classes]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"case {index}: probabilities must be finite, got {values}")
    return values


def t_stage_metrics(
    true: Sequence[str],
    probs: Sequence[TStageOutput | Mapping[str, float]],
    classes: Sequence[str] = T_STAGES,
    case_ids: Sequence[str] | None = None,
) -> TStageMetrics:
    """Accuracy, per-class and macro one-vs-rest AUC and the confusion matrix.

    ``true[i]`` is case i's true class; ``probs[i]`` its class probabilities (a mapping or a
    ``TStageOutput``). ``case_ids`` (optional) label the per-case rows.
    """
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct and non-empty, got {classes}")
    true = [str(t) for t in true]
    if len(true) != len(probs):
        raise ValueError(f"{len(true)} true labels but {len(probs)} probability sets")
    if not true:
        raise ValueError("T-stage metrics need at least one case")
    unknown = sorted({t for t in true if t not in classes})
    if unknown:
        raise ValueError(f"true labels {unknown} are not among the classes {classes}")
    if case_ids is None:
        case_ids = [str(i) for i in range(len(true))]
    elif len(case_ids) != len(true):
        raise ValueError(f"{len(case_ids)} case ids for {len(true)} cases")

    matrix = np.array([_prob_vector(p, classes, i) for i, p in enumerate(probs)], dtype=np.float64)
    pred_idx = np.argmax(matrix, axis=1)  # first maximum on ties
    true_idx = np.array([classes.index(t) for t in true])
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true_idx, pred_idx), 1)
    n_correct = int(np.trace(confusion))

    per_class: dict[str, float | None] = {}
    for j, c in enumerate(classes):
        per_class[c] = binary_auc(matrix[:, j], true_idx == j)
    defined = [c for c in classes if per_class[c] is not None]
    macro = math.fsum(per_class[c] for c in defined) / len(defined) if defined else None
    notes = []
    undefined = [c for c in classes if per_class[c] is None]
    if undefined:
        notes.append(
            f"AUC undefined (no positive or no negative case) for {undefined}: left out of macro_auc"
        )
    cases = [
        TStageCase(
            case_id=str(cid),
            true=t,
            predicted=classes[int(pi)],
            probabilities={c: float(v) for c, v in zip(classes, row)},
        )
        for cid, t, pi, row in zip(case_ids, true, pred_idx, matrix)
    ]
    return TStageMetrics(
        classes=classes,
        n=len(true),
        n_correct=n_correct,
        accuracy=n_correct / len(true),
        macro_auc=macro,
        auc_classes=defined,
        per_class_auc=per_class,
        confusion_matrix=confusion.tolist(),
        cases=cases,
        notes=notes,
    )


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------


def read_t_stage(path: str | os.PathLike, role: str = "T-stage file") -> TStageOutput:
    """Read a ``t-stage.json``; invalid JSON or schema → ``OutputFormatError`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputFormatError(f"{role} {path}: cannot be read as UTF-8 text ({exc})") from None
    try:
        return TStageOutput.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise OutputFormatError(
            f"{role} {path}: expected a T-stage JSON object "
            f'{{"t_stage": one of {list(T_STAGES)}, "probabilities": {{{", ".join(T_STAGES)} → '
            f"probability, summing to 1}}}}, found: {problems}"
        ) from None


def collect_t_stage_files(folder: str | os.PathLike, slug: str = OUTPUT_T_STAGE) -> dict[str, Path]:
    """Map case id → T-stage JSON in ``folder``: flat ``<case>_<slug>.json`` files and grand-challenge
    case folders ``<case>/<slug>.json``. A case found both ways is an error."""
    folder = Path(folder)
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return {}
    suffix = f"_{slug}.json"
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.name.endswith(suffix) and len(p.name) > len(suffix):
            found.setdefault(p.name[: -len(suffix)], []).append(p)
        elif p.is_dir() and (p / f"{slug}.json").is_file():
            found.setdefault(p.name, []).append(p / f"{slug}.json")
    dupes = {k: v for k, v in found.items() if len(v) > 1}
    if dupes:
        detail = "; ".join(f"{k}: {', '.join(str(x) for x in v)}" for k, v in sorted(dupes.items()))
        raise CaseMatchingError(f"folder {folder}: several T-stage files for one case ({detail})")
    return {k: v[0] for k, v in found.items()}


def evaluate_t_stage_folders(
    gt_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    case_ids: Sequence[str] | None = None,
    classes: Sequence[str] = T_STAGES,
    slug: str = OUTPUT_T_STAGE,
) -> TStageMetrics | None:
    """T-stage metrics of the cases of ``gt_dir``; ``None`` when it holds no T-stage file.

    With ``case_ids`` (the cases of the segmentation evaluation) every one of them must have a
    ground-truth T-stage file and none may be extra. Every ground-truth case needs a prediction.
    """
    gt_files = collect_t_stage_files(gt_dir, slug)
    if not gt_files:
        return None
    from hnseg.evaluation.matching import _id_sort_key

    if case_ids is not None:
        wanted = [str(c) for c in case_ids]
        missing = [c for c in wanted if c not in gt_files]
        extra = sorted(set(gt_files) - set(wanted), key=_id_sort_key)
        if missing or extra:
            raise CaseMatchingError(
                f"ground-truth folder {gt_dir} has T-stage files ({slug}) for some cases but not for "
                f"the evaluated ones: missing for {missing} (expected <case>_{slug}.json), extra "
                f"{extra}"
            )
        ids = wanted
    else:
        ids = sorted(gt_files, key=_id_sort_key)
    pred_files = collect_t_stage_files(pred_dir, slug)
    missing = [c for c in ids if c not in pred_files]
    if missing:
        raise CaseMatchingError(
            f"{len(missing)} ground-truth T-stage case(s) in {gt_dir} have no prediction in "
            f"{pred_dir}: {missing} (expected {Path(pred_dir)}/<case>/{slug}.json or "
            f"{Path(pred_dir)}/<case>_{slug}.json); prediction ids found: "
            f"{sorted(pred_files, key=_id_sort_key)}"
        )
    extra = sorted(set(pred_files) - set(ids), key=_id_sort_key)
    if extra:
        raise CaseMatchingError(
            f"{len(extra)} T-stage prediction(s) in {pred_dir} have no ground truth in {gt_dir}: {extra}"
        )
    gts = [read_t_stage(gt_files[c], f"ground-truth T stage of case {c}") for c in ids]
    preds = [read_t_stage(pred_files[c], f"predicted T stage of case {c}") for c in ids]
    metrics = t_stage_metrics([g.t_stage for g in gts], preds, classes, ids)
    for row, c in zip(metrics.cases, ids):
        row.gt_file = str(gt_files[c])
        row.pred_file = str(pred_files[c])
    return metrics


# --------------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------------


def format_t_stage_table(m: TStageMetrics) -> str:
    lines = [f"T stage: {m.n} cases, accuracy {_fmt(m.accuracy)} ({m.n_correct}/{m.n}), "
             f"macro AUC {_fmt(m.macro_auc)} (over {', '.join(m.auc_classes) or 'no class'})"]
    w = max(8, *(len(c) + 2 for c in m.classes))
    corner = "true \\ pred"
    head = f"{corner:<12}" + "".join(f"{c:>{w}}" for c in m.classes) + f"{'AUC':>{w + 2}}"
    lines += [head, "-" * len(head)]
    for c, row in zip(m.classes, m.confusion_matrix):
        lines.append(f"{c:<12}" + "".join(f"{v:>{w}d}" for v in row) + f"{_fmt(m.per_class_auc[c]):>{w + 2}}")
    lines.extend(f"note: {n}" for n in m.notes)
    return "\n".join(lines) + "\n"
