"""Issue 13, point 7: the DICOM that hnseg writes (SEG, RTSTRUCT) and the phantom series it tests with
are checked by outside tools, not by hnseg's own readers:

- ``dciodvfy`` (dicom3tools) finds no Error in the SEG and RTSTRUCT of the three layouts of
  conftest's ``dicom_batch`` (axial, coronal, row-flipped MR series) nor in the phantom MR / CT slices;
- ``plastimatch convert`` rasterises every RTSTRUCT ROI back onto the series voxel-equal to the NIfTI
  mask of the same run; ``segimage2itkimage`` (dcmqi) does the same for every SEG segment;
- highdicom's ``get_volume()`` rebuilds the SEG with the measured slice step even where the source
  header's SpacingBetweenSlices is wrong (1 mm for a 3 mm step, as the old phantom writer wrote);
- every structure of every task has SNOMED CT category and type codes, equal (value and meaning) to
  pydicom's code dictionary wherever it holds them.

The tools: Debian ``dicom3tools`` and ``plastimatch``, PyPI ``dcmqi`` (requirements-test.txt). A missing
tool skips its tests, except under CI (env ``CI`` set), where it fails them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.sr.codedict import codes as pydicom_codes

from hnseg.errors import OutputFormatError
from hnseg.phantoms.dicom import write_dicom_series
from hnseg.tasks import TASKS
from hnseg.tasks.codes import structure_code
from hnseg.tasks.hntsmrg import PRE_T2
from hnseg.write.dicom_seg import write_dicom_seg
from hnseg.write.dicom_source import load_source_series
from hnseg.write.rtstruct import write_rtstruct

LAYOUTS = ("axial", "coronal", "flipped-rows")
OUT_SLUG = "mri-head-neck-segmentation"
STRUCTURES = {"GTVp": 1, "GTVn": 2}  # hntsmrg-task1's label map, written by hand


# -- tools -----------------------------------------------------------------------------------------
def tool(name: str) -> str:
    """The path of an outside tool; skipped when missing, failed under CI."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    how = {"dciodvfy": "apt-get install dicom3tools", "plastimatch": "apt-get install plastimatch",
           "segimage2itkimage": "pip install -r requirements-test.txt (dcmqi)"}[name]
    message = f"{name} not found on PATH or beside {sys.executable} ({how})"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}")
    pytest.skip(message)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120)


def dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    """(Error lines, Warning lines) dciodvfy prints for one file."""
    p = run(tool("dciodvfy"), str(path))
    lines = (p.stdout + p.stderr).splitlines()
    return [ln for ln in lines if "Error" in ln], [ln for ln in lines if ln.startswith("Warning")]


# -- reading the tools' outputs onto the NIfTI grid ------------------------------------------------
def nifti_masks(out: Path, case: str) -> tuple[sitk.Image, dict[str, np.ndarray]]:
    grid = sitk.ReadImage(str(out / case / f"{OUT_SLUG}.nii.gz"))
    labels = sitk.GetArrayFromImage(grid)
    return grid, {name: labels == value for name, value in STRUCTURES.items()}


def onto_grid(image: sitk.Image, grid: sitk.Image, what: str) -> np.ndarray:
    """``image`` (a tool's output, any axis order) as a boolean array on ``grid``. Every voxel centre
    of ``grid`` must be a voxel centre of ``image`` (checked on the origin and its three axis
    neighbours, within 1e-3 voxel; the mapping is affine), so nearest-neighbour resampling moves no
    voxel and hides no shift."""
    for corner in ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)):
        index = np.array(image.TransformPhysicalPointToContinuousIndex(grid.TransformIndexToPhysicalPoint(corner)))
        assert np.allclose(index, np.round(index), atol=1e-3), f"{what}: grid voxel {corner} at index {index}"
    back = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(back) > 0


def volume_image(array: np.ndarray, volume: hd.Volume) -> sitk.Image:
    """One (slices, rows, columns) channel of a highdicom Volume as a SimpleITK image, by its affine:
    SimpleITK's axes are (columns, rows, slices), so spacing and direction columns are reversed."""
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetOrigin(tuple(float(v) for v in volume.position))
    image.SetSpacing(tuple(float(v) for v in volume.spacing[::-1]))
    image.SetDirection(tuple(float(v) for v in np.asarray(volume.direction)[:, ::-1].ravel()))
    return image


def plastimatch_masks(rtstruct: Path, series: Path, grid: sitk.Image, work: Path) -> dict[str, np.ndarray]:
    """Every ROI of ``rtstruct`` rasterised by plastimatch onto ``series``; an ROI without contours
    writes no file (an empty mask)."""
    prefix = work / "plastimatch"
    p = run(tool("plastimatch"), "convert", "--input", str(rtstruct), "--referenced-ct", str(series),
            "--output-prefix", str(prefix), "--prefix-format", "nii.gz")
    assert p.returncode == 0, p.stdout + p.stderr
    shape = sitk.GetArrayViewFromImage(grid).shape
    return {name: onto_grid(sitk.ReadImage(str(prefix / f"{name}.nii.gz")), grid, f"plastimatch {name}")
            if (prefix / f"{name}.nii.gz").exists() else np.zeros(shape, bool) for name in STRUCTURES}


def dcmqi_masks(seg: Path, grid: sitk.Image, work: Path) -> dict[str, np.ndarray]:
    """Every segment of ``seg`` as dcmqi writes it (one file per segment, ``<n>.nii.gz`` for the n-th
    entry of meta.json, covering the frames present), on the NIfTI grid."""
    folder = work / "dcmqi"
    folder.mkdir()
    p = run(tool("segimage2itkimage"), "--inputDICOM", str(seg), "--outputDirectory", str(folder), "-t", "nii")
    assert p.returncode == 0, p.stdout + p.stderr
    meta = json.loads((folder / "meta.json").read_text())
    masks = {}
    for n, group in enumerate(meta["segmentAttributes"], start=1):
        (segment,) = group
        label = segment["SegmentLabel"]
        masks[label] = onto_grid(sitk.ReadImage(str(folder / f"{n}.nii.gz")), grid, f"dcmqi {label}")
    return masks


# -- dciodvfy --------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("output", ["seg.dcm", "rtstruct.dcm"])
def test_dciodvfy_finds_no_error_in_seg_and_rtstruct(dicom_batch, layout, output):
    _, out = dicom_batch
    errors, _ = dciodvfy_errors(out / layout / output)
    assert errors == []


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_dciodvfy_finds_no_error_in_phantom_series(tmp_path, layout, modality):
    image = sitk.Image(24, 20, 5, sitk.sitkInt16)
    image.SetSpacing((0.9, 1.1, 3.0))
    info = write_dicom_series(image, tmp_path, modality, orientation=layout, series_description="conformance",
                              uids={"seed": f"conformance-{modality}-{layout}"})
    errors, _ = dciodvfy_errors(info["files"][2])
    assert errors == []
    ds = pydicom.dcmread(info["files"][2])
    assert ds.SOPClassUID == {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}[modality]


# -- read back by outside tools, voxel-equal to the NIfTI ------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_plastimatch_rasterises_rtstruct_voxel_equal(dicom_batch, layout, tmp_path):
    inp, out = dicom_batch
    grid, truth = nifti_masks(out, layout)
    assert truth["GTVp"].sum() > 50, "the check needs a non-trivial mask"
    back = plastimatch_masks(out / layout / "rtstruct.dcm", inp / layout / PRE_T2, grid, tmp_path)
    for name, mask in truth.items():
        assert np.array_equal(back[name], mask), \
            f"{layout} {name}: {int((back[name] ^ mask).sum())} voxels differ (of {int(mask.sum())})"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dcmqi_reads_seg_voxel_equal(dicom_batch, layout, tmp_path):
    _, out = dicom_batch
    grid, truth = nifti_masks(out, layout)
    back = dcmqi_masks(out / layout / "seg.dcm", grid, tmp_path)
    assert list(back) == list(STRUCTURES)
    for name, mask in truth.items():
        assert np.array_equal(back[name], mask), f"{layout} {name}: {int((back[name] ^ mask).sum())} voxels differ"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_highdicom_volume_of_seg(dicom_batch, layout):
    """``get_volume()`` spans the slices that hold a segment, at the series' slice step, and puts
    the NIfTI's voxels where they are in space."""
    _, out = dicom_batch
    grid, truth = nifti_masks(out, layout)
    any_structure = np.logical_or.reduce(list(truth.values()))
    slices = np.flatnonzero(any_structure.any(axis=(1, 2)))
    volume = hd.seg.segread(str(out / layout / "seg.dcm")).get_volume()
    assert volume.spatial_shape[0] == slices[-1] - slices[0] + 1
    assert volume.spacing_between_slices == pytest.approx(grid.GetSpacing()[2], abs=1e-4)
    for i, name in enumerate(STRUCTURES):
        back = onto_grid(volume_image(volume.array[..., i], volume), grid, f"highdicom {name}")
        assert np.array_equal(back, truth[name]), name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_seg_slice_step_is_measured_not_copied_from_the_header(tmp_path, layout):
    """A source series whose SpacingBetweenSlices says 1 mm for a 3 mm step: the SEG says 3 mm and
    highdicom rebuilds one slice per source slice (it rebuilt 61 for 21 from a copied header)."""
    image = sitk.Image(20, 18, 21, sitk.sitkInt16)
    image.SetSpacing((1.0, 2.0, 3.0))
    info = write_dicom_series(image, tmp_path / "s", "MR", orientation=layout, uids={"seed": f"step-{layout}"})
    for f in info["files"]:
        ds = pydicom.dcmread(f)
        ds.SpacingBetweenSlices = "1"
        ds.save_as(f)
    source = load_source_series(tmp_path / "s", "t2", "MR")
    step = {"axial": 3.0, "coronal": 2.0, "flipped-rows": 3.0}[layout]  # coronal: slices along y
    mask = np.zeros(source.shape, bool)
    mask[:, 4:9, 5:12] = True  # every slice
    write_dicom_seg([("GTVp", mask)], source, tmp_path / "seg.dcm")
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SpacingBetweenSlices) == pytest.approx(step)
    volume = seg.get_volume()
    assert volume.spatial_shape[0] == source.shape[0] and volume.spacing_between_slices == pytest.approx(step)


# -- codes -----------------------------------------------------------------------------------------
def _codedict_meanings() -> dict[str, set[str]]:
    """SCT code value → every meaning pydicom's code dictionary gives it."""
    meanings: dict[str, set[str]] = {}
    for keyword in pydicom_codes.SCT.dir():
        code = getattr(pydicom_codes.SCT, keyword)
        meanings.setdefault(code.value, set()).add(code.meaning)
    return meanings


# Codes pydicom's dictionary lacks, and where they come from (hnseg/tasks/codes.py's docstring)
OUTSIDE_CODEDICT = {"80169004": "Cochlear structure", "4866005": "Constrictor muscle of pharynx structure",
                    "51837005": "Tympanic cavity structure"}


def test_every_structure_of_every_task_has_sct_codes():
    names = {n for task in TASKS.values() for n in task.structures}
    assert len(names) >= 50  # 45 SegRap OARs, GTVp, GTVn, GTVnd, CTV70, CTV63
    for task in TASKS.values():
        for name, code in task.structure_codes.items():
            assert code is not None, f"{task.name}: {name} has no code"
            assert code.category.scheme == "SCT" and code.type.scheme == "SCT", name
            target = name.startswith(("GTV", "CTV"))
            assert code.category.value == ("49755003" if target else "91723000"), name
            assert code.rt_roi_type == (name[:3] if target else "ORGAN"), name
            side = {"_L": "7771000", "_R": "24028007"}.get(name[-2:])
            assert (code.laterality.value if code.laterality else None) == side, name


def test_codes_match_pydicoms_code_dictionary():
    meanings = _codedict_meanings()
    seen_outside = {}
    for name in {n for task in TASKS.values() for n in task.structures}:
        code = structure_code(name)
        for c in (code.category, code.type, code.laterality):
            if c is None:
                continue
            if c.value in meanings:
                assert c.meaning in meanings[c.value], f"{name}: {c.value} {c.meaning!r}, pydicom: {meanings[c.value]}"
            else:
                seen_outside[c.value] = c.meaning
    assert seen_outside == OUTSIDE_CODEDICT


def test_some_codes_by_hand():
    """A few entries against DICOM PS3.16 / TG-263, typed here independently of the table."""
    expect = {"Parotid_L": ("45289007", "7771000"), "Eye_R": ("81745001", "24028007"),
              "BrainStem": ("119238007", None), "GTVnd": ("228791009", None), "CTV63": ("228792002", None),
              "Cochlea_L": ("80169004", "7771000"), "SpinalCord": ("2748008", None)}
    for name, (value, side) in expect.items():
        code = structure_code(name)
        assert (code.type.value, code.laterality.value if code.laterality else None) == (value, side), name


def test_seg_and_rtstruct_carry_the_codes(tmp_path):
    image = sitk.Image(16, 16, 4, sitk.sitkInt16)
    write_dicom_series(image, tmp_path / "s", "CT", uids={"seed": "codes"})
    source = load_source_series(tmp_path / "s", "ct", "CT")
    mask = np.zeros(source.shape, bool)
    mask[1:3, 4:9, 4:9] = True
    masks = [("Parotid_R", mask), ("CTV70", mask), ("Larynx", mask)]
    write_dicom_seg(masks, source, tmp_path / "seg.dcm")
    write_rtstruct(masks, source, tmp_path / "rt.dcm")
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    found = []
    for d in seg.SegmentSequence:
        t = d.SegmentedPropertyTypeCodeSequence[0]
        modifier = t.get("SegmentedPropertyTypeModifierCodeSequence")
        found.append((d.SegmentLabel, d.SegmentedPropertyCategoryCodeSequence[0].CodeValue, t.CodeValue,
                      t.CodingSchemeDesignator, modifier[0].CodeValue if modifier else None))
    assert found == [("Parotid_R", "91723000", "45289007", "SCT", "24028007"),
                     ("CTV70", "49755003", "228792002", "SCT", None),
                     ("Larynx", "91723000", "4596009", "SCT", None)]
    assert str(seg.ContentCreatorName) == "hnseg^"
    rt = pydicom.dcmread(tmp_path / "rt.dcm")
    assert [o.RTROIInterpretedType for o in rt.RTROIObservationsSequence] == ["ORGAN", "CTV", "ORGAN"]
    assert "PositionReferenceIndicator" in rt


def test_structure_without_a_code_is_refused(tmp_path):
    image = sitk.Image(16, 16, 4, sitk.sitkInt16)
    write_dicom_series(image, tmp_path / "s", "CT", uids={"seed": "uncoded"})
    source = load_source_series(tmp_path / "s", "ct", "CT")
    masks = [("GTVp", np.zeros(source.shape, bool)), ("Tumour?", np.zeros(source.shape, bool))]
    for writer, name in ((write_dicom_seg, "seg.dcm"), (write_rtstruct, "rt.dcm")):
        with pytest.raises(OutputFormatError, match=r"expected structures with a standard \(SNOMED CT\) code .*"
                                                    r"found \['Tumour\?'\] without one"):
            writer(masks, source, tmp_path / name)
        assert not (tmp_path / name).exists()
