"""Synthetic HNTS-MRG phantoms: determinism, geometry, labels, contrast, forcing flags, layouts,
real-mask mode."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.phantoms import (
    beyond_box_extension, gc_image_name, make_mri_case, make_mri_case_from_real_masks,
    write_gc_case, write_hntsmrg_release,
)
from hnseg.phantoms import cli as phantoms_cli
from hnseg.phantoms.anatomy import TISSUE_IDS
from hnseg.tasks.hntsmrg import MID_T2, PRE_MASK, PRE_T2, REG_MASK, REG_T2

A = sitk.GetArrayFromImage


def _grid(img):
    return img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection()


@pytest.fixture(scope="module")
def case():
    return make_mri_case(7, "1007")


def test_determinism_same_seed_bit_identical(case):
    again = make_mri_case(7, "1007")
    for attr in ("pre_t2", "pre_mask", "mid_t2", "mid_mask", "reg_t2", "reg_mask"):
        a, b = A(getattr(case, attr)), A(getattr(again, attr))
        assert a.dtype == b.dtype and np.array_equal(a, b), attr
        assert _grid(getattr(case, attr)) == _grid(getattr(again, attr))
    assert json.dumps(case.info, sort_keys=True) == json.dumps(again.info, sort_keys=True)


def test_different_seed_differs(case):
    other = make_mri_case(8, "1007")
    assert not np.array_equal(A(case.mid_mask), A(other.mid_mask))
    assert not np.array_equal(A(case.pre_t2)[:8], A(other.pre_t2)[:8])


def test_types_geometry_and_labels(case):
    mid = case.mid_mask
    assert mid.GetSize() == (112, 112, 48)
    assert mid.GetSpacing() == pytest.approx((1.75, 1.75, 2.5))
    for img in (case.reg_t2, case.reg_mask, case.mid_t2):
        assert _grid(img) == _grid(mid)  # exactly the mid-RT grid
    assert _grid(case.pre_t2) == _grid(case.pre_mask)
    assert case.pre_t2.GetOrigin() != mid.GetOrigin()  # the pre-RT scan has its own grid
    for m in (case.pre_mask, case.mid_mask, case.reg_mask):
        assert m.GetPixelID() == sitk.sitkUInt8
        assert set(np.unique(A(m)).tolist()) <= {0, 1, 2}
    for im in (case.pre_t2, case.mid_t2, case.reg_t2):
        assert im.GetPixelID() == sitk.sitkFloat32
        assert np.isfinite(A(im)).all()
    assert (A(case.pre_mask) == 1).any() and (A(case.reg_mask) == 1).any()
    json.dumps(case.info)  # JSON-serialisable
    for key in ("seed", "spacing", "size", "gtvp_vanished", "gtvn_vanished", "beyond_box",
                "beyond_box_vox", "n_nodes", "volumes_ml"):
        assert key in case.info


def test_spacing_is_respected_in_mm():
    c = make_mri_case(3, size=(64, 64, 40), spacing=(3.0, 3.0, 3.0))
    assert c.mid_mask.GetSize() == (64, 64, 40)
    assert c.mid_t2.GetSpacing() == (3.0, 3.0, 3.0)
    ref = make_mri_case(3)
    # same seed, other spacing: same anatomy ⇒ GTVp volume in mm³ agrees within partial-volume error
    v1, v2 = c.info["volumes_ml"]["pre"]["GTVp"], ref.info["volumes_ml"]["pre"]["GTVp"]
    assert v1 == pytest.approx(v2, rel=0.25)


def test_tumour_muscle_contrast(case):
    img, mask, tissue = A(case.pre_t2), A(case.pre_mask), A(case.tissue)
    muscle = img[tissue == TISSUE_IDS["muscle"]].mean()
    from scipy import ndimage

    core = ndimage.binary_erosion(mask == 1)
    ratio = img[core].mean() / muscle
    assert 1.4 <= case.info["tumour_muscle_ratio_pre"] <= 1.8
    assert 1.3 <= ratio <= 1.9
    assert abs(ratio - case.info["tumour_muscle_ratio_pre"]) < 0.12
    assert ratio == pytest.approx(case.info["contrast_pre"]["ratio"], rel=1e-3)
    # air is dark, CSF bright
    assert img[tissue == TISSUE_IDS["csf"]].mean() > 2.0 * muscle
    assert img[tissue == TISSUE_IDS["air"]].mean() < 0.3 * muscle


def test_forced_gtvp_vanished():
    c = make_mri_case(11, gtvp_vanished=True, beyond_box=False)
    assert c.info["gtvp_vanished"] is True
    assert not (A(c.mid_mask) == 1).any()
    assert (A(c.reg_mask) == 1).any() and (A(c.pre_mask) == 1).any()
    assert c.info["volumes_ml"]["mid"]["GTVp"] == 0.0


def test_forced_gtvn_vanished():
    for seed in range(20):  # first seed with nodes
        c = make_mri_case(seed, gtvn_vanished=True)
        if c.info["n_nodes"]:
            break
    assert c.info["gtvn_vanished"] is True
    assert not (A(c.mid_mask) == 2).any() and (A(c.reg_mask) == 2).any()


@pytest.mark.parametrize("seed", [1, 5, 12])
def test_forced_beyond_box(seed):
    c = make_mri_case(seed, beyond_box=True)
    ext = beyond_box_extension(A(c.mid_mask), A(c.reg_mask))
    assert ext == c.info["beyond_box_vox"]
    assert max(ext) >= 9
    assert c.info["beyond_box"] is True
    # verify independently: some mid-RT GTV voxel lies ≥ 9 voxels outside the registered box
    reg = np.argwhere(A(c.reg_mask) > 0)
    mid = np.argwhere(A(c.mid_mask) > 0)
    lo, hi = reg.min(0), reg.max(0)
    outside = np.maximum(lo - mid, mid - hi).max()
    assert outside >= 9


def test_not_beyond_box():
    c = make_mri_case(5, beyond_box=False)
    assert c.info["beyond_box"] is False and max(c.info["beyond_box_vox"]) < 9


def test_forcing_keeps_anatomy():
    a = make_mri_case(4, gtvp_vanished=False)
    b = make_mri_case(4, gtvp_vanished=True)
    assert np.array_equal(A(a.pre_mask), A(b.pre_mask))


def test_release_layout(tmp_path, case):
    root = write_hntsmrg_release([case], tmp_path / "rel")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted([
        "1007/midRT/1007_midRT_T2.nii.gz", "1007/midRT/1007_midRT_mask.nii.gz",
        "1007/midRT/1007_preRT_T2_registered.nii.gz", "1007/midRT/1007_preRT_mask_registered.nii.gz",
        "1007/preRT/1007_preRT_T2.nii.gz", "1007/preRT/1007_preRT_mask.nii.gz",
        "1007/phantom_info.json",
    ])
    back = sitk.ReadImage(str(root / "1007/midRT/1007_midRT_mask.nii.gz"))
    assert np.array_equal(A(back), A(case.mid_mask))
    assert back.GetPixelID() == sitk.sitkUInt8
    assert json.loads((root / "1007/phantom_info.json").read_text())["seed"] == 7


@pytest.mark.parametrize("task,slugs,gt", [
    ("hntsmrg-task1", [PRE_T2], "pre_mask"),
    ("hntsmrg-task2", [MID_T2, REG_T2, REG_MASK, PRE_T2, PRE_MASK], "mid_mask"),
])
def test_gc_layout(tmp_path, case, task, slugs, gt):
    d = write_gc_case(case, tmp_path / "c", task, ground_truth_path=tmp_path / "gt.mha")
    entries = json.loads((d / "inputs.json").read_text())
    assert [e["socket"]["slug"] for e in entries] == slugs
    for e in entries:
        slug = e["socket"]["slug"]
        assert e["socket"]["relative_path"] == f"images/{slug}"
        assert e["socket"]["super_kind"] == "Image"
        assert e["socket"]["kind"] == ("Segmentation" if slug in (REG_MASK, PRE_MASK) else "Image")
        files = list((d / "images" / slug).iterdir())
        assert [f.name for f in files] == [e["image"]["name"]] == [gc_image_name("1007", slug)]
    assert sorted(p.name for p in (d / "images").iterdir()) == sorted(slugs)
    assert np.array_equal(A(sitk.ReadImage(str(tmp_path / "gt.mha"))), A(getattr(case, gt)))
    # rewriting is idempotent: still exactly one file per socket
    write_gc_case(case, d, task)
    assert all(len(list((d / "images" / s).iterdir())) == 1 for s in slugs)


def test_cli_synthetic_release_and_gc(tmp_path):
    p = phantoms_cli.configure_parser(argparse.ArgumentParser())
    args = p.parse_args(["--out", str(tmp_path / "r"), "--n", "2", "--size", "48,48,24",
                         "--spacing", "3,3,4"])
    assert phantoms_cli.run(args) == 0
    assert (tmp_path / "r/1001/midRT/1001_preRT_mask_registered.nii.gz").is_file()
    assert sitk.ReadImage(str(tmp_path / "r/1000/preRT/1000_preRT_T2.nii.gz")).GetSize()[:2] == (48, 48)
    args = p.parse_args(["--out", str(tmp_path / "g"), "--n", "1", "--layout", "gc", "--task",
                         "hntsmrg-task1", "--size", "48,48,24", "--spacing", "3,3,4"])
    assert phantoms_cli.run(args) == 0
    assert (tmp_path / "g/1000/inputs.json").is_file()
    assert (tmp_path / "g/ground_truth/1000.mha").is_file()


def test_real_mask_mode_small_case(hntsmrg_real):
    mid_p = hntsmrg_real / "groundtruth_masks" / "94_midRT_mask.nii.gz"
    reg_p = hntsmrg_real / "prediction_masks" / "94_preRT_mask_registered.nii.gz"
    c = make_mri_case_from_real_masks(mid_p, reg_p, seed=3)
    real_mid, real_reg = sitk.ReadImage(str(mid_p)), sitk.ReadImage(str(reg_p))
    assert c.case_id == "94"
    for img in (c.mid_mask, c.mid_t2, c.reg_t2, c.reg_mask, c.pre_t2, c.pre_mask):
        assert img.GetSize() == real_mid.GetSize()
        assert img.GetSpacing() == real_mid.GetSpacing()
        assert img.GetOrigin() == real_mid.GetOrigin()
        assert img.GetDirection() == real_mid.GetDirection()
    assert np.array_equal(A(c.mid_mask), A(real_mid))
    assert np.array_equal(A(c.reg_mask), A(real_reg))
    assert c.info["pre_is_registered"] is True and "simplification" in c.info
    img, m = A(c.mid_t2), A(c.mid_mask)
    assert img.dtype == np.float32 and np.isfinite(img).all()
    lesion = img[m == 2].mean()
    ring = img[(np.roll(m == 2, 12, axis=2)) & (m == 0)].mean()  # tissue beside the node
    assert lesion > 1.1 * ring
    again = make_mri_case_from_real_masks(mid_p, reg_p, seed=3)
    assert np.array_equal(A(again.mid_t2), img)
    json.dumps(c.info)


def test_real_mask_mode_768(hntsmrg_real):
    """The largest real grid (case 95, 768×768×116 = 68 M voxels) in well under 40 s."""
    mid_p = hntsmrg_real / "groundtruth_masks" / "95_midRT_mask.nii.gz"
    reg_p = hntsmrg_real / "prediction_masks" / "95_preRT_mask_registered.nii.gz"
    t0 = time.perf_counter()
    c = make_mri_case_from_real_masks(mid_p, reg_p, seed=0)
    dt = time.perf_counter() - t0
    assert c.mid_t2.GetSize() == (768, 768, 116)
    assert dt < 40, dt
    real_mid = sitk.ReadImage(str(mid_p))
    assert c.mid_mask.GetOrigin() == real_mid.GetOrigin()
    assert np.array_equal(A(c.mid_mask), A(real_mid))
