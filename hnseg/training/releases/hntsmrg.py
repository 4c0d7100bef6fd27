"""HNTS-MRG 2024 training release layout → training samples per task.

Per patient ``<root>/<id>/``::

    preRT/<id>_preRT_T2.nii.gz   preRT/<id>_preRT_mask.nii.gz
    midRT/<id>_midRT_T2.nii.gz   midRT/<id>_midRT_mask.nii.gz
    midRT/<id>_preRT_T2_registered.nii.gz   midRT/<id>_preRT_mask_registered.nii.gz
"""

from __future__ import annotations

from pathlib import Path

from hnseg.errors import DatasetLayoutError
from hnseg.tasks.hntsmrg import MID_T2, PRE_T2, REG_MASK
from hnseg.training.releases.sample import Sample


# the release's files per patient, relative to <root>/<id>/, without the .nii.gz extension
STEMS = {
    "pre_t2": "preRT/{id}_preRT_T2",
    "pre_mask": "preRT/{id}_preRT_mask",
    "mid_t2": "midRT/{id}_midRT_T2",
    "mid_mask": "midRT/{id}_midRT_mask",
    "reg_t2": "midRT/{id}_preRT_T2_registered",
    "reg_mask": "midRT/{id}_preRT_mask_registered",
}


def _files(root: Path, pid: str) -> dict[str, Path]:
    return {k: root / pid / f"{stem.format(id=pid)}.nii.gz" for k, stem in STEMS.items()}


def patients(root: Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"release folder {root}: expected a folder of patient folders, found none")
    ids = sorted((d.name for d in root.iterdir() if (d / "midRT").is_dir() or (d / "preRT").is_dir()),
                 key=lambda s: (len(s), s))
    if not ids:
        raise DatasetLayoutError(
            f"release folder {root}: expected <id>/preRT and <id>/midRT folders, found none"
        )
    return ids


def samples(root: Path, task: str) -> list[Sample]:
    """Task 1: pre-RT and mid-RT T2w as samples. Task 2: mid-RT + prior from the registered mask,
    plus each pre-RT image with a prior from its own mask as a training-only sample (as the seed)."""
    root = Path(root)
    out: list[Sample] = []
    for pid in patients(root):
        f = _files(root, pid)
        if task == "hntsmrg-task1":
            out.append(Sample(name=f"{pid}_pre", patient=pid, inputs={PRE_T2: f["pre_t2"]}, label=f["pre_mask"]))
            out.append(Sample(name=f"{pid}_mid", patient=pid, inputs={PRE_T2: f["mid_t2"]}, label=f["mid_mask"]))
        elif task == "hntsmrg-task2":
            out.append(Sample(name=f"{pid}_mid", patient=pid,
                              inputs={MID_T2: f["mid_t2"], REG_MASK: f["reg_mask"]}, label=f["mid_mask"]))
            out.append(Sample(name=f"{pid}_pre", patient=pid,
                              inputs={MID_T2: f["pre_t2"], REG_MASK: f["pre_mask"]}, label=f["pre_mask"],
                              train_only=True))
        else:
            raise DatasetLayoutError(f"the HNTS-MRG release has no samples for task {task!r}")
    for s in out:
        s.check_files(f"patient {s.patient}")
    return out
