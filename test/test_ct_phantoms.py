"""Synthetic CT (+ co-registered T1w MRI) phantoms for segrap-task1/2 and npc-targets: determinism,
grids, HU / enhancement, OAR coverage, containments, laterality, target nesting and margins, MRI,
T-stage rule, release / grand-challenge writers, 4D stacks and the CLI."""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hnseg.errors import SettingsError
from hnseg.phantoms import cli as phantoms_cli
from hnseg.phantoms.ct_anatomy import (
    ALL_STRUCTURES, LATERAL_T2_MM, CtPhantomCase, make_ct_case, t_stage_from_extent,
)
from hnseg.phantoms.ct_layouts import (
    stack_masks, unstack, write_gc_case, write_npc_release, write_segrap_release,
)
from hnseg.phantoms.layouts import gc_image_name
from hnseg.tasks import get_task
from hnseg.tasks.npc import NPC_STRUCTURES, TStageOutput
from hnseg.tasks.segrap import SEGRAP_OARS

A = sitk.GetArrayFromImage

CONTAINED = {  # child → parent: the only overlaps allowed between SegRap OARs
    "BrainStem": "Brain", "TemporalLobe_L": "Brain", "TemporalLobe_R": "Brain",
    "Hippocampus_L": "Brain", "Hippocampus_R": "Brain", "Lens_L": "Eye_L", "Lens_R": "Eye_R",
    "TympanicCavity_L": "MiddleEar_L", "TympanicCavity_R": "MiddleEar_R",
    "Larynx_Glottic": "Larynx", "Larynx_Supraglot": "Larynx",
}


def _grid(img):
    return img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection()


def _masks(case: CtPhantomCase) -> dict[str, np.ndarray]:
    return {n: A(img).astype(bool) for n, img in case.structures.items()}


def _world_bbox(img: sitk.Image, mask: np.ndarray | None = None):
    """Physical (x, y, z) bounding box of the voxel centres (of ``mask`` if given)."""
    if mask is None:
        lo_i, hi_i = np.zeros(3), np.asarray(img.GetSize(), float) - 1
    else:
        idx = np.argwhere(mask)[:, ::-1]  # x, y, z
        lo_i, hi_i = idx.min(0).astype(float), idx.max(0).astype(float)
    pts = np.array([img.TransformContinuousIndexToPhysicalPoint(
        [float((lo_i, hi_i)[b[k]][k]) for k in range(3)]) for b in np.ndindex(2, 2, 2)])
    return pts.min(0), pts.max(0)


@pytest.fixture(scope="module")
def case() -> CtPhantomCase:
    return make_ct_case(0, "0000")


@pytest.fixture(scope="module")
def masks(case):
    return _masks(case)


# ---------------------------------------------------------------------------------------------
# determinism, types, grids


def test_same_seed_identical_different_seed_differs(case):
    again = make_ct_case(0, "0000")
    for attr in ("ct", "ct_contrast", "mri"):
        a, b = A(getattr(case, attr)), A(getattr(again, attr))
        assert a.dtype == b.dtype and np.array_equal(a, b), attr
        assert _grid(getattr(case, attr)) == _grid(getattr(again, attr))
    for n in ALL_STRUCTURES:
        assert np.array_equal(A(case.structures[n]), A(again.structures[n])), n
    assert json.dumps(case.info, sort_keys=True) == json.dumps(again.info, sort_keys=True)
    other = make_ct_case(1, "0000")
    assert not np.array_equal(A(other.structures["GTVp"]), A(case.structures["GTVp"]))
    assert other.ct.GetSpacing() != case.ct.GetSpacing()
    assert A(other.ct).shape == A(case.ct).shape and not np.array_equal(A(other.ct), A(case.ct))


def test_types_and_grids(case):
    assert case.ct.GetPixelID() == sitk.sitkInt16
    assert case.ct_contrast.GetPixelID() == sitk.sitkInt16
    assert _grid(case.ct) == _grid(case.ct_contrast)
    assert case.ct.GetSize() == (128, 128, 64)
    assert case.ct.GetSpacing() == pytest.approx((1.5, 1.5, 3.0), rel=0.051)
    assert case.ct.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    ext = np.asarray(case.ct.GetSize()) * np.asarray(case.ct.GetSpacing())
    assert np.all((ext > 180) & (ext < 205))  # ~192 mm cube
    assert set(case.structures) == set(ALL_STRUCTURES)
    for n, img in case.structures.items():
        assert img.GetPixelID() == sitk.sitkUInt8 and _grid(img) == _grid(case.ct), n
        assert set(np.unique(A(img)).tolist()) <= {0, 1}, n
    assert np.array_equal(A(case.structures["GTVn"]), A(case.structures["GTVnd"]))
    assert case.mri.GetPixelID() == sitk.sitkFloat32
    assert case.t_stage in ("T1", "T2", "T3", "T4")
    info = json.loads(json.dumps(case.info))  # JSON-able
    assert info["seed"] == 0 and info["t_stage"] == case.t_stage
    assert info["voxel_counts"]["GTVp"] == int(A(case.structures["GTVp"]).sum())
    ct = A(case.ct)
    assert ct.min() >= -1024 and ct.max() > 1000  # air and bone present


def test_hu_of_tissues_and_contrast_enhancement(case, masks):
    ct, ce = A(case.ct).astype(float), A(case.ct_contrast).astype(float)

    def mean(img, name):
        core = ndimage.binary_erosion(masks[name]) if masks[name].sum() > 200 else masks[name]
        return float(img[core].mean())

    assert mean(ct, "Brain") == pytest.approx(35, abs=10)
    assert mean(ct, "Mandible_L") > 700 and mean(ct, "Mandible_R") > 700
    assert mean(ct, "Thyroid") == pytest.approx(100, abs=20)
    assert mean(ct, "Eye_L") == pytest.approx(10, abs=15) and mean(ct, "Lens_L") > mean(ct, "Eye_L")
    assert mean(ct, "Trachea") < -300  # air lumen inside the wall
    assert float(ct[0, :4, :4].mean()) < -950  # air outside the body
    for name in ("Thyroid", "Parotid_L", "Parotid_R", "GTVp"):
        assert mean(ce, name) - mean(ct, name) > 20, name
    for name in ("Brain", "BrainStem", "Mandible_L", "Mandible_R", "SpinalCord"):
        assert abs(mean(ce, name) - mean(ct, name)) < 5, name
    # mild noise: Gaussian, σ ~ 10–20 HU in a homogeneous region (difference of the two phases)
    core = ndimage.binary_erosion(masks["Brain"], iterations=3)
    assert 8 < float(np.std(ce[core] - ct[core])) / np.sqrt(2) < 22


# ---------------------------------------------------------------------------------------------
# structures


def test_every_oar_present_and_sized(case, masks):
    for n in SEGRAP_OARS:
        assert masks[n].sum() >= 8, (n, int(masks[n].sum()))
    for n in ("Cochlea_L", "Lens_R", "Chiasm", "Pituitary", "IAC_L", "VestibulSemi_R"):
        assert masks[n].sum() >= 15, n
    assert masks["GTVp"].sum() > 100


def test_containments_and_no_other_overlaps(masks):
    for child, parent in CONTAINED.items():
        assert not (masks[child] & ~masks[parent]).any(), (child, parent)
    for parent in set(CONTAINED.values()):
        kids = np.zeros_like(masks[parent])
        for child, p in CONTAINED.items():
            if p == parent:
                kids |= masks[child]
        assert (masks[parent] & ~kids).any(), parent  # the parent has a body of its own
    boxes = {n: ndimage.find_objects(masks[n].astype(np.uint8))[0] for n in SEGRAP_OARS}
    for a, b in itertools.combinations(SEGRAP_OARS, 2):
        if CONTAINED.get(a) == b or CONTAINED.get(b) == a:
            continue
        sl = tuple(slice(max(p.start, q.start), min(p.stop, q.stop))
                   for p, q in zip(boxes[a], boxes[b]))
        if any(s.start >= s.stop for s in sl):
            continue
        assert not (masks[a][sl] & masks[b][sl]).any(), (a, b)
    # targets are drawn over unlabelled tissue only
    oars = np.zeros_like(masks["Brain"])
    for n in SEGRAP_OARS:
        oars |= masks[n]
    assert not (oars & (masks["GTVp"] | masks["GTVn"])).any()


def test_left_structures_have_larger_world_x(case, masks):
    """LPS: +x is the patient's left, so every *_L centroid lies at larger world x than *_R."""
    for n in SEGRAP_OARS:
        if not n.endswith("_L"):
            continue
        xs = []
        for side in (n, n[:-2] + "_R"):
            c = np.argwhere(masks[side]).mean(0)[::-1]  # x, y, z index
            xs.append(case.ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in c])[0])
        assert xs[0] > xs[1] + 10, (n, xs)


def test_anatomical_order_superior_to_inferior(case, masks):
    def zc(n):
        c = np.argwhere(masks[n]).mean(0)[::-1]
        return case.ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in c])[2]

    assert zc("Brain") > zc("Eye_L") > zc("OralCavity") > zc("Larynx") > zc("Thyroid")
    assert zc("Larynx_Supraglot") > zc("Larynx_Glottic")
    assert zc("BrainStem") > zc("SpinalCord")


def test_target_nesting_and_margins(case, masks):
    gtv = masks["GTVp"] | masks["GTVn"]
    c70, c63 = masks["CTV70"], masks["CTV63"]
    assert not (gtv & ~c70).any() and not (c70 & ~c63).any()  # exact voxel-wise nesting
    assert c70.sum() > gtv.sum() and c63.sum() > c70.sum()  # margins present
    sp = case.ct.GetSpacing()
    sp_zyx = (sp[2], sp[1], sp[0])
    d = ndimage.distance_transform_edt(~gtv, sampling=sp_zyx)
    diag = float(np.linalg.norm(sp))
    assert d[c70].max() <= 5.0 + diag
    assert d[c70].max() >= min(sp)  # the margin reaches beyond the GTV
    # clipped to the body and out of air
    ct = A(case.ct)
    assert ct[c70].min() > -700 and ct[c63].min() > -700
    # CTV63 holds the bilateral elective nodal region, on both sides of the midline
    x = np.argwhere(c63)[:, 2]
    mid = case.ct.TransformPhysicalPointToContinuousIndex((0.0, 0.0, 0.0))[0]
    assert (x > mid + 10).any() and (x < mid - 10).any()


def test_mri_own_grid_overlapping_the_tumour(case, masks):
    mri = case.mri
    assert mri.GetSize() != case.ct.GetSize()
    assert mri.GetSpacing() != case.ct.GetSpacing() and mri.GetOrigin() != case.ct.GetOrigin()
    assert mri.GetSpacing() == pytest.approx((0.9, 0.9, 4.0), rel=0.051)
    m = A(mri)
    assert np.isfinite(m).all() and m.min() >= 0 and 0.5 < float(np.percentile(m, 99)) < 1.5
    lo, hi = _world_bbox(mri)
    glo, ghi = _world_bbox(case.ct, masks["GTVp"])
    assert np.all(lo <= ghi) and np.all(glo <= hi)  # physical boxes overlap
    clo, chi = _world_bbox(case.ct)
    assert np.all(lo >= clo - 10) and np.all(hi <= chi + 10)  # same physical space

    def on_mri(name):  # mask resampled onto the MRI grid (co-registered: identity transform)
        r = sitk.Resample(case.structures[name], mri, sitk.Transform(), sitk.sitkNearestNeighbor)
        return ndimage.binary_erosion(A(r).astype(bool))

    tum, tongue = on_mri("GTVp"), on_mri("OralCavity")
    assert tum.sum() > 20 and tongue.sum() > 20
    assert float(m[tum].mean()) > 1.3 * float(m[tongue].mean())  # the tumour is visible


# ---------------------------------------------------------------------------------------------
# T stage


def test_t_stage_rule_thresholds():
    assert t_stage_from_extent(10.0, 0, 0, 0) == "T1"
    assert t_stage_from_extent(LATERAL_T2_MM + 0.1, 0, 0, 0) == "T2"
    assert t_stage_from_extent(LATERAL_T2_MM, 0, 0, 0) == "T1"
    assert t_stage_from_extent(10.0, 3, 0, 0) == "T3"
    assert t_stage_from_extent(30.0, 2, 0, 0) == "T2"  # a couple of voxels are not invasion
    assert t_stage_from_extent(10.0, 50, 3, 0) == "T4"
    assert t_stage_from_extent(10.0, 0, 0, 3) == "T4"


def test_t_stage_over_seeds_and_nodes():
    stages, with_nodes = [], 0
    for seed in range(12):
        c = make_ct_case(seed, f"{seed:04d}")
        stages.append(c.t_stage)
        assert t_stage_from_extent(**c.info["t_extent"]) == c.t_stage == c.info["t_stage"]
        gtvp = A(c.structures["GTVp"]).astype(bool)
        brain = A(c.structures["Brain"]).astype(bool)
        touches = (ndimage.binary_dilation(brain, np.ones((3, 3, 3), bool)) & gtvp).sum()
        if c.t_stage in ("T1", "T2", "T3"):
            assert touches == 0, seed  # only T4 reaches the brain
        gtvn = A(c.structures["GTVn"]).astype(bool)
        assert c.info["n_nodes"] in (0, 1, 2, 3)
        with_nodes += bool(gtvn.any())
        del c
    assert len(set(stages)) >= 3, stages
    assert with_nodes >= 6


# ---------------------------------------------------------------------------------------------
# 4D stacks and writers


def test_stack_masks_round_trip():
    ref = sitk.Image([7, 5, 4], sitk.sitkInt16)
    ref.SetSpacing((0.8, 0.9, 2.5))
    ref.SetOrigin((-3.0, 4.0, 10.0))
    ref.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    rng = np.random.default_rng(0)
    ms = [rng.random((4, 5, 7)) > 0.5 for _ in range(3)]
    img = stack_masks(ms, ref)
    assert img.GetDimension() == 4 and img.GetSize() == (7, 5, 4, 3)
    assert img.GetPixelID() == sitk.sitkUInt8
    assert img.GetSpacing() == (0.8, 0.9, 2.5, 1.0) and img.GetOrigin() == (-3.0, 4.0, 10.0, 0.0)
    assert np.array_equal(np.reshape(img.GetDirection(), (4, 4))[:3, :3],
                          np.reshape(ref.GetDirection(), (3, 3)))
    arr, ref3 = unstack(img)
    assert arr.shape == (3, 4, 5, 7) and arr.dtype == np.uint8
    assert np.array_equal(arr, np.stack(ms).astype(np.uint8))
    assert _grid(ref3) == _grid(ref)
    with pytest.raises(ValueError):
        stack_masks([np.zeros((4, 5, 6))], ref)
    with pytest.raises(ValueError):
        unstack(ref)


def test_segrap_and_npc_release_layouts(case, tmp_path):
    write_segrap_release([case], tmp_path / "segrap")
    d = tmp_path / "segrap" / "segrap_0000"
    names = {p.name for p in d.iterdir()}
    expected = {f"{n}.nii.gz" for n in SEGRAP_OARS + ("GTVp", "GTVnd")}
    assert len(expected) == 47
    assert names == expected | {"image.nii.gz", "image_contrast.nii.gz", "phantom_info.json"}
    img = sitk.ReadImage(str(d / "image.nii.gz"))
    assert img.GetPixelID() == sitk.sitkInt16 and np.array_equal(A(img), A(case.ct))
    assert np.array_equal(A(sitk.ReadImage(str(d / "image_contrast.nii.gz"))), A(case.ct_contrast))
    m = sitk.ReadImage(str(d / "GTVnd.nii.gz"))
    assert m.GetPixelID() == sitk.sitkUInt8 and np.array_equal(A(m), A(case.structures["GTVn"]))
    assert json.loads((d / "phantom_info.json").read_text())["seed"] == 0

    write_npc_release([case], tmp_path / "npc")
    d = tmp_path / "npc" / "npc_0000"
    names = {p.name for p in d.iterdir()}
    assert names == ({f"{n}.nii.gz" for n in NPC_STRUCTURES}
                     | {"ct.nii.gz", "mri.nii.gz", "t_stage.json", "phantom_info.json"})
    mri = sitk.ReadImage(str(d / "mri.nii.gz"))
    assert mri.GetPixelID() == sitk.sitkFloat32 and mri.GetSize() == case.mri.GetSize()
    assert mri.GetOrigin() == pytest.approx(case.mri.GetOrigin(), abs=1e-3)
    assert sitk.ReadImage(str(d / "ct.nii.gz")).GetPixelID() == sitk.sitkInt16
    assert json.loads((d / "t_stage.json").read_text()) == {"t_stage": case.t_stage}
    c63 = sitk.ReadImage(str(d / "CTV63.nii.gz"))
    assert np.array_equal(A(c63), A(case.structures["CTV63"]))


@pytest.mark.parametrize("task, n_out",
                         [("segrap-task1", 45), ("segrap-task2", 2), ("npc-targets", 19)])
def test_gc_case_and_ground_truth(case, tmp_path, task, n_out):
    profile = get_task(task)
    d = tmp_path / "case"
    write_gc_case(case, d, task, ground_truth_dir=tmp_path / "gt")
    entries = json.loads((d / "inputs.json").read_text())
    assert [e["socket"]["slug"] for e in entries] == [s.slug for s in profile.inputs]
    for e in entries:
        slug = e["socket"]["slug"]
        assert e["socket"]["relative_path"] == f"images/{slug}"
        assert e["image"]["name"] == gc_image_name(case.case_id, slug)
        files = list((d / "images" / slug).iterdir())
        assert [f.name for f in files] == [gc_image_name(case.case_id, slug)]
        img = sitk.ReadImage(str(files[0]))
        if "mri" in slug:
            assert img.GetPixelID() == sitk.sitkFloat32 and _grid(img) == _grid(case.mri)
        else:
            assert img.GetPixelID() == sitk.sitkInt16 and _grid(img) == _grid(case.ct)
    gt = sitk.ReadImage(str(tmp_path / "gt" / f"{case.case_id}.mha"))
    assert gt.GetDimension() == 4 and gt.GetPixelID() == sitk.sitkUInt8
    assert gt.GetSize() == case.ct.GetSize() + (n_out,)
    assert gt.GetSpacing() == pytest.approx(case.ct.GetSpacing() + (1.0,))
    assert gt.GetOrigin() == pytest.approx(case.ct.GetOrigin() + (0.0,))
    assert np.allclose(np.reshape(gt.GetDirection(), (4, 4)), np.eye(4))
    arr, ref = unstack(gt)
    structures = profile.outputs[0].structures
    assert len(structures) == n_out
    for k in (0, n_out - 1):
        assert np.array_equal(arr[k], A(case.structures[structures[k]])), structures[k]
    assert ref.GetSize() == case.ct.GetSize()
    t_json = tmp_path / "gt" / f"{case.case_id}_t-stage.json"
    if task == "npc-targets":
        out = TStageOutput.model_validate_json(t_json.read_text())
        assert out.t_stage == case.t_stage and out.probabilities[case.t_stage] == 1.0
    else:
        assert not t_json.exists()


# ---------------------------------------------------------------------------------------------
# CLI


def _parse(argv):
    return phantoms_cli.configure_parser(argparse.ArgumentParser()).parse_args(argv)


def test_cli_writes_ct_layouts(tmp_path):
    small = ["--size", "40,40,20"]
    args = _parse(["--out", str(tmp_path / "r"), "--n", "2", "--task", "segrap-task2",
                   "--seed", "3", *small])
    assert phantoms_cli.run(args) == 0
    d = tmp_path / "r" / "segrap_0001"
    assert len(list(d.glob("*.nii.gz"))) == 2 + 47
    ref = make_ct_case(3001, "0001", size=(40, 40, 20))  # seed = args.seed * 1000 + i
    assert np.array_equal(A(sitk.ReadImage(str(d / "image.nii.gz"))), A(ref.ct))

    args = _parse(["--out", str(tmp_path / "g"), "--n", "1", "--task", "npc-targets",
                   "--layout", "gc", *small])
    assert phantoms_cli.run(args) == 0
    entries = json.loads((tmp_path / "g" / "0000" / "inputs.json").read_text())
    assert [e["socket"]["slug"] for e in entries] == ["head-neck-ct", "head-neck-t1w-mri"]
    gt = sitk.ReadImage(str(tmp_path / "g" / "ground_truth" / "0000.mha"))
    ct_file = next((tmp_path / "g" / "0000" / "images" / "head-neck-ct").iterdir())
    assert gt.GetSize() == sitk.ReadImage(str(ct_file)).GetSize() + (19,)
    assert (tmp_path / "g" / "ground_truth" / "0000_t-stage.json").is_file()
    assert (tmp_path / "g" / "ground_truth" / "0000_phantom_info.json").is_file()

    args = _parse(["--out", str(tmp_path / "n"), "--n", "1", "--task", "npc-targets", *small])
    assert phantoms_cli.run(args) == 0
    assert (tmp_path / "n" / "npc_0000" / "t_stage.json").is_file()


def test_cli_defaults_per_task_and_real_masks_refused(tmp_path, monkeypatch):
    seen = []
    def recorder(kind):
        return lambda seed, cid, size, spacing: seen.append((kind, seed, cid, size, spacing))

    monkeypatch.setattr(phantoms_cli, "make_ct_case", recorder("ct"))
    monkeypatch.setattr(phantoms_cli, "_write_ct", lambda case, args: None)
    monkeypatch.setattr(phantoms_cli, "make_mri_case", recorder("mri"))
    monkeypatch.setattr(phantoms_cli, "_write", lambda case, args: None)
    assert phantoms_cli.run(_parse(["--out", str(tmp_path), "--n", "2", "--task", "segrap-task1",
                                    "--seed", "2"])) == 0
    assert phantoms_cli.run(_parse(["--out", str(tmp_path), "--n", "1"])) == 0
    assert seen == [("ct", 2000, "0000", (128, 128, 64), (1.5, 1.5, 3.0)),
                    ("ct", 2001, "0001", (128, 128, 64), (1.5, 1.5, 3.0)),
                    ("mri", 0, "1000", (112, 112, 48), (1.75, 1.75, 2.5))]
    with pytest.raises(SettingsError, match="--real-masks"):
        phantoms_cli.run(_parse(["--out", str(tmp_path), "--task", "npc-targets", "--real-masks",
                                 str(tmp_path)]))
