"""SegRap 2023 training release layout and hnseg's NPC layout → training samples.

SegRap (as released, one folder per case)::

    <root>/segrap_XXXX/image.nii.gz            non-contrast CT
    <root>/segrap_XXXX/image_contrast.nii.gz   contrast-enhanced CT (same grid)
    <root>/segrap_XXXX/<Structure>.nii.gz      one binary mask per structure (45 OARs, GTVp, GTVnd)

NPC (hnseg's own, docs/npc_layout.md)::

    <root>/npc_XXXX/ct.nii.gz   mri.nii.gz (own grid, registered)   <Structure>.nii.gz   t_stage.json
"""

from __future__ import annotations

import json
from pathlib import Path

from hnseg.errors import DatasetLayoutError
from hnseg.tasks import get_task
from hnseg.tasks.npc import CT as NPC_CT, MRI as NPC_MRI
from hnseg.tasks.segrap import CT, CT_CONTRAST
from hnseg.training.releases.sample import Sample

LAYOUTS = {
    "segrap-task1": ("segrap_", {CT: "image.nii.gz", CT_CONTRAST: "image_contrast.nii.gz"}),
    "segrap-task2": ("segrap_", {CT: "image.nii.gz", CT_CONTRAST: "image_contrast.nii.gz"}),
    "npc-targets": ("npc_", {NPC_CT: "ct.nii.gz", NPC_MRI: "mri.nii.gz"}),
}
T_STAGE_FILE = "t_stage.json"


def _case_folders(root: Path, prefix: str) -> list[Path]:
    if not root.is_dir():
        raise DatasetLayoutError(f"release folder {root}: expected a folder of {prefix}XXXX case folders")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith(prefix))
    if not folders:
        raise DatasetLayoutError(f"release folder {root}: expected {prefix}XXXX case folders, found none")
    return folders


def _t_stage(path: Path, classes: tuple[str, ...]) -> str:
    try:
        stage = json.loads(path.read_text()).get("t_stage")
    except (OSError, ValueError, AttributeError) as exc:
        raise DatasetLayoutError(f"{path}: expected a JSON object {{\"t_stage\": \"T1\"}}: {exc}") from None
    if stage not in classes:
        raise DatasetLayoutError(f"{path}: expected t_stage in {list(classes)}, found {stage!r}")
    return stage


def samples(root: Path, task: str) -> list[Sample]:
    """One sample per case folder; every structure file of the task must exist."""
    if task not in LAYOUTS:
        raise DatasetLayoutError(f"no SegRap/NPC release layout for task {task!r}")
    profile = get_task(task)
    prefix, images = LAYOUTS[task]
    out = []
    for folder in _case_folders(Path(root), prefix):
        sample = Sample(
            name=folder.name, patient=folder.name,
            inputs={slug: folder / name for slug, name in images.items()},
            structures={s: folder / f"{s}.nii.gz" for s in profile.structures},
            t_stage=_t_stage(folder / T_STAGE_FILE, profile.t_stage.classes) if profile.t_stage else None,
        )
        sample.check_files(f"case {folder.name}")
        out.append(sample)
    return out
