"""Writers: the HNTS-MRG training-release layout and the grand-challenge input layout."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import SimpleITK as sitk

from hnseg.io.write import write_image_atomic, write_json_atomic
from hnseg.phantoms.anatomy import MriPhantomCase
from hnseg.tasks import get_task
from hnseg.tasks.hntsmrg import MID_T2, PRE_MASK, PRE_T2, REG_MASK, REG_T2

log = logging.getLogger(__name__)

# socket slug → MriPhantomCase attribute
SOCKET_ATTR = {PRE_T2: "pre_t2", PRE_MASK: "pre_mask", MID_T2: "mid_t2", REG_T2: "reg_t2",
               REG_MASK: "reg_mask"}
# sockets written per task (order of inputs.json) and the attribute holding the ground truth
TASK_SOCKETS = {
    "hntsmrg-task1": (PRE_T2,),
    "hntsmrg-task2": (MID_T2, REG_T2, REG_MASK, PRE_T2, PRE_MASK),
}
TASK_GROUND_TRUTH = {"hntsmrg-task1": "pre_mask", "hntsmrg-task2": "mid_mask"}
_MASK_SOCKETS = {PRE_MASK, REG_MASK}
_UUID_NAMESPACE = uuid.UUID("5b0f3c1e-6a47-4d55-9a3e-2f4c8d7e1a90")


def _as_mask(img: sitk.Image) -> sitk.Image:
    return img if img.GetPixelID() == sitk.sitkUInt8 else sitk.Cast(img, sitk.sitkUInt8)


def _as_image(img: sitk.Image) -> sitk.Image:
    return img if img.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(img, sitk.sitkFloat32)


def write_hntsmrg_release(cases: Iterable[MriPhantomCase], root: str | os.PathLike) -> Path:
    """``<root>/<id>/preRT/<id>_preRT_T2.nii.gz`` … exactly as the HNTS-MRG training release, plus
    ``<root>/<id>/phantom_info.json``. Returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for case in cases:
        cid = case.case_id
        pre, mid = root / cid / "preRT", root / cid / "midRT"
        write_image_atomic(_as_image(case.pre_t2), pre / f"{cid}_preRT_T2.nii.gz")
        write_image_atomic(_as_mask(case.pre_mask), pre / f"{cid}_preRT_mask.nii.gz")
        write_image_atomic(_as_image(case.mid_t2), mid / f"{cid}_midRT_T2.nii.gz")
        write_image_atomic(_as_mask(case.mid_mask), mid / f"{cid}_midRT_mask.nii.gz")
        write_image_atomic(_as_image(case.reg_t2), mid / f"{cid}_preRT_T2_registered.nii.gz")
        write_image_atomic(_as_mask(case.reg_mask), mid / f"{cid}_preRT_mask_registered.nii.gz")
        write_json_atomic(case.info, root / cid / "phantom_info.json")
        log.debug("wrote release case %s under %s", cid, root / cid)
    return root


def gc_image_name(case_id: str, slug: str) -> str:
    """Deterministic file name of one socket's image (uuid5 of case id + slug)."""
    return f"{uuid.uuid5(_UUID_NAMESPACE, f'{case_id}/{slug}')}.mha"


def write_socket_image(img: sitk.Image, case_dir: Path, case_id: str, slug: str, kind: str) -> dict:
    """``case_dir/images/<slug>/<uuid>.mha`` (stale images of the socket removed); returns the
    socket's ``inputs.json`` entry."""
    folder = Path(case_dir) / "images" / slug
    fname = gc_image_name(case_id, slug)
    if folder.is_dir():
        for old in folder.iterdir():
            if old.is_file() and old.name != fname and old.name.lower().endswith(".mha"):
                log.warning("removing stale image %s", old)
                old.unlink()
    write_image_atomic(img, folder / fname)
    return {"socket": {"slug": slug, "relative_path": f"images/{slug}", "kind": kind, "super_kind": "Image"},
            "image": {"name": fname}}


def write_gc_case(case: MriPhantomCase, case_dir: str | os.PathLike, task: str,
                  ground_truth_path: str | os.PathLike | None = None) -> Path:
    """Grand-challenge input layout: ``case_dir/inputs.json`` + ``case_dir/images/<slug>/<uuid>.mha``
    for the sockets of ``task`` (``hntsmrg-task1`` / ``hntsmrg-task2``); the task's ground truth
    (pre-RT mask for task 1, mid-RT mask for task 2) goes to ``ground_truth_path`` if given."""
    name = getattr(task, "name", task)
    profile = get_task(name)  # raises TaskSelectionError for unknown names
    if profile.name not in TASK_SOCKETS:
        raise ValueError(f"write_gc_case: no phantom layout for task {profile.name!r}")
    case_dir = Path(case_dir)
    kinds = {s.slug: s.kind for s in profile.inputs}
    entries = []
    for slug in TASK_SOCKETS[profile.name]:
        is_mask = kinds.get(slug) == "mask" or slug in _MASK_SOCKETS
        img = getattr(case, SOCKET_ATTR[slug])
        img = _as_mask(img) if is_mask else _as_image(img)
        entries.append(write_socket_image(img, case_dir, case.case_id, slug,
                                          "Segmentation" if is_mask else "Image"))
    write_json_atomic(entries, case_dir / "inputs.json")
    if ground_truth_path is not None:
        gt = getattr(case, TASK_GROUND_TRUTH[profile.name])
        write_image_atomic(_as_mask(gt), ground_truth_path)
    return case_dir
