"""hnseg.evaluation: HNTS-MRG style evaluation of predicted label maps against ground truth.

Public API::

    evaluate_folders(gt_dir, pred_dir, labels={"GTVp": 1, "GTVn": 2}) -> EvaluationReport
    evaluate_pairs(pairs, labels) -> EvaluationReport   # pairs: CasePair or (case_id, gt, pred)

SegRap-style 4D binary stacks (Dice + normalized surface Dice, see ``stacks``) and T-stage metrics
(accuracy, one-vs-rest AUC, confusion matrix, see ``t_stage``)::

    evaluate_stack_folders(gt_dir, pred_dir, task_profile) -> StackReport
    evaluate_stack_arrays(gt, pred, spacing_zyx, structures, tolerances=None) -> list[dict]
    t_stage_metrics(true, probs, classes) -> TStageMetrics

See ``report`` for DSCagg and the handling of undefined values, ``metrics`` for per-case metrics
(and how they relate to ``evalutils.stats``), ``matching`` for file pairing and grid handling.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from hnseg.evaluation.matching import CasePair, align_to_reference, match_folders
from hnseg.evaluation.metrics import label_map_metrics
from hnseg.evaluation.report import CaseStructureResult, EvaluationReport, StructureSummary
from hnseg.evaluation.stacks import StackReport, evaluate_stack_arrays, evaluate_stack_folders
from hnseg.evaluation.t_stage import TStageMetrics, evaluate_t_stage_folders, t_stage_metrics
from hnseg.errors import CaseMatchingError
from hnseg.io.read import read_image

log = logging.getLogger(__name__)

DEFAULT_LABELS: dict[str, int] = {"GTVp": 1, "GTVn": 2}

__all__ = [
    "DEFAULT_LABELS",
    "CasePair",
    "CaseStructureResult",
    "EvaluationReport",
    "StackReport",
    "StructureSummary",
    "TStageMetrics",
    "evaluate_case",
    "evaluate_folders",
    "evaluate_pairs",
    "evaluate_stack_arrays",
    "evaluate_stack_folders",
    "evaluate_t_stage_folders",
    "t_stage_metrics",
]


def _as_pair(item: CasePair | tuple) -> CasePair:
    if isinstance(item, CasePair):
        return item
    case_id, gt, pred = item
    return CasePair(str(case_id), Path(gt), Path(pred))


def evaluate_case(
    pair: CasePair, labels: dict[str, int], distances: bool = True
) -> list[CaseStructureResult]:
    """Read one GT/prediction pair, align the prediction to the GT grid, compute every structure."""
    gt_img = read_image(pair.gt, f"ground truth of case {pair.case_id}")
    pred_img = read_image(pair.pred, f"prediction of case {pair.case_id}")
    pred_img, resampled = align_to_reference(gt_img, pred_img, pair.case_id, pair.gt, pair.pred)
    gt = sitk.GetArrayViewFromImage(gt_img)
    pred = sitk.GetArrayViewFromImage(pred_img)
    # SimpleITK spacing is (x, y, z); numpy arrays are (z, y, x).
    spacing_zyx = tuple(float(s) for s in reversed(gt_img.GetSpacing()))
    per_label = label_map_metrics(np.asarray(gt), np.asarray(pred), spacing_zyx, labels, distances)
    rows = []
    for name, value in labels.items():
        m = per_label[name]
        rows.append(
            CaseStructureResult(
                case_id=pair.case_id,
                structure=name,
                label=value,
                gt_file=str(pair.gt),
                pred_file=str(pair.pred),
                resampled=resampled,
                voxel_volume_mm3=m.voxel_volume_mm3,
                tp_voxels=m.tp_voxels,
                gt_voxels=m.gt_voxels,
                pred_voxels=m.pred_voxels,
                tp_mm3=m.tp_mm3,
                gt_mm3=m.gt_mm3,
                pred_mm3=m.pred_mm3,
                dsc=m.dsc,
                hd95_mm=m.hd95_mm,
                msd_mm=m.msd_mm,
            )
        )
    return rows


def evaluate_pairs(
    pairs: Iterable[CasePair | tuple[str, str | os.PathLike, str | os.PathLike]],
    labels: dict[str, int] | None = None,
    distances: bool = True,
    progress: bool = True,
) -> EvaluationReport:
    """Evaluate explicit (case_id, gt_path, pred_path) pairs; ``labels`` maps structure → value."""
    labels = dict(DEFAULT_LABELS if labels is None else labels)
    if not labels or any(int(v) != v or v < 1 for v in labels.values()):
        raise ValueError(f"labels must map structure names to label values >= 1, got {labels}")
    pairs = [_as_pair(p) for p in pairs]
    seen: set[str] = set()
    for p in pairs:
        if p.case_id in seen:
            raise CaseMatchingError(f"case id {p.case_id!r} given twice (second: {p.gt}, {p.pred})")
        seen.add(p.case_id)
    rows: list[CaseStructureResult] = []
    for pair in tqdm(pairs, desc="evaluate", unit="case", disable=not progress):
        rows.extend(evaluate_case(pair, labels, distances))
    report = EvaluationReport.from_rows(rows, labels)
    log.info("evaluated %d case(s); mean DSCagg %s", report.n_cases, report.mean_dsc_agg)
    return report


def evaluate_folders(
    gt_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    labels: dict[str, int] | None = None,
    distances: bool = True,
    progress: bool = True,
) -> EvaluationReport:
    """Pair files of two folders by case id (see ``matching``) and evaluate them."""
    return evaluate_pairs(match_folders(gt_dir, pred_dir), labels, distances, progress)
