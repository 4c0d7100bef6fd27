"""Class 9, the refusals that existed before issue 13 (see test/test_inputs.py, whose in-process twins
these are), so that the catalogue is complete: here each runs in the real entry point under the
memory cap. Images are the plausible phantoms (test_inputs' 16×16×8 images might now meet a
plausibility limit before the refusal under test); the folders are written by test_inputs' ``write_case``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from test_inputs import write_case

from hostile.kit import (
    CT, CT_CONTRAST, NPC_MRI, PRE_T2, Setup, ct_mri, ct_pair, mri, mri_array, on_grid, predict_args,
    task1_case,
)

MID_T2 = "mid-rt-t2w-head-neck"
REG_MASK = "registered-pre-rt-head-neck-segmentation"


def _mask(label: int = 2, dtype=np.uint8) -> sitk.Image:
    a = np.zeros(mri_array().shape, dtype)
    a[8:14, 20:30, 20:30] = 1
    a[10:16, 36:44, 36:44] = label
    return on_grid(a, mri())


def _predict(root: Path, in_dir: Path, *extra: str, **kw) -> Setup:
    out = root / "out"
    return Setup(predict_args(in_dir, out, *extra), out=out, **kw)


def _task2(root: Path, layout: str = "json", inputs_json: str | None = None, **sockets) -> Path:
    values: dict[str, object] = {MID_T2: mri(), REG_MASK: _mask()}
    values.update({k.replace("_", "-"): v for k, v in sockets.items()})
    return write_case(root / "in", {k: v for k, v in values.items() if v is not None}, layout, inputs_json)


def missing_socket(root: Path) -> Setup:
    in_dir = write_case(root / "in", {MID_T2: mri()})
    return _predict(root, in_dir, "--task", "hntsmrg-task2")


def two_images_in_socket(root: Path) -> Setup:
    return _predict(root, _task2(root, **{REG_MASK: [_mask(), _mask()]}), mention=("x.mha", "x1.mha"))


def inputs_json_invalid(root: Path) -> Setup:
    return _predict(root, _task2(root, inputs_json='[{"socket": {"slug": '))


def inputs_json_not_list(root: Path) -> Setup:
    return _predict(root, _task2(root, inputs_json='{"socket": {"slug": "mid-rt-t2w-head-neck"}}'))


def garbage_mha(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in", b"ObjectType = Image\n\x00\x01garbage" * 40))


def empty_file(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in", b""))


def truncated_nii_gz(root: Path) -> Setup:
    in_dir = root / "in"
    path = in_dir / "images" / PRE_T2 / "x.nii.gz"
    task1_case(in_dir)
    (in_dir / "images" / PRE_T2 / "x.mha").unlink()
    sitk.WriteImage(mri(), str(path), True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return _predict(root, in_dir, mention=("x.nii.gz",))


def image_2d(root: Path) -> Setup:
    img = sitk.GetImageFromArray(mri_array()[12])
    img.SetSpacing((2.5, 2.5))
    return _predict(root, task1_case(root / "in", img))


def image_4d(root: Path) -> Setup:
    vol = mri()
    img = sitk.JoinSeries([vol, vol])
    return _predict(root, task1_case(root / "in", img))


def float_mask(root: Path) -> Setup:
    return _predict(root, _task2(root, **{REG_MASK: _mask(dtype=np.float32)}))


def mask_label_7(root: Path) -> Setup:
    return _predict(root, _task2(root, **{REG_MASK: _mask(label=7)}))


def mask_other_grid(root: Path) -> Setup:
    m = _mask()
    m.SetOrigin(tuple(o + 2.0 for o in m.GetOrigin()))
    return _predict(root, _task2(root, **{REG_MASK: m}))


def npc_no_overlap(root: Path) -> Setup:
    ct, _ = ct_pair()
    far = ct_mri()
    far.SetOrigin(tuple(o + 2000.0 for o in far.GetOrigin()))
    in_dir = write_case(root / "in", {CT: ct, NPC_MRI: far})
    return _predict(root, in_dir, "--task", "npc-targets")


def unknown_task(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in"), "--task", "hntsmrg-task9")


def segrap_without_task(root: Path) -> Setup:
    ct, cte = ct_pair()
    return _predict(root, write_case(root / "in", {CT: ct, CT_CONTRAST: cte}))


def unknown_fold(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in"), "--folds", "7")


def missing_input_folder(root: Path) -> Setup:
    return _predict(root, root / "nothing-here", mention=(str(root / "nothing-here"),))
