"""Evaluation report: per-case rows, HNTS-MRG DSCagg per structure, and the ranking score.

DSCagg (HNTS-MRG 2024) for one structure, pooled over all cases:

    DSCagg = 2 · Σ_cases TP_mm3 / Σ_cases (GT_mm3 + Pred_mm3)

with TP, |GT| and |Pred| as PHYSICAL volumes (voxel count × voxel volume in mm³). A case whose GT is
empty still adds its false-positive volume to the denominator. The ranking score is the mean of the
structures' DSCagg.

Undefined values. When a structure is absent from GT and prediction in EVERY case the pooled ratio is
0/0 (the organisers' numpy code yields NaN). We report ``dsc_agg = null`` with a note and leave the
structure out of the mean, which is then the mean over the structures that are defined (``null`` if
none is). NaN is never written: JSON has no NaN and grand-challenge rejects it.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hnseg.io.write import write_json_atomic, write_text_atomic

DSC_AGG_DEFINITION = (
    "DSCagg = 2*sum(TP_mm3) / sum(GT_mm3 + Pred_mm3) over all cases, volumes = voxel count x voxel "
    "volume (HNTS-MRG 2024)"
)
PER_CASE_DEFINITION = (
    "per case: DSC null when GT and prediction are both empty, 0 when exactly one is; HD95 = max of "
    "the two directed 95th-percentile surface distances (mm); MSD = symmetric mean surface distance "
    "(mm); HD95/MSD null when either mask is empty"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseStructureResult(_Model):
    """One row: one case × one structure."""

    case_id: str
    structure: str
    label: int
    gt_file: str
    pred_file: str
    resampled: bool = Field(description="prediction was resampled (nearest) onto the GT grid")
    voxel_volume_mm3: float
    tp_voxels: int
    gt_voxels: int
    pred_voxels: int
    tp_mm3: float
    gt_mm3: float
    pred_mm3: float
    dsc: float | None
    hd95_mm: float | None
    msd_mm: float | None


class StructureSummary(_Model):
    structure: str
    label: int
    dsc_agg: float | None = Field(description="null when the label is absent everywhere (0/0)")
    sum_tp_mm3: float
    sum_gt_mm3: float
    sum_pred_mm3: float
    cases_with_gt: int
    cases_with_pred: int
    note: str | None = None


class RowsReportMixin:
    """JSON / CSV / table output of a report holding ``rows`` of one pydantic row model."""

    ROW_MODEL: ClassVar[type[BaseModel]]

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    def write_json(self, path: str | os.PathLike) -> None:
        write_json_atomic(self.model_dump(mode="json"), path)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.ROW_MODEL.model_fields), lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.model_dump().items()})
        return buf.getvalue()

    def write_csv(self, path: str | os.PathLike) -> None:
        write_text_atomic(self.to_csv(), path)


class EvaluationReport(RowsReportMixin, _Model):
    labels: dict[str, int]
    n_cases: int
    case_ids: list[str]
    structures: list[StructureSummary]
    mean_dsc_agg: float | None = Field(
        description="ranking score: mean DSCagg over the structures whose DSCagg is defined"
    )
    rows: list[CaseStructureResult]
    definitions: list[str] = Field(default_factory=lambda: [DSC_AGG_DEFINITION, PER_CASE_DEFINITION])
    notes: list[str] = Field(default_factory=list)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_rows(
        cls, rows: Sequence[CaseStructureResult], labels: dict[str, int]
    ) -> "EvaluationReport":
        case_ids: list[str] = []
        for r in rows:
            if r.case_id not in case_ids:
                case_ids.append(r.case_id)
        structures = [aggregate_structure(rows, name, value) for name, value in labels.items()]
        defined = [s.dsc_agg for s in structures if s.dsc_agg is not None]
        notes = [f"{s.structure}: {s.note}" for s in structures if s.note]
        mean = math.fsum(defined) / len(defined) if defined else None
        if len(defined) < len(structures):
            notes.append(
                "mean_dsc_agg is over the structures with a defined DSCagg only "
                f"({len(defined)} of {len(structures)})"
            )
        return cls(
            labels=dict(labels),
            n_cases=len(case_ids),
            case_ids=case_ids,
            structures=structures,
            mean_dsc_agg=mean,
            rows=list(rows),
            notes=notes,
        )

    def dsc_agg(self, structure: str) -> float | None:
        for s in self.structures:
            if s.structure == structure:
                return s.dsc_agg
        raise KeyError(structure)

    ROW_MODEL: ClassVar[type[BaseModel]] = CaseStructureResult

    # ------------------------------------------------------------------ output
    def to_table(self) -> str:
        return format_table(self)


def aggregate_structure(
    rows: Iterable[CaseStructureResult], structure: str, label: int
) -> StructureSummary:
    mine = [r for r in rows if r.structure == structure]
    tp = math.fsum(r.tp_mm3 for r in mine)
    gt = math.fsum(r.gt_mm3 for r in mine)
    pred = math.fsum(r.pred_mm3 for r in mine)
    denom = gt + pred
    note = None
    if denom > 0:
        value: float | None = 2.0 * tp / denom
    else:
        value = None
        note = (
            f"label {label} absent from ground truth and prediction in all {len(mine)} case(s): "
            "DSCagg undefined (0/0), reported as null and left out of the mean"
        )
    return StructureSummary(
        structure=structure,
        label=label,
        dsc_agg=value,
        sum_tp_mm3=tp,
        sum_gt_mm3=gt,
        sum_pred_mm3=pred,
        cases_with_gt=sum(1 for r in mine if r.gt_voxels > 0),
        cases_with_pred=sum(1 for r in mine if r.pred_voxels > 0),
        note=note,
    )


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_table(report: EvaluationReport) -> str:
    """Fixed-width plain-text table: per case × structure rows, then DSCagg per structure."""
    w = max([12] + [len(r.case_id) + 1 for r in report.rows])  # case column fits the longest id
    head = f"{'case':<{w}} {'structure':<10} {'DSC':>8} {'HD95 mm':>9} {'MSD mm':>9} " \
           f"{'GT mm3':>13} {'Pred mm3':>13} {'TP mm3':>13}"
    lines = [head, "-" * len(head)]
    for r in report.rows:
        case = r.case_id + ("*" if r.resampled else "")
        lines.append(
            f"{case:<{w}} {r.structure:<10.10} {_fmt(r.dsc):>8} {_fmt(r.hd95_mm, 2):>9} "
            f"{_fmt(r.msd_mm, 2):>9} {r.gt_mm3:>13.1f} {r.pred_mm3:>13.1f} {r.tp_mm3:>13.1f}"
        )
    lines.append("-" * len(head))
    for s in report.structures:
        lines.append(
            f"{'DSCagg':<{w}} {s.structure:<10.10} {_fmt(s.dsc_agg):>8}"
            f"   (GT in {s.cases_with_gt}/{report.n_cases} cases, pred in {s.cases_with_pred})"
        )
    lines.append(f"{'mean DSCagg':<{w + 11}} {_fmt(report.mean_dsc_agg):>8}   ({report.n_cases} cases)")
    if any(r.resampled for r in report.rows):
        lines.append("* prediction resampled onto the ground-truth grid (nearest neighbour)")
    lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines) + "\n"
