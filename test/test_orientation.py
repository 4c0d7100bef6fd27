"""Canonical orientation: the same physical scan stored in any voxel-axis orientation gives the same
segmentation in physical space.

The oracle is SimpleITK's own ``DICOMOrient``: it produces the stored variants of a case, and it
brings every output back to LPS for the comparison. ``Reorientation`` is checked against it on all
48 axis-aligned orientations (plus obliques)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.cli import main
from hnseg.preprocess.orientation import CANONICAL, Reorientation, orientation_code
from hnseg.predict.weights import read_metadata

REPO = Path(__file__).resolve().parents[1]

# stored layouts of one physical scan: axial LPS (as the bundled cases), axial RAS (x and y
# reversed), coronal (slices along A-P, rows running inferior), sagittal (slices along L-R), and a
# sagittal with reversed slices
LAYOUTS = ("LPS", "RAS", "LIP", "PIR", "ASR")


def _axis_direction(perm, signs) -> np.ndarray:
    d = np.zeros((3, 3))
    for i, (p, s) in enumerate(zip(perm, signs)):
        d[p, i] = s
    return d


def _image(direction: np.ndarray, rng) -> sitk.Image:
    img = sitk.GetImageFromArray(rng.integers(-50, 300, size=(5, 6, 7)).astype(np.int16))
    img.SetSpacing((0.5, 0.8, 2.5))
    img.SetOrigin((12.5, -40.0, 7.25))
    img.SetDirection(direction.ravel().tolist())
    return img


def test_reorientation_equals_simpleitk_dicomorient_and_inverts():
    rng = np.random.default_rng(0)
    tilt = 0.08  # an oblique acquisition: the residual rotation stays in the direction matrix
    rot = np.array([[np.cos(tilt), -np.sin(tilt), 0], [np.sin(tilt), np.cos(tilt), 0], [0, 0, 1]])
    checked = set()
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            for direction in (_axis_direction(perm, signs), rot @ _axis_direction(perm, signs)):
                img = _image(direction, rng)
                checked.add(orientation_code(img))
                for target in (CANONICAL, "RAS", "PIR"):
                    want = sitk.DICOMOrient(img, target)
                    r = Reorientation.of(img, target)
                    got = r.image(img)
                    assert got.GetSize() == want.GetSize()
                    np.testing.assert_allclose(got.GetSpacing(), want.GetSpacing(), rtol=0, atol=1e-12)
                    np.testing.assert_allclose(got.GetOrigin(), want.GetOrigin(), rtol=0, atol=1e-9)
                    np.testing.assert_allclose(got.GetDirection(), want.GetDirection(), rtol=0, atol=1e-12)
                    canonical = sitk.GetArrayFromImage(want)
                    assert np.array_equal(sitk.GetArrayFromImage(got), canonical)
                    assert np.array_equal(r.to_stored(canonical), sitk.GetArrayFromImage(img))
                    # leading (channel / structure) axes ride along
                    stack = np.stack([canonical, canonical + 1])
                    assert np.array_equal(r.to_stored(stack)[1], sitk.GetArrayFromImage(img) + 1)
    assert len(checked) == 48


def test_identity_reorientation_is_free_and_wrong_shapes_are_refused():
    img = _image(np.eye(3), np.random.default_rng(1))
    r = Reorientation.of(img)
    arr = sitk.GetArrayViewFromImage(img)
    assert r.identity and r.image(img) is img and r.to_stored(arr) is arr
    sag = sitk.DICOMOrient(img, "PIR")
    with pytest.raises(ValueError, match="does not fit"):
        Reorientation.of(sag).to_stored(sitk.GetArrayFromImage(sag))  # a stored array given as canonical
    with pytest.raises(ValueError, match="orientation"):
        Reorientation.of(img, "LPL")


def _stored_case(case: Path, out: Path, code: str) -> Path:
    """The grand-challenge case folder ``case`` with every image stored in orientation ``code``."""
    shutil.copytree(case, out)
    for f in sorted(out.glob("images/*/*.mha")):
        img = sitk.ReadImage(str(f))
        sitk.WriteImage(sitk.DICOMOrient(img, code), str(f), useCompression=True)
    return out


def _physical(path: Path) -> sitk.Image:
    return sitk.DICOMOrient(sitk.ReadImage(str(path)), CANONICAL)


def _assert_same_in_physical_space(got: sitk.Image, want: sitk.Image, what: str) -> None:
    assert got.GetSize() == want.GetSize(), what
    np.testing.assert_allclose(got.GetOrigin(), want.GetOrigin(), atol=1e-4, err_msg=what)
    np.testing.assert_allclose(got.GetSpacing(), want.GetSpacing(), atol=1e-9, err_msg=what)
    np.testing.assert_allclose(got.GetDirection(), want.GetDirection(), atol=1e-9, err_msg=what)
    a, b = sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(want)
    assert np.count_nonzero(b) > 0, f"{what}: the reference segmentation is empty"
    assert np.array_equal(a, b), f"{what}: {np.count_nonzero(a != b)} voxels differ"


@pytest.mark.parametrize("case, task, tta, output", [
    # task 2: a box prior with anisotropic margins (x, y, z) and left-right-only mirroring, both
    # defined on the canonical axes
    ("hntsmrg-task2-5100", "hntsmrg-task2", "lr", "images/mri-head-neck-segmentation/output.mha"),
    # NPC: MRI resampled onto the CT, lateralised OARs, a 4D stack and the T stage
    ("npc-targets-9502", "npc-targets", "default", "images/npc-target-segmentation/output.mha"),
])
def test_same_scan_in_every_storage_orientation_gives_one_segmentation(tmp_path, case, task, tta, output):
    src = REPO / "test" / "input" / case
    assert {orientation_code(sitk.ReadImage(str(f))) for f in src.glob("images/*/*.mha")} == {"LPS"}
    assert read_metadata(REPO / "weights" / task).orientation == CANONICAL
    results = {}
    for code in LAYOUTS:
        folder = _stored_case(src, tmp_path / f"in-{code}", code)
        stored = sitk.ReadImage(str(next(folder.glob("images/*/*.mha"))))
        assert orientation_code(stored) == code
        out = tmp_path / f"out-{code}"
        rc = main(["predict", "--input", str(folder), "--output", str(out), "--task", task, "--device", "cpu",
                   "--folds", "0", "--tta", tta])
        assert rc == 0
        written = sitk.ReadImage(str(out / output))
        # on the exact grid of the stored reference input
        ref = sitk.ReadImage(str(next(folder.glob(f"images/{_reference_slug(task)}/*.mha"))))
        d = written.GetDimension()
        assert written.GetOrigin()[:3] == ref.GetOrigin() and written.GetSize()[:3] == ref.GetSize()
        assert np.array_equal(np.reshape(written.GetDirection(), (d, d))[:3, :3], np.reshape(ref.GetDirection(), (3, 3)))
        results[code] = out
    want = _physical_stack(results["LPS"] / output)
    for code in LAYOUTS[1:]:
        got = _physical_stack(results[code] / output)
        assert len(got) == len(want)
        for k, (g, w) in enumerate(zip(got, want)):
            _assert_same_in_physical_space(g, w, f"{case} stored {code}, volume {k}")
        if task == "npc-targets":
            stage = [json.loads((results[c] / "t-stage.json").read_text()) for c in ("LPS", code)]
            assert stage[0] == stage[1]


def _reference_slug(task: str) -> str:
    from hnseg.tasks import get_task

    return get_task(task).reference_socket


def _physical_stack(path: Path) -> list[sitk.Image]:
    """A 3D label map, or each 3D volume of a 4D stack, in LPS."""
    img = sitk.ReadImage(str(path))
    if img.GetDimension() == 3:
        return [sitk.DICOMOrient(img, CANONICAL)]
    vols = []
    for t in range(img.GetSize()[3]):
        size = list(img.GetSize())
        size[3] = 0
        vols.append(sitk.DICOMOrient(sitk.Extract(img, size, [0, 0, 0, t]), CANONICAL))
    return vols


def test_dicom_coronal_series_gives_the_axial_twins_segmentation(dicom_batch):
    """``hnseg batch`` over the same phantom T2 as an axial and as a coronal DICOM series (and one
    with reversed rows): the NIfTI masks agree voxel for voxel in physical space."""
    _, out = dicom_batch
    name = "mri-head-neck-segmentation.nii.gz"
    want = _physical(out / "axial" / name)
    for layout in ("coronal", "flipped-rows"):
        stored = sitk.ReadImage(str(out / layout / name))
        assert orientation_code(stored) != "LPS"
        _assert_same_in_physical_space(_physical(out / layout / name), want, f"DICOM {layout}")
    report = json.loads((out / "coronal" / "report.json").read_text())
    assert report["settings"]["network_orientation"] == CANONICAL


def test_training_conversion_writes_every_sample_in_the_canonical_orientation(tmp_path):
    """A release sample stored sagittally is converted to the orientation inference presents: the
    written image and label equal SimpleITK's DICOMOrient of the stored files, and the record (from
    which export fills the weights' ``orientation``) names it."""
    from hnseg.phantoms import make_mri_case
    from hnseg.tasks import get_task
    from hnseg.tasks.hntsmrg import PRE_T2
    from hnseg.training.convert import convert
    from hnseg.training.releases.sample import Sample

    c = make_mri_case(5400, "o", size=(48, 40, 20), spacing=(2.0, 2.0, 3.0))
    samples = []
    for code in ("LPS", "PIR"):
        img, lab = tmp_path / f"{code}_t2.nii.gz", tmp_path / f"{code}_mask.nii.gz"
        sitk.WriteImage(sitk.DICOMOrient(c.pre_t2, code), str(img))
        sitk.WriteImage(sitk.DICOMOrient(c.pre_mask, code), str(lab))
        samples.append(Sample(name=f"s{code}", patient=f"p{code}", inputs={PRE_T2: img}, label=lab))
    folder = convert(get_task("hntsmrg-task1"), samples, tmp_path / "raw", 901, prior=None, n_folds=2)
    want_img = sitk.GetArrayFromImage(sitk.DICOMOrient(c.pre_t2, CANONICAL)).astype(np.float32)
    want_lab = sitk.GetArrayFromImage(sitk.DICOMOrient(c.pre_mask, CANONICAL))
    for s in samples:
        img = sitk.ReadImage(str(folder / "imagesTr" / f"{s.name}_0000.nii.gz"))
        lab = sitk.ReadImage(str(folder / "labelsTr" / f"{s.name}.nii.gz"))
        assert orientation_code(img) == orientation_code(lab) == CANONICAL
        assert np.array_equal(sitk.GetArrayFromImage(img), want_img)
        assert np.array_equal(sitk.GetArrayFromImage(lab), want_lab)
    assert json.loads((folder / "hnseg_conversion.json").read_text())["orientation"] == CANONICAL


def _weights_with_orientation(tmp_path: Path, value) -> Path:
    folder = tmp_path / "w"
    shutil.copytree(REPO / "weights" / "hntsmrg-task1", folder)
    meta = json.loads((folder / "hnseg_weights.json").read_text())
    if value is None:
        meta.pop("orientation")
    else:
        meta["orientation"] = value
    (folder / "hnseg_weights.json").write_text(json.dumps(meta, indent=2))
    return folder


def test_weights_orientation_must_be_a_code(tmp_path):
    from hnseg.errors import WeightsError
    from hnseg.predict.weights import load_weights

    with pytest.raises(WeightsError, match="orientation code such as 'LPS', found 'LPL'"):
        load_weights(_weights_with_orientation(tmp_path, "LPL"))


def test_weights_without_an_orientation_are_run_canonical_with_a_warning(tmp_path, caplog):
    from hnseg.pipeline import Segmenter
    from hnseg.settings import PredictSettings
    from hnseg.tasks import get_task

    seg = Segmenter(get_task("hntsmrg-task1"), _weights_with_orientation(tmp_path, None),
                    PredictSettings(device="cpu", folds=(0,), tta="off"))
    assert seg.orientation == CANONICAL
    assert "do not record the orientation they were trained in; assuming LPS" in caplog.text


def test_prior_cli_margins_follow_the_patient_axes_in_any_storage(tmp_path):
    """``hnseg prior --margin 6,3,1`` builds the same prior in physical space for an axial and a
    sagittal copy of the task-2 case (as inference does): x, y, z are the canonical axes."""
    from hnseg.interfaces.grand_challenge import discover_inputs
    from hnseg.tasks.hntsmrg import MID_T2, REG_MASK

    files = discover_inputs(REPO / "test" / "input" / "hntsmrg-task2-5100")
    priors = {}
    for code in ("LPS", "PIR"):
        img, msk = tmp_path / f"{code}_img.mha", tmp_path / f"{code}_msk.mha"
        sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(files[MID_T2])), code), str(img))
        sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(files[REG_MASK])), code), str(msk))
        out = tmp_path / f"{code}_prior.nii.gz"
        assert main(["prior", "--image", str(img), "--mask", str(msk), "--margin", "6,3,1", "--out", str(out)]) == 0
        priors[code] = _physical(out)
        assert orientation_code(sitk.ReadImage(str(out))) == code
    a, b = (sitk.GetArrayFromImage(priors[c]) for c in ("LPS", "PIR"))
    assert a.max() > 0 and np.array_equal(a, b)
