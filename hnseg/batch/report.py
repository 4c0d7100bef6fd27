"""The per-case ``report.json`` and the run's ``batch_summary.csv`` (pydantic models), and the
structure statistics they carry (volume in cc, connected components with 26-connectivity)."""

from __future__ import annotations

import csv
import io
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from hnseg.tasks import TaskProfile

REPORT_FILE = "report.json"
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StructureStats(_Model):
    name: str
    output: str = Field(description="output slug the structure is read from")
    voxels: int
    volume_cc: float = Field(description="voxels × voxel volume (mm³) / 1000")
    components: int = Field(description="connected components, 26-connectivity")


class Timings(_Model):
    load_s: float = Field(description="reading + validating the inputs")
    segment_s: float
    write_s: float = Field(description="writing the output images / JSON and drawing the QA sheet")


class WeightsInfo(_Model):
    folder: str
    metadata_sha256: str = Field(description="sha256 of the folder's hnseg_weights.json")


class CaseReport(_Model):
    """``OUT/<case_id>/report.json``: written last, its presence marks a finished case."""

    format_version: int = 1
    hnseg_version: str
    task: str
    case_id: str
    inputs: dict[str, str] = Field(description="socket slug → input file")
    outputs: dict[str, list[str]] = Field(description="output slug → files in the case folder")
    structures: list[StructureStats]
    t_stage: dict[str, Any] | None = None
    registration: dict[str, Any] | None = Field(
        default=None, description="set when the registered pre-RT inputs were computed here (hntsmrg-task2): "
                                  "the sockets computed, their files and the registration record")
    settings: dict[str, Any] = Field(description="prediction settings, plus the folds and device used")
    weights: WeightsInfo
    timings: Timings
    qa_png: str | None = Field(default=None, description="the QA sheet in the case folder; null with --no-qa "
                                                          "or when it could not be drawn")
    warnings: list[str] = Field(default_factory=list)
    finished_at: str = Field(description="UTC, ISO 8601")


class CaseResult(_Model):
    """One row of ``batch_summary.csv``."""

    case: str
    status: Literal["ok", "failed", "skipped", "interrupted"]
    error_class: str = ""
    error_message: str = ""
    seconds: float = 0.0
    volumes_cc: dict[str, float] = Field(default_factory=dict)


class BatchSummary(_Model):
    task: str
    shard: str = Field(default="", description="i/N, empty without --shard")
    model_load_s: float = 0.0
    results: list[CaseResult] = Field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> bool:
        return self.count("failed") > 0


def voxel_volume_cc(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing()[:3])) / 1000.0


def structure_masks(task: TaskProfile, slug: str, image: sitk.Image) -> list[tuple[str, np.ndarray]]:
    """(structure name, boolean (z, y, x) mask) of one image output: label values or stack volumes."""
    socket = next(o for o in task.outputs if o.slug == slug)
    array = sitk.GetArrayFromImage(image)
    if socket.kind == "label-map":
        names = socket.structures or tuple(task.label_map)
        return [(n, array == task.label_map[n]) for n in names]
    return [(n, array[i] > 0) for i, n in enumerate(socket.structures)]


def mask_stats(slug: str, masks: list[tuple[str, np.ndarray]], voxel_cc: float) -> list[StructureStats]:
    """Statistics of the (name, mask) pairs of one output (``structure_masks``)."""
    stats = []
    for name, mask in masks:
        voxels = int(mask.sum())
        components = int(ndimage.label(mask, structure=CONNECTIVITY_26)[1]) if voxels else 0
        stats.append(StructureStats(name=name, output=slug, voxels=voxels, volume_cc=voxels * voxel_cc,
                                    components=components))
    return stats


def summary_columns(task: TaskProfile) -> list[str]:
    names = [n for o in task.image_outputs for n in (o.structures or tuple(task.label_map))]
    return ["case", "status", "error_class", "error_message", "seconds"] + [f"{n}_cc" for n in dict.fromkeys(names)]


def summary_csv(task: TaskProfile, summary: BatchSummary) -> str:
    columns = summary_columns(task)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in summary.results:
        row: dict[str, object] = {"case": r.case, "status": r.status, "error_class": r.error_class,
                                  "error_message": r.error_message, "seconds": f"{r.seconds:.2f}"}
        row.update({f"{n}_cc": f"{v:.3f}" for n, v in r.volumes_cc.items() if f"{n}_cc" in columns})
        writer.writerow(row)
    return buf.getvalue()


def summary_table(summary: BatchSummary) -> str:
    """A plain-text table of the results (for the log)."""
    width = max([4] + [len(r.case) for r in summary.results])
    lines = [f"{'case':<{width}}  status   seconds  error"]
    for r in summary.results:
        error = f"{r.error_class}: {r.error_message}" if r.error_class else ""
        lines.append(f"{r.case:<{width}}  {r.status:<7}  {r.seconds:7.1f}  {error[:160]}")
    interrupted = f", {summary.count('interrupted')} interrupted" if summary.count("interrupted") else ""
    lines.append(f"{summary.count('ok')} ok, {summary.count('failed')} failed, {summary.count('skipped')} skipped"
                 f"{interrupted} (model load {summary.model_load_s:.1f} s)")
    return "\n".join(lines)
