"""Task-2 inference keeps the exact input grid on real HNTS-MRG geometries (phantom images built
around the REAL masks), including the 768×768×116 case, and on a non-identity direction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.phantoms import make_mri_case_from_real_masks, write_gc_case

REPO = Path(__file__).resolve().parents[1]


def _infer(case, tmp_path: Path) -> sitk.Image:
    case_dir, out_dir = tmp_path / "in", tmp_path / "out"
    write_gc_case(case, case_dir, "hntsmrg-task2")
    r = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(case_dir), "--output",
                        str(out_dir), "--device", "cpu", "--folds", "0", "--tta", "off"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    files = list(out_dir.rglob("*"))
    assert [p.relative_to(out_dir).as_posix() for p in files if p.is_file()] == [
        "images/mri-head-neck-segmentation/output.mha"]
    return sitk.ReadImage(str(out_dir / "images/mri-head-neck-segmentation/output.mha"))


def _assert_same_grid(mask: sitk.Image, ref: sitk.Image) -> None:
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == ref.GetSize()
    assert mask.GetSpacing() == ref.GetSpacing()
    assert mask.GetOrigin() == ref.GetOrigin()
    assert mask.GetDirection() == ref.GetDirection()
    assert set(np.unique(sitk.GetArrayFromImage(mask)).tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("case_id", ["95", "91", "77"])  # 768²×116 @0.68, 480²×140 @0.83, 528²×104 @0.98
def test_real_geometry_exact(case_id, hntsmrg_real, tmp_path):
    case = make_mri_case_from_real_masks(
        hntsmrg_real / "groundtruth_masks" / f"{case_id}_midRT_mask.nii.gz",
        hntsmrg_real / "prediction_masks" / f"{case_id}_preRT_mask_registered.nii.gz", seed=1)
    real = sitk.ReadImage(str(hntsmrg_real / "groundtruth_masks" / f"{case_id}_midRT_mask.nii.gz"))
    assert case.mid_t2.GetSize() == real.GetSize()
    mask = _infer(case, tmp_path)
    _assert_same_grid(mask, real)
    # the prediction is not empty where the real mid-RT tumour is (the phantom built it there)
    assert (sitk.GetArrayFromImage(mask) > 0).sum() > 0


def test_non_identity_direction_kept(tmp_path):
    from hnseg.phantoms import make_mri_case

    case = make_mri_case(77, "77")
    # coronal-like acquisition with a flipped row: index x → -L/R, index y → S/I, index z → A/P
    direction = (-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)
    for img in (case.mid_t2, case.mid_mask, case.reg_t2, case.reg_mask, case.pre_t2, case.pre_mask):
        img.SetDirection(direction)
    mask = _infer(case, tmp_path)
    _assert_same_grid(mask, case.mid_t2)
