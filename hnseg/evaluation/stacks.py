"""SegRap-style evaluation of 4D binary stacks: Dice and normalized surface Dice per structure.

A 4D binary stack is a SimpleITK image of size ``(x, y, z, S)``, values 0/1, volume ``s`` being
structure ``structures[s]`` of the task's binary-stack output socket; the 3D grid is spacing[:3],
origin[:3] and the top-left 3×3 block of the 4×4 direction.

Per case × structure (SegRap 2023 rules):

* Dice = 2·|GT ∩ Pred| / (|GT| + |Pred|) (voxel counts; one grid per case);
* NSD = :func:`~hnseg.evaluation.surface_dice.normalized_surface_dice` at the structure's tolerance
  (:func:`~hnseg.evaluation.surface_dice.segrap_tolerance`: 1 mm, Larynx 2 mm, OralCavity 3 mm);
* GT and prediction both empty → Dice = NSD = 1; exactly one empty → Dice = NSD = 0.

Summary (every value is defined, thanks to the empty rules):

* per structure: mean Dice and mean NSD over the cases;
* overall: ``mean_dice`` / ``mean_nsd`` = mean over the structures of the per-structure means (equal to
  the mean over all case × structure values, as every case has every structure);
* ``score`` = (mean_dice + mean_nsd) / 2, the SegRap final ranking value;
* per task group (``TaskProfile.task_groups``, e.g. oar/gtv/ctv): the same three over the group's
  structures.

Files (see :func:`match_stack_folders`): flat ``<dir>/<case>.mha``, or grand-challenge case folders
``<dir>/<case>/images/<slug>/output.mha``; cases pair by the full id (file stem / folder name) when
both folders agree on them, else by the leading id of :mod:`hnseg.evaluation.matching` (text before
the first ``_``). A ground-truth case without prediction, or a prediction
without ground truth, is a :class:`~hnseg.errors.CaseMatchingError`. Grids are never resampled: a
spacing difference is a ``SpacingMismatchError``, any other grid difference a ``GridMismatchError``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import ClassVar
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from hnseg.errors import (
    CaseMatchingError,
    GridMismatchError,
    ImageDimensionError,
    MaskLabelError,
    TaskSelectionError,
)
from hnseg.evaluation.matching import (
    CasePair,
    _geometry_differs,
    _id_sort_key,
    _images_below,
    case_id_from_filename,
    check_spacing,
    raise_duplicate_ids,
    strip_image_suffix,
)
from hnseg.evaluation.metrics import bounding_box
from hnseg.evaluation.report import RowsReportMixin
from hnseg.evaluation.surface_dice import normalized_surface_dice, segrap_tolerance
from hnseg.evaluation.t_stage import TStageMetrics
from hnseg.io.read import IMAGE_SUFFIXES, is_image_file, read_image
from hnseg.tasks.profiles import OutputSocket, TaskProfile
from hnseg.write.stack import stack_grid

log = logging.getLogger(__name__)

DICE_NSD_DEFINITION = (
    "per case x structure: Dice = 2|GT&Pred|/(|GT|+|Pred|); NSD = normalized surface Dice "
    "(DeepMind surface-distance, surfel-area weighted) at the structure's tolerance (1 mm; Larynx 2 mm, "
    "OralCavity 3 mm); both empty -> Dice = NSD = 1, exactly one empty -> 0 (SegRap 2023)"
)
SUMMARY_DEFINITION = (
    "per structure: mean over cases; mean_dice / mean_nsd: mean over structures of the per-structure "
    "means; score = (mean_dice + mean_nsd) / 2; groups: the same over the group's structures"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------


def _tolerance_for(structure: str, tolerances: Mapping[str, float] | float | None) -> float:
    if tolerances is None:
        return segrap_tolerance(structure)
    if isinstance(tolerances, Mapping):
        return float(tolerances[structure]) if structure in tolerances else segrap_tolerance(structure)
    return float(tolerances)


def evaluate_stack_arrays(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_zyx: Sequence[float],
    structures: Sequence[str],
    tolerances: Mapping[str, float] | float | None = None,
) -> list[dict]:
    """Dice and NSD of every structure of two ``(S, z, y, x)`` 0/1 stacks on one grid.

    ``spacing_zyx`` is in array axis order (``GetSpacing()[:3]`` reversed). ``tolerances`` overrides
    the SegRap tolerance per structure (mapping) or for all (number). Returns, in ``structures``
    order, dicts ``{structure, dice, nsd, tolerance_mm, gt_voxels, pred_voxels, tp_voxels}``.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.ndim != 4 or pred.ndim != 4:
        raise ValueError(f"stacks must be 4D (S, z, y, x), got shapes {gt.shape} and {pred.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"stack shapes differ: {gt.shape} vs {pred.shape}")
    if gt.shape[0] != len(structures):
        raise ValueError(f"{gt.shape[0]} volumes for {len(structures)} structures {list(structures)}")
    spacing = tuple(float(s) for s in spacing_zyx)
    if len(spacing) != 3:
        raise ValueError(f"spacing_zyx must have 3 values, got {spacing_zyx!r}")
    for name, arr in (("gt", gt), ("pred", pred)):
        if arr.dtype != np.bool_ and not _is_binary(arr):
            raise ValueError(f"{name} stack must contain only 0 and 1")
    results = []
    for s, structure in enumerate(structures):
        g = gt[s] if gt.dtype == np.bool_ else gt[s] != 0
        p = pred[s] if pred.dtype == np.bool_ else pred[s] != 0
        tol = _tolerance_for(structure, tolerances)
        box = bounding_box(g | p)
        if box is None:  # both empty
            results.append(dict(structure=structure, dice=1.0, nsd=1.0, tolerance_mm=tol,
                                gt_voxels=0, pred_voxels=0, tp_voxels=0))
            continue
        gc, pc = g[box], p[box]  # exact: everything outside the union box is background in both
        ng, npred = int(np.count_nonzero(gc)), int(np.count_nonzero(pc))
        tp = int(np.count_nonzero(gc & pc))
        if ng == 0 or npred == 0:
            dice_v, nsd_v = 0.0, 0.0
        else:
            dice_v = 2.0 * tp / (ng + npred)
            nsd_v = normalized_surface_dice(gc, pc, spacing, tol)
        results.append(dict(structure=structure, dice=dice_v, nsd=nsd_v, tolerance_mm=tol,
                            gt_voxels=ng, pred_voxels=npred, tp_voxels=tp))
    return results


def _is_binary(arr: np.ndarray) -> bool:
    if arr.size == 0:
        return True
    if arr.dtype.kind == "u":
        return int(arr.max()) <= 1
    if arr.dtype.kind in "if":
        return bool(np.all((arr == 0) | (arr == 1)))
    return False


# --------------------------------------------------------------------------------------------------
# report models
# --------------------------------------------------------------------------------------------------


class StackCaseStructureResult(_Model):
    """One row: one case × one structure."""

    case_id: str
    structure: str
    index: int = Field(description="volume index in the 4D stack")
    group: str | None = None
    tolerance_mm: float
    gt_voxels: int
    pred_voxels: int
    tp_voxels: int
    dice: float
    nsd: float
    gt_file: str
    pred_file: str


class StackStructureSummary(_Model):
    structure: str
    group: str | None = None
    tolerance_mm: float
    mean_dice: float
    mean_nsd: float
    n_cases: int
    cases_with_gt: int
    cases_with_pred: int


class StackGroupSummary(_Model):
    group: str
    structures: list[str]
    mean_dice: float
    mean_nsd: float
    score: float


class StackCaseSummary(_Model):
    case_id: str
    mean_dice: float
    mean_nsd: float


class StackReport(RowsReportMixin, _Model):
    task: str
    output_slug: str
    structures: list[str]
    n_cases: int
    case_ids: list[str]
    per_structure: list[StackStructureSummary]
    groups: list[StackGroupSummary] = Field(default_factory=list)
    per_case: list[StackCaseSummary] = Field(default_factory=list)
    mean_dice: float = Field(description="mean over structures of the per-structure mean Dice")
    mean_nsd: float = Field(description="mean over structures of the per-structure mean NSD")
    score: float = Field(description="SegRap final score: (mean_dice + mean_nsd) / 2")
    rows: list[StackCaseStructureResult]
    t_stage: TStageMetrics | None = None
    definitions: list[str] = Field(default_factory=lambda: [DICE_NSD_DEFINITION, SUMMARY_DEFINITION])
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[StackCaseStructureResult],
        task: TaskProfile,
        socket: OutputSocket,
        t_stage: TStageMetrics | None = None,
    ) -> "StackReport":
        if not rows:
            raise ValueError("a stack report needs at least one case")
        structures = list(socket.structures)
        case_ids: list[str] = list(dict.fromkeys(r.case_id for r in rows))
        group_of = _group_of(task)
        per_structure = []
        for name in structures:
            mine = [r for r in rows if r.structure == name]
            per_structure.append(StackStructureSummary(
                structure=name,
                group=group_of.get(name),
                tolerance_mm=mine[0].tolerance_mm,
                mean_dice=_mean(r.dice for r in mine),
                mean_nsd=_mean(r.nsd for r in mine),
                n_cases=len(mine),
                cases_with_gt=sum(1 for r in mine if r.gt_voxels > 0),
                cases_with_pred=sum(1 for r in mine if r.pred_voxels > 0),
            ))
        by_name = {s.structure: s for s in per_structure}
        groups = []
        for group, members in task.task_groups.items():
            members = [m for m in members if m in by_name]
            if not members:
                continue
            d = _mean(by_name[m].mean_dice for m in members)
            n = _mean(by_name[m].mean_nsd for m in members)
            groups.append(StackGroupSummary(group=group, structures=members, mean_dice=d,
                                            mean_nsd=n, score=(d + n) / 2.0))
        per_case = [
            StackCaseSummary(
                case_id=c,
                mean_dice=_mean(r.dice for r in rows if r.case_id == c),
                mean_nsd=_mean(r.nsd for r in rows if r.case_id == c),
            )
            for c in case_ids
        ]
        mean_dice = _mean(s.mean_dice for s in per_structure)
        mean_nsd = _mean(s.mean_nsd for s in per_structure)
        return cls(
            task=task.name,
            output_slug=socket.slug,
            structures=structures,
            n_cases=len(case_ids),
            case_ids=case_ids,
            per_structure=per_structure,
            groups=groups,
            per_case=per_case,
            mean_dice=mean_dice,
            mean_nsd=mean_nsd,
            score=(mean_dice + mean_nsd) / 2.0,
            rows=list(rows),
            t_stage=t_stage,
        )

    def structure(self, name: str) -> StackStructureSummary:
        for s in self.per_structure:
            if s.structure == name:
                return s
        raise KeyError(name)

    def group(self, name: str) -> StackGroupSummary:
        for g in self.groups:
            if g.group == name:
                return g
        raise KeyError(name)

    ROW_MODEL: ClassVar[type[BaseModel]] = StackCaseStructureResult

    # ------------------------------------------------------------------ output
    def to_table(self) -> str:
        return format_stack_table(self)


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


def _group_of(task: TaskProfile) -> dict[str, str]:
    return {m: g for g, members in task.task_groups.items() for m in members}


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------


def _case_folder_image(d: Path, slug: str | None, role: str) -> Path:
    """The stack image of one grand-challenge case folder: the single image in ``images/<slug>/``
    when that folder exists, else the single image anywhere below ``d``."""
    socket_dir = d / "images" / slug if slug else None
    where = socket_dir if socket_dir is not None and socket_dir.is_dir() else d
    images = _images_below(where)
    if len(images) != 1:
        listed = ", ".join(str(p) for p in images) if images else "none"
        raise CaseMatchingError(
            f"{role} case folder {d}: expected exactly one image file in {where}, found "
            f"{len(images)} ({listed})"
        )
    return images[0]


def _stack_files(folder: str | os.PathLike, role: str, slug: str | None) -> list[tuple[str, str, Path]]:
    """(full id, leading id, file) of every case of one folder.

    Flat files: full id = the file name without its image suffix, leading id = text before its first
    ``_`` (:func:`~hnseg.evaluation.matching.case_id_from_filename`). Case folders: both are the
    folder name, the file is the single image in ``images/<slug>/`` (else the single image below).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CaseMatchingError(f"{role} folder {folder}: expected a directory, found none")
    entries = sorted(folder.iterdir())
    files = [p for p in entries if is_image_file(p)]
    if files:
        return [(strip_image_suffix(p.name), case_id_from_filename(p.name), p) for p in files]
    subdirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    if not subdirs:
        raise CaseMatchingError(
            f"{role} folder {folder}: expected 4D stack files ({', '.join(IMAGE_SUFFIXES)}) or "
            f"case sub-folders (<case>/images/{slug or '<slug>'}/output.mha), found neither"
        )
    return [(d.name, d.name, _case_folder_image(d, slug, role)) for d in subdirs]


def _by_id(
    found: list[tuple[str, str, Path]], full: bool
) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """(id → file, duplicated id → files) with the full or the leading id."""
    by: dict[str, list[Path]] = {}
    for full_id, lead_id, p in found:
        by.setdefault(full_id if full else lead_id, []).append(p)
    return {k: v[0] for k, v in by.items()}, {k: v for k, v in by.items() if len(v) > 1}


def match_stack_folders(
    gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, slug: str | None = None
) -> list[CasePair]:
    """Pair every GT case with its prediction; missing and extra predictions are both errors.

    Cases pair by full id (``<case>.mha`` ↔ ``<case>.mha`` or ``<case>/images/<slug>/…``, so ids may
    contain ``_``, e.g. ``segrap_0001``) when both folders hold the same full ids; otherwise by the
    leading id of :mod:`~hnseg.evaluation.matching` (``81_gt.mha`` ↔ ``81_pred.mha``).
    """
    gt_found = _stack_files(gt_dir, "ground truth", slug)
    pred_found = _stack_files(pred_dir, "prediction", slug)
    gt_full, gt_full_dupes = _by_id(gt_found, True)
    pred_full, pred_full_dupes = _by_id(pred_found, True)
    if gt_full_dupes:
        raise_duplicate_ids(gt_dir, "ground truth", gt_full_dupes)
    if pred_full_dupes:
        raise_duplicate_ids(pred_dir, "prediction", pred_full_dupes)
    gt_lead, gt_lead_dupes = _by_id(gt_found, False)
    pred_lead, pred_lead_dupes = _by_id(pred_found, False)
    if set(gt_full) == set(pred_full):
        gt, pred = gt_full, pred_full
    elif not gt_lead_dupes and not pred_lead_dupes:
        gt, pred = gt_lead, pred_lead
    else:  # leading ids are ambiguous: report the mismatch in full ids
        gt, pred = gt_full, pred_full
    missing = sorted(set(gt) - set(pred), key=_id_sort_key)
    extra = sorted(set(pred) - set(gt), key=_id_sort_key)
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} ground-truth case(s) in {gt_dir} have no prediction in {pred_dir}: "
            + ", ".join(f"{k} ({gt[k].name})" for k in missing)
        )
    if extra:
        problems.append(
            f"{len(extra)} prediction(s) in {pred_dir} have no ground truth in {gt_dir}: "
            + ", ".join(f"{k} ({pred[k]})" for k in extra)
        )
    if problems:
        raise CaseMatchingError(
            "; ".join(problems)
            + f"; ground-truth ids: {sorted(gt, key=_id_sort_key)}, prediction ids: "
            f"{sorted(pred, key=_id_sort_key)}"
        )
    return [CasePair(k, gt[k], pred[k]) for k in sorted(gt, key=_id_sort_key)]


def read_stack(path: Path, what: str, structures: Sequence[str]) -> tuple[sitk.Image, np.ndarray]:
    """Read a 4D 0/1 stack with one volume per structure; named errors otherwise."""
    image = read_image(path, what)
    n = len(structures)
    if image.GetDimension() != 4 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageDimensionError(
            f"{what} ({path}): expected a 4D single-channel binary stack of size (x, y, z, {n}), one "
            f"volume per structure, found a {image.GetDimension()}D image with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel, size {image.GetSize()}"
        )
    s = image.GetSize()[3]
    if s != n:
        raise ImageDimensionError(
            f"{what} ({path}): expected {n} volumes along the 4th axis ({', '.join(structures)}), "
            f"found {s} (size {image.GetSize()})"
        )
    array = sitk.GetArrayViewFromImage(image)
    if not _is_binary(array):
        values = np.unique(array)
        shown = ", ".join(str(v) for v in values[:10]) + (" …" if values.size > 10 else "")
        raise MaskLabelError(
            f"{what} ({path}): expected binary volumes holding only 0 and 1, found values {shown}"
        )
    return image, array


def check_same_grid(gt: sitk.Image, pred: sitk.Image, case_id: str, gt_path: Path, pred_path: Path) -> None:
    """Refuse a prediction whose 3D grid differs from the GT's (no silent resampling)."""
    g3, p3 = stack_grid(gt), stack_grid(pred)
    check_spacing(g3, p3, case_id, gt_path, pred_path)
    diffs = _geometry_differs(g3, p3)
    if diffs:
        raise GridMismatchError(
            f"case {case_id}: prediction {pred_path} is not on the ground-truth grid of {gt_path} "
            f"(prediction vs ground truth: {'; '.join(diffs)}); predictions must be written on the "
            f"ground-truth grid (stacks are not resampled)"
        )


def evaluate_stack_case(
    pair: CasePair,
    task: TaskProfile,
    socket: OutputSocket | None = None,
    tolerances: Mapping[str, float] | float | None = None,
) -> list[StackCaseStructureResult]:
    """Read one GT/prediction stack pair and compute Dice/NSD for every structure."""
    socket = socket or task.stack_output
    structures = list(socket.structures)
    gt_img, gt = read_stack(pair.gt, f"ground truth of case {pair.case_id}", structures)
    pred_img, pred = read_stack(pair.pred, f"prediction of case {pair.case_id}", structures)
    check_same_grid(gt_img, pred_img, pair.case_id, pair.gt, pair.pred)
    spacing_zyx = tuple(float(s) for s in reversed(gt_img.GetSpacing()[:3]))
    group_of = _group_of(task)
    results = evaluate_stack_arrays(gt, pred, spacing_zyx, structures, tolerances)
    return [
        StackCaseStructureResult(
            case_id=pair.case_id,
            index=i,
            group=group_of.get(r["structure"]),
            gt_file=str(pair.gt),
            pred_file=str(pair.pred),
            **r,
        )
        for i, r in enumerate(results)
    ]


def resolve_task(task: TaskProfile | str) -> TaskProfile:
    if isinstance(task, TaskProfile):
        return task
    from hnseg.tasks import get_task

    return get_task(str(task))


def evaluate_stack_folders(
    gt_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    task_profile: TaskProfile | str,
    tolerances: Mapping[str, float] | float | None = None,
    t_stage: bool = True,
    progress: bool = True,
) -> StackReport:
    """Evaluate the 4D stacks of two folders for a binary-stack task (and its T stage, when the task
    has a T-stage output and ``gt_dir`` holds ``<case>_t-stage.json`` files)."""
    task = resolve_task(task_profile)
    socket = task.stack_output
    if socket is None:
        raise TaskSelectionError(
            f"task {task.name} has no binary-stack output (outputs: "
            f"{[f'{o.slug} ({o.kind})' for o in task.outputs]}); evaluate it as label maps"
        )
    pairs = match_stack_folders(gt_dir, pred_dir, socket.slug)
    rows: list[StackCaseStructureResult] = []
    for pair in tqdm(pairs, desc="evaluate", unit="case", disable=not progress):
        rows.extend(evaluate_stack_case(pair, task, socket, tolerances))
    metrics = None
    json_out = next((o for o in task.outputs if o.kind == "json"), None)
    if t_stage and task.t_stage is not None and json_out is not None:
        from hnseg.evaluation.t_stage import evaluate_t_stage_folders

        metrics = evaluate_t_stage_folders(
            gt_dir, pred_dir, [p.case_id for p in pairs], task.t_stage.classes, json_out.slug
        )
        if metrics is None:
            log.info("no *_%s.json ground truth in %s: T stage not evaluated", json_out.slug, gt_dir)
    report = StackReport.from_rows(rows, task, socket, metrics)
    log.info("evaluated %d case(s): mean Dice %.4f, mean NSD %.4f, score %.4f",
             report.n_cases, report.mean_dice, report.mean_nsd, report.score)
    return report


# --------------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------------


def format_stack_table(report: StackReport) -> str:
    """Fixed-width text: per structure means, group means, overall means, per case means, T stage."""
    w = max([18] + [len(s) + 1 for s in report.structures])
    head = (f"{'structure':<{w}} {'group':<6} {'tol mm':>6} {'mean DSC':>9} {'mean NSD':>9} "
            f"{'GT in':>8} {'pred in':>8}")
    lines = [
        f"task {report.task} ({report.output_slug}): {report.n_cases} case(s) x "
        f"{len(report.structures)} structure(s)",
        head,
        "-" * len(head),
    ]
    for s in report.per_structure:
        lines.append(
            f"{s.structure:<{w}} {(s.group or '-'):<6.6} {s.tolerance_mm:>6.1f} {s.mean_dice:>9.4f} "
            f"{s.mean_nsd:>9.4f} {f'{s.cases_with_gt}/{s.n_cases}':>8} "
            f"{f'{s.cases_with_pred}/{s.n_cases}':>8}"
        )
    lines.append("-" * len(head))
    for g in report.groups:
        label = f"group {g.group} ({len(g.structures)})"
        lines.append(
            f"{label:<{w + 14}} {g.mean_dice:>9.4f} {g.mean_nsd:>9.4f}   score (DSC+NSD)/2 "
            f"{g.score:.4f}"
        )
    lines.append(
        f"{'mean over structures':<{w + 14}} {report.mean_dice:>9.4f} {report.mean_nsd:>9.4f}   "
        f"score (DSC+NSD)/2 {report.score:.4f}"
    )
    cw = max([12] + [len(c) + 1 for c in report.case_ids])
    lines.append("")
    lines.append(f"{'case':<{cw}} {'mean DSC':>9} {'mean NSD':>9}")
    for c in report.per_case:
        lines.append(f"{c.case_id:<{cw}} {c.mean_dice:>9.4f} {c.mean_nsd:>9.4f}")
    if report.t_stage is not None:
        lines.append("")
        lines.append(report.t_stage.to_table().rstrip("\n"))
    lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines) + "\n"
