"""Writers for the CT phantoms: the SegRap 2023 training-release layout, hnseg's NPC release layout
(docs/npc_layout.md), the grand-challenge input layout and 4D binary-stack ground truth."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.io.write import write_image_atomic, write_json_atomic
from hnseg.write.stack import stack_image, unstack
from hnseg.phantoms.ct_anatomy import CtPhantomCase
from hnseg.phantoms.layouts import _as_image as _mr, _as_mask as _mask, write_socket_image
from hnseg.tasks import get_task
from hnseg.tasks import npc, segrap

__all__ = ["CT_TASKS", "stack_masks", "unstack", "ground_truth_stack", "write_segrap_release",
           "write_npc_release", "write_gc_case"]

log = logging.getLogger(__name__)

CT_TASKS: tuple[str, ...] = ("segrap-task1", "segrap-task2", "npc-targets")
# socket slug → CtPhantomCase attribute (both task families call the planning CT "head-neck-ct")
SOCKET_ATTR: dict[str, str] = {segrap.CT: "ct", segrap.CT_CONTRAST: "ct_contrast", npc.MRI: "mri"}
SEGRAP_RELEASE_STRUCTURES: tuple[str, ...] = segrap.SEGRAP_OARS + segrap.SEGRAP_GTVS


# ----------------------------------------------------------------------------------------------
# 4D binary stacks


def stack_masks(masks: Sequence[np.ndarray], reference: sitk.Image) -> sitk.Image:
    """S binary (z, y, x) masks on ``reference``'s grid → one 4D uint8 image (``write.stack``)."""
    if not len(masks):
        raise ValueError("stack_masks: no masks given")
    return stack_image(np.stack([(np.asarray(m) > 0).astype(np.uint8) for m in masks]), reference)


# ----------------------------------------------------------------------------------------------
# release layouts


def _padded(case_id: str) -> str:
    return case_id.zfill(4) if case_id.isdigit() else case_id


def _ct(img: sitk.Image) -> sitk.Image:
    return img if img.GetPixelID() == sitk.sitkInt16 else sitk.Cast(img, sitk.sitkInt16)


def write_segrap_release(cases: Iterable[CtPhantomCase], root: str | os.PathLike) -> Path:
    """SegRap 2023 training release: ``root/segrap_XXXX/image.nii.gz`` (non-contrast CT, int16),
    ``image_contrast.nii.gz`` and one uint8 ``<Structure>.nii.gz`` per OAR (45) + GTVp + GTVnd,
    plus ``phantom_info.json``. Returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for case in cases:
        d = root / f"segrap_{_padded(case.case_id)}"
        write_image_atomic(_ct(case.ct), d / "image.nii.gz")
        write_image_atomic(_ct(case.ct_contrast), d / "image_contrast.nii.gz")
        for name in SEGRAP_RELEASE_STRUCTURES:
            write_image_atomic(_mask(case.structures[name]), d / f"{name}.nii.gz")
        write_json_atomic(case.info, d / "phantom_info.json")
        log.debug("wrote SegRap release case %s", d)
    return root


def write_npc_release(cases: Iterable[CtPhantomCase], root: str | os.PathLike) -> Path:
    """hnseg's NPC release (docs/npc_layout.md): ``root/npc_XXXX/ct.nii.gz`` (int16 HU),
    ``mri.nii.gz`` (float32 T1w, own grid, co-registered), one uint8 ``<Structure>.nii.gz`` per name
    of ``NPC_STRUCTURES`` on the CT grid, ``t_stage.json`` and ``phantom_info.json``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for case in cases:
        d = root / f"npc_{_padded(case.case_id)}"
        write_image_atomic(_ct(case.ct), d / "ct.nii.gz")
        write_image_atomic(_mr(case.mri), d / "mri.nii.gz")
        for name in npc.NPC_STRUCTURES:
            write_image_atomic(_mask(case.structures[name]), d / f"{name}.nii.gz")
        write_json_atomic({"t_stage": case.t_stage}, d / "t_stage.json")
        write_json_atomic(case.info, d / "phantom_info.json")
        log.debug("wrote NPC release case %s", d)
    return root


# ----------------------------------------------------------------------------------------------
# grand-challenge layout


def ground_truth_stack(case: CtPhantomCase, task: str) -> sitk.Image:
    """The task's binary-stack output for ``case`` (structures in the output socket's order)."""
    profile = get_task(getattr(task, "name", task))
    out = profile.stack_output
    if out is None:
        raise ValueError(f"{profile.name}: expected a binary-stack output, found none")
    masks = [sitk.GetArrayViewFromImage(case.structures[n]) for n in out.structures]
    return stack_masks(masks, case.ct)


def write_gc_case(case: CtPhantomCase, case_dir: str | os.PathLike, task: str,
                  ground_truth_dir: str | os.PathLike | None = None) -> Path:
    """Grand-challenge inputs for ``task`` (segrap-task1 / segrap-task2 / npc-targets):
    ``case_dir/inputs.json`` + ``case_dir/images/<slug>/<uuid5>.mha`` (CT int16, MRI float32). With
    ``ground_truth_dir``: ``<case_id>.mha`` = the 4D uint8 stack of the task's binary-stack output
    and, for npc-targets, ``<case_id>_t-stage.json`` (``TStageOutput``, probability 1 on the true
    stage)."""
    name = getattr(task, "name", task)
    profile = get_task(name)  # TaskSelectionError for unknown names
    if profile.name not in CT_TASKS:
        raise ValueError(f"write_gc_case: no CT phantom layout for task {profile.name!r}")
    case_dir = Path(case_dir)
    entries = []
    for sock in profile.inputs:
        attr = SOCKET_ATTR[sock.slug]
        img = getattr(case, attr)
        img = _mr(img) if attr == "mri" else _ct(img)
        entries.append(write_socket_image(img, case_dir, case.case_id, sock.slug, "Image"))
    write_json_atomic(entries, case_dir / "inputs.json")
    if ground_truth_dir is not None:
        gt = Path(ground_truth_dir)
        write_image_atomic(ground_truth_stack(case, profile.name), gt / f"{case.case_id}.mha")
        if profile.t_stage is not None:
            probs = [1.0 if c == case.t_stage else 0.0 for c in profile.t_stage.classes]
            out = npc.TStageOutput.from_probabilities(probs)
            write_json_atomic(out.model_dump(), gt / f"{case.case_id}_t-stage.json")
    return case_dir
