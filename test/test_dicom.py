"""DICOM series input (issue 5, increment 2): the series reader (choice by modality, sorting along the
slice normal, gaps / uneven steps as errors), the phantom series writer, and ``hnseg batch`` with a
DICOM case beside a NIfTI case (hntsmrg-task1 demo weights, fold 0, no TTA, CPU)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.batch.discover import find_case_files, read_manifest
from hnseg.cli import main
from hnseg.errors import AmbiguousInputError, DicomSeriesError, MissingInputError
from hnseg.io.dicom import keeps_locale, read_dicom_series
from hnseg.io.read import read_image
from hnseg.phantoms import make_mri_case
from hnseg.phantoms.ct_anatomy import make_ct_case
from hnseg.phantoms.dicom import SOP_CLASS, write_dicom_series
from hnseg.tasks import get_task
from hnseg.tasks.hntsmrg import PRE_T2

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights" / "hntsmrg-task1"
TASK1 = get_task("hntsmrg-task1")
OUT_SLUG = "mri-head-neck-segmentation"


def _int16(img: sitk.Image) -> sitk.Image:
    return sitk.Cast(sitk.Round(img), sitk.sitkInt16)


@pytest.fixture(scope="module")
def volumes() -> dict[str, sitk.Image]:
    ct = make_ct_case(9400, "d", size=(48, 48, 24)).ct
    mr = _int16(make_mri_case(9401, "m", size=(40, 36, 16), spacing=(2.0, 2.0, 3.0)).pre_t2)
    assert ct.GetPixelID() == sitk.sitkInt16 and np.ptp(sitk.GetArrayViewFromImage(mr)) > 100
    return {"CT": ct, "MR": mr}


@keeps_locale  # the test's own GDCM calls must not leave the process in the "C" locale either
def _tags(file: Path, *keys: str) -> list[str]:
    r = sitk.ImageFileReader()
    r.SetFileName(str(file))
    r.ReadImageInformation()
    return [r.GetMetaData(k).strip() for k in keys]


def _corner(img: sitk.Image, index) -> np.ndarray:
    return np.array(img.TransformIndexToPhysicalPoint(tuple(int(i) for i in index)))


# -- round trip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.parametrize("orientation", ["axial", "coronal", "flipped-rows"])
def test_round_trip(volumes, tmp_path, modality, orientation):
    original = volumes[modality]
    info = write_dicom_series(original, tmp_path, modality, orientation=orientation, series_description="rt",
                              uids={"seed": f"{modality}-{orientation}"})
    again = write_dicom_series(original, tmp_path / "again", modality, orientation=orientation,
                               uids={"seed": f"{modality}-{orientation}"})
    assert again["series"] == info["series"] and again["sop_instance_uids"] == info["sop_instance_uids"]
    assert len(set(info["sop_instance_uids"])) == len(info["files"])
    assert _tags(info["files"][0], "0008|0016", "0008|0018", "0020|000e", "0008|0060") == [
        SOP_CLASS[modality], info["sop_instance_uids"][0], info["series"], modality]

    read = read_dicom_series(tmp_path, "test", modality)
    nx, ny, nz = original.GetSize()
    if orientation == "axial":
        assert read.GetSize() == original.GetSize()
        assert np.allclose(read.GetSpacing(), original.GetSpacing(), atol=1e-4)
        assert np.allclose(read.GetOrigin(), original.GetOrigin(), atol=1e-4)
        assert np.allclose(read.GetDirection(), original.GetDirection(), atol=1e-4)
        assert np.array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(original))
    elif orientation == "coronal":  # rows along x, columns along z, normal x × z = -y
        assert read.GetSize() == (nx, nz, ny)
        assert np.allclose(read.GetDirection(), (1, 0, 0, 0, 0, -1, 0, 1, 0), atol=1e-4)
        sx, sy, sz = original.GetSpacing()
        assert np.allclose(read.GetSpacing(), (sx, sz, sy), atol=1e-4)
        assert np.allclose(read.GetOrigin(), _corner(original, (0, ny - 1, 0)), atol=1e-4)
    else:  # rows along -x, normal -z: the slices are sorted against their instance numbers
        assert read.GetSize() == original.GetSize()
        assert np.allclose(read.GetDirection(), (-1, 0, 0, 0, 1, 0, 0, 0, -1), atol=1e-4)
        assert np.allclose(read.GetSpacing(), original.GetSpacing(), atol=1e-4)
        assert np.allclose(read.GetOrigin(), _corner(original, (nx - 1, 0, nz - 1)), atol=1e-4)
    # the same voxels at the same world positions
    back = sitk.Resample(read, original, sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))


def test_writer_refuses_float_images(volumes, tmp_path):
    with pytest.raises(ValueError, match="integer"):
        write_dicom_series(sitk.Cast(volumes["MR"], sitk.sitkFloat32), tmp_path, "MR")


# -- broken series ---------------------------------------------------------------------------------
@pytest.fixture
def ct_series(volumes, tmp_path) -> tuple[Path, dict]:
    folder = tmp_path / "ct"
    return folder, write_dicom_series(volumes["CT"], folder, "CT", uids={"seed": "broken"})


def test_missing_slice_is_an_error_naming_the_gap(volumes, ct_series):
    folder, info = ct_series
    info["files"][10].unlink()
    with pytest.raises(DicomSeriesError) as err:
        read_dicom_series(folder, "socket 'head-neck-ct'", "CT")
    message = str(err.value)
    assert str(folder) in message and info["series"] in message and "socket 'head-neck-ct'" in message
    m = re.search(r"missing slice between positions (\S+) and (\S+) mm \(step (\S+) mm", message)
    assert m, message
    z0, dz = volumes["CT"].GetOrigin()[2], volumes["CT"].GetSpacing()[2]
    assert float(m.group(1)) == pytest.approx(z0 + 9 * dz, abs=1e-3)
    assert float(m.group(2)) == pytest.approx(z0 + 11 * dz, abs=1e-3)
    assert float(m.group(3)) == pytest.approx(dz, abs=1e-3)


@keeps_locale
def _shift_slice(file: Path, dz: float) -> None:
    """Rewrite one slice with its ImagePositionPatient moved by ``dz`` mm along z."""
    r = sitk.ImageFileReader()
    r.SetFileName(str(file))
    img = r.Execute()
    s = img[:, :, 0]
    for k in img.GetMetaDataKeys():
        s.SetMetaData(k, img.GetMetaData(k))
    x, y, z = (float(v) for v in img.GetMetaData("0020|0032").split("\\"))
    s.SetMetaData("0020|0032", f"{x:.6g}\\{y:.6g}\\{z + dz:.6g}")
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    w.SetFileName(str(file))
    w.Execute(s)


def test_non_uniform_spacing_is_an_error(volumes, ct_series):
    folder, info = ct_series
    _shift_slice(info["files"][10], 1.0)
    with pytest.raises(DicomSeriesError, match=r"non-uniform spacing: 4\.138 mm between positions") as err:
        read_dicom_series(folder, "ct", "CT")
    assert info["series"] in str(err.value)


def test_duplicate_position_is_an_error(ct_series):
    folder, info = ct_series
    (thickness,) = _tags(info["files"][0], "0018|0050")
    _shift_slice(info["files"][10], -float(thickness))  # onto the position of slice 9
    with pytest.raises(DicomSeriesError, match="duplicate position"):
        read_dicom_series(folder, "ct", "CT")


def _merge(target: Path, *folders: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for f in folder.iterdir():
            shutil.move(str(f), target / f"{folder.name}_{f.name}")
        folder.rmdir()


def test_series_choice_by_modality_and_ambiguity(volumes, tmp_path):
    ct = write_dicom_series(volumes["CT"], tmp_path / "a", "CT", series_description="planning CT",
                            uids={"seed": "ct1"})
    mr = write_dicom_series(volumes["MR"], tmp_path / "b", "MR", series_description="T2 TSE", uids={"seed": "mr"})
    both = tmp_path / "both"
    _merge(both, tmp_path / "a", tmp_path / "b")
    got_mr = read_dicom_series(both, "mri", "MR")
    assert got_mr.GetSize() == volumes["MR"].GetSize()
    assert np.array_equal(sitk.GetArrayFromImage(got_mr), sitk.GetArrayFromImage(volumes["MR"]))
    assert read_dicom_series(both, "ct", "CT").GetSize() == volumes["CT"].GetSize()
    assert read_image(both, "ct", modality="CT").GetSize() == volumes["CT"].GetSize()
    # load_case passes each socket's modality: the MRI socket of a CT + MR folder gets the MR series
    from hnseg.load.case import load_case

    case = load_case(TASK1, {TASK1.inputs[0].slug: both})
    assert case.images[TASK1.inputs[0].slug].GetSize() == volumes["MR"].GetSize()
    with pytest.raises(AmbiguousInputError, match=f"{ct['series']}.*{mr['series']}|{mr['series']}.*{ct['series']}"):
        read_image(both, "anything")
    with pytest.raises(MissingInputError, match="expected a DICOM series of modality PT"):
        read_dicom_series(both, "pet", "PT")

    ct2 = write_dicom_series(volumes["CT"], tmp_path / "c", "CT", series_description="contrast CT",
                             uids={"seed": "ct2"})
    _merge(both, tmp_path / "c")
    with pytest.raises(AmbiguousInputError) as err:
        read_dicom_series(both, "ct", "CT")
    message = str(err.value)
    assert ct["series"] in message and ct2["series"] in message and mr["series"] not in message
    assert "'planning CT', 24 file(s)" in message and "'contrast CT', 24 file(s)" in message


def test_empty_or_non_dicom_folder_is_missing_input(tmp_path):
    (tmp_path / "notes.txt").write_text("no image here")
    with pytest.raises(MissingInputError, match=r"no DICOM series among its 1 file"):
        read_image(tmp_path, "socket 'head-neck-ct'")


# -- discovery -------------------------------------------------------------------------------------
def test_discovery_accepts_dicom_folders(tmp_path):
    assert TASK1.inputs[0].dicom_modality == "MR"
    segrap = get_task("segrap-task1")
    assert [s.dicom_modality for s in segrap.inputs] == ["CT", "CT"]
    case = tmp_path / "segrap_0001"
    for sub in ("image", "head-neck-contrast-enhanced-ct"):
        (case / sub).mkdir(parents=True)
        (case / sub / "1.dcm").touch()
    (case / "image_contrast").mkdir()  # an empty folder is no candidate
    assert find_case_files(segrap, case) == {"head-neck-ct": case / "image",
                                             "head-neck-contrast-enhanced-ct": case / "head-neck-contrast-enhanced-ct"}
    (case / "head-neck-ct.nii.gz").touch()
    with pytest.raises(AmbiguousInputError, match=r"image/, head-neck-ct\.nii\.gz|head-neck-ct\.nii\.gz, image/"):
        find_case_files(segrap, case)
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,pre-rt-t2w-head-neck\np1,segrap_0001/image\n")
    assert read_manifest(manifest, TASK1)[0].resolve(TASK1) == {PRE_T2: case / "image"}


# -- batch: a DICOM case beside the same volume as NIfTI, and a broken series ----------------------
@pytest.fixture(scope="module")
def batch_run(tmp_path_factory) -> tuple[int, Path, Path, sitk.Image]:
    root = tmp_path_factory.mktemp("dicom_batch")
    inp = root / "in"
    t2 = _int16(make_mri_case(5300, "d", size=(96, 96, 40), spacing=(2.0, 2.0, 3.0)).pre_t2)
    (inp / "nifti").mkdir(parents=True)
    sitk.WriteImage(t2, str(inp / "nifti" / f"{PRE_T2}.nii.gz"))
    write_dicom_series(t2, inp / "dicom" / PRE_T2, "MR", series_description="T2", uids={"seed": "batch"})
    # a CT series in the same folder: the MR socket must pick the MR one
    write_dicom_series(make_ct_case(9401, "c", size=(24, 24, 8)).ct, root / "ct", "CT", uids={"seed": "batch-ct"})
    _merge(inp / "dicom" / PRE_T2, root / "ct")
    gap = write_dicom_series(t2[:, :, :12], inp / "gap" / PRE_T2, "MR", uids={"seed": "gap"})
    gap["files"][5].unlink()
    out = root / "out"
    rc = main(["batch", "-i", str(inp), "-o", str(out), "--task", "hntsmrg-task1", "--weights", str(WEIGHTS),
               "--device", "cpu", "--tta", "off", "--folds", "0"])
    return rc, inp, out, t2


def test_batch_dicom_case_matches_the_nifti_case(batch_run):
    rc, inp, out, t2 = batch_run
    assert rc == 1  # the gap case failed
    with open(out / "batch_summary.csv", newline="") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert [rows[c]["status"] for c in ("dicom", "gap", "nifti")] == ["ok", "failed", "ok"]
    assert rows["gap"]["error_class"] == "DicomSeriesError"
    assert "missing slice between positions" in rows["gap"]["error_message"]
    assert rows["dicom"]["GTVp_cc"] == rows["nifti"]["GTVp_cc"]
    assert not (out / "gap").exists()

    series = read_dicom_series(inp / "dicom" / PRE_T2, "t2", "MR")
    masks = {}
    for case in ("dicom", "nifti"):
        for ext in (".nii.gz", ".mha"):
            img = sitk.ReadImage(str(out / case / f"{OUT_SLUG}{ext}"))
            assert img.GetSize() == series.GetSize() == t2.GetSize()
            assert np.allclose(img.GetSpacing(), series.GetSpacing(), atol=1e-5)
            assert np.allclose(img.GetOrigin(), series.GetOrigin(), atol=1e-4)
            assert np.allclose(img.GetDirection(), series.GetDirection(), atol=1e-6)
            masks[case, ext] = sitk.GetArrayFromImage(img)
    assert np.array_equal(masks["dicom", ".mha"], masks["nifti", ".mha"])
    assert np.array_equal(masks["dicom", ".nii.gz"], masks["dicom", ".mha"])
    assert (masks["dicom", ".mha"] > 0).sum() > 50
    report = json.loads((out / "dicom" / "report.json").read_text())
    assert report["inputs"] == {PRE_T2: str((inp / "dicom" / PRE_T2).resolve())}


def test_dicom_io_leaves_the_process_locale_alone(volumes, tmp_path):
    """GDCM sets the C locale to "C" and keeps it; reading / writing a series must not (it turned
    every later subprocess's UTF-8 output into a decode error)."""
    import locale

    before = locale.setlocale(locale.LC_ALL)
    write_dicom_series(volumes["CT"], tmp_path / "s", "CT")
    assert locale.setlocale(locale.LC_ALL) == before
    read_dicom_series(tmp_path / "s", "ct", "CT")
    assert locale.setlocale(locale.LC_ALL) == before
