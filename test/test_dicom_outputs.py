"""Issue 5, DICOM outputs: a phantom written as a DICOM series (axial, coronal, flipped rows) →
``hnseg batch`` → DICOM SEG + RTSTRUCT beside the NIfTI mask. Each is read back and rasterised onto
the series: Dice ≥ 0.95 against the NIfTI mask of the same run (measured: identical voxels), and both
reference the source series' SOPInstanceUIDs and FrameOfReferenceUID. The batch run is conftest's
session fixture ``dicom_batch`` (shared with test_dicom_conformance.py).

The RTSTRUCT check rasterises the contours a second way, independent of hnseg's own slice-frame
arithmetic: through SimpleITK's physical-point → index mapping of the NIfTI output's grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from skimage.draw import polygon as fill_polygon

from hnseg.errors import OutputFormatError
from hnseg.io.dicom_masks import read_rtstruct_masks, read_seg_masks
from hnseg.phantoms.dicom import write_dicom_series
from hnseg.tasks.hntsmrg import PRE_T2
from hnseg.write.dicom_seg import write_dicom_seg
from hnseg.write.dicom_source import load_source_series
from hnseg.write.rtstruct import build_rtstruct, slice_contours

OUT_SLUG = "mri-head-neck-segmentation"
ORIENTATIONS = ("axial", "coronal", "flipped-rows")
STRUCTURES = {"GTVp": 1, "GTVn": 2}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum()) if a.any() or b.any() else 1.0


def _nifti_masks(out: Path, case: str) -> tuple[sitk.Image, dict[str, np.ndarray]]:
    img = sitk.ReadImage(str(out / case / f"{OUT_SLUG}.nii.gz"))
    labels = sitk.GetArrayFromImage(img)
    return img, {n: labels == v for n, v in STRUCTURES.items()}


def _rasterize_with_sitk(rt: pydicom.Dataset, grid: sitk.Image) -> dict[str, np.ndarray]:
    """Contours → masks through SimpleITK's physical point → continuous index (even-odd per slice)."""
    names = {int(r.ROINumber): str(r.ROIName) for r in rt.StructureSetROISequence}
    shape = sitk.GetArrayViewFromImage(grid).shape
    masks = {n: np.zeros(shape, bool) for n in names.values()}
    for item in rt.ROIContourSequence:
        for c in item.get("ContourSequence", []):
            pts = np.array([float(v) for v in c.ContourData]).reshape(-1, 3)
            idx = np.array([grid.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in pts])
            k = np.round(idx[:, 2])
            assert np.all(k == k[0]) and np.allclose(idx[:, 2], k[0], atol=1e-3), "contour off its slice plane"
            rr, cc = fill_polygon(idx[:, 1], idx[:, 0], shape[1:])
            layer = np.zeros(shape[1:], bool)
            layer[rr, cc] = True
            masks[names[int(item.ReferencedROINumber)]][int(k[0])] ^= layer
    return masks


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_seg_and_rtstruct_round_trip(dicom_batch, orientation):
    inp, out = dicom_batch
    grid, nifti = _nifti_masks(out, orientation)
    assert nifti["GTVp"].sum() > 50, "the round trip needs a non-trivial mask"
    source = load_source_series(inp / orientation / PRE_T2, PRE_T2, "MR")
    assert source.shape == sitk.GetArrayViewFromImage(grid).shape
    seg = read_seg_masks(out / orientation / "seg.dcm", source)
    rt_masks = read_rtstruct_masks(out / orientation / "rtstruct.dcm", source)
    rt = pydicom.dcmread(str(out / orientation / "rtstruct.dcm"))
    independent = _rasterize_with_sitk(rt, grid)
    for name, truth in nifti.items():
        for what, back in (("SEG", seg), ("RTSTRUCT", rt_masks), ("RTSTRUCT via SimpleITK", independent)):
            assert dice(back[name], truth) >= 0.95, f"{orientation} {what} {name}"
        assert np.array_equal(seg[name], truth)  # SEG is voxel-exact
    report = json.loads((out / orientation / "report.json").read_text())
    assert report["outputs"]["dicom-seg"] == ["seg.dcm"] and report["outputs"]["rtstruct"] == ["rtstruct.dcm"]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_seg_and_rtstruct_reference_the_source_series(dicom_batch, orientation):
    inp, out = dicom_batch
    grid, _ = _nifti_masks(out, orientation)
    source = load_source_series(inp / orientation / PRE_T2, PRE_T2, "MR")
    sops, for_uid = source.sop_instance_uids, source.frame_of_reference_uid
    first = source.first

    seg = hd.seg.segread(str(out / orientation / "seg.dcm"))
    assert seg.FrameOfReferenceUID == for_uid and seg.StudyInstanceUID == first.StudyInstanceUID
    assert seg.PatientID == first.PatientID
    ref_series = seg.ReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == first.SeriesInstanceUID
    assert [r.ReferencedSOPInstanceUID for r in ref_series.ReferencedInstanceSequence] == sops
    assert [str(d.SegmentLabel) for d in seg.SegmentSequence] == list(STRUCTURES)
    index_of = {uid: k for k, uid in enumerate(sops)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        ipp = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(ipp, grid.TransformIndexToPhysicalPoint((0, 0, index_of[uid])), atol=1e-3)

    rt = pydicom.dcmread(str(out / orientation / "rtstruct.dcm"))
    assert rt.Modality == "RTSTRUCT" and rt.FrameOfReferenceUID == for_uid
    assert rt.StudyInstanceUID == first.StudyInstanceUID and rt.PatientID == first.PatientID
    frame = rt.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == for_uid
    study = frame.RTReferencedStudySequence[0]
    assert study.ReferencedSOPInstanceUID == first.StudyInstanceUID
    series = study.RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == first.SeriesInstanceUID
    assert [c.ReferencedSOPInstanceUID for c in series.ContourImageSequence] == sops
    assert [r.ROIName for r in rt.StructureSetROISequence] == list(STRUCTURES)
    assert all(r.ReferencedFrameOfReferenceUID == for_uid for r in rt.StructureSetROISequence)
    assert [o.RTROIInterpretedType for o in rt.RTROIObservationsSequence] == ["GTV", "GTV"]
    n_contours = 0
    for item in rt.ROIContourSequence:
        for c in item.get("ContourSequence", []):
            assert c.ContourImageSequence[0].ReferencedSOPInstanceUID in index_of
            assert c.ContourGeometricType == "CLOSED_PLANAR"
            assert int(c.NumberOfContourPoints) * 3 == len(c.ContourData)
            n_contours += 1
    assert n_contours > 5


def test_holes_and_islands_survive_the_contours(tmp_path):
    """A ring (hole) with an island inside, an empty structure, a one-pixel structure: the RTSTRUCT
    rasterised back is voxel-exact, the empty ROI is listed without contours, SEG keeps its segment.
    (Names of coded structures: the writers refuse a structure without a standard code.)"""
    img = sitk.Image(32, 32, 6, sitk.sitkInt16)
    img.SetSpacing((1.0, 1.5, 2.0))
    write_dicom_series(img, tmp_path / "s", "CT", orientation="coronal", uids={"seed": "holes"})
    source = load_source_series(tmp_path / "s", "ct", "CT")
    zz, yy, xx = np.indices(source.shape)
    centre = np.array(source.shape) // 2
    r = np.hypot(yy - centre[1], xx - centre[2])
    ring = (r <= 10) & (r >= 5) | (r <= 2)
    ring[0] = False
    dot = np.zeros(source.shape, bool)
    dot[1, 3, 4] = True
    masks = [("Parotid_L", ring), ("Eye_R", np.zeros(source.shape, bool)), ("GTVp", dot)]
    assert len(slice_contours(ring[2])) == 3  # outer, hole, island
    rt = build_rtstruct(masks, source)
    rt.save_as(tmp_path / "rt.dcm", enforce_file_format=True)
    back = read_rtstruct_masks(tmp_path / "rt.dcm", source)
    assert np.array_equal(back["Parotid_L"], ring) and np.array_equal(back["GTVp"], dot) and not back["Eye_R"].any()
    assert "ContourSequence" not in rt.ROIContourSequence[1]
    write_dicom_seg(masks, source, tmp_path / "seg.dcm")
    seg = read_seg_masks(tmp_path / "seg.dcm", source)
    assert list(seg) == ["Parotid_L", "Eye_R", "GTVp"] and not seg["Eye_R"].any()
    assert np.array_equal(seg["Parotid_L"], ring) and np.array_equal(seg["GTVp"], dot)


def test_mask_off_the_series_grid_is_refused(tmp_path):
    img = sitk.Image(16, 16, 4, sitk.sitkInt16)
    write_dicom_series(img, tmp_path / "s", "CT", uids={"seed": "off-grid"})
    source = load_source_series(tmp_path / "s", "ct", "CT")
    with pytest.raises(OutputFormatError, match=r"expected the GTVp mask on the source series grid \(4, 16, 16\)"):
        write_dicom_seg([("GTVp", np.zeros((4, 16, 15), bool))], source, tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()
