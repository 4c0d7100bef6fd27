"""RTSTRUCT output: one ROI per structure, its contours drawn slice by slice on the source series.

Written with pydicom (no RTSTRUCT library: the common ones map contours to patient coordinates
assuming axial, non-flipped series; this module uses each slice's own ImagePositionPatient and
ImageOrientationPatient, so coronal or flipped series come out right — tested).

- Contours: per slice the 0.5 iso-lines of the mask (``skimage.measure.find_contours`` on the slice
  padded by one pixel, so every contour closes), collinear points dropped
  (``approximate_polygon``, tolerance 0.05 px), as CLOSED_PLANAR polygons through the voxel-centre
  boundary midpoints. A hole gives its own contour; the contours of one ROI on one slice combine by
  the even-odd rule (what ``rasterize`` does, and what Eclipse, RayStation and dicompyler do).
- Pixel (row r, column c) of slice k lies at IPP_k + c·Δcol·row_cosine + r·Δrow·column_cosine.
- References: each contour names its slice's SOPInstanceUID; the structure set lists every slice of
  the series under its FrameOfReferenceUID / StudyInstanceUID / SeriesInstanceUID.
- RT ROI Interpreted Type (ORGAN / GTV / CTV) from the structure's entry in ``hnseg.tasks.codes``,
  the table the SEG codes come from. An empty structure is an ROI without contours (listed, so ROI
  numbers follow the task's structure order).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from skimage.measure import approximate_polygon, find_contours

import hnseg
from hnseg.io.write import write_dicom_atomic
from hnseg.write.dicom_seg import check_masks
from hnseg.write.dicom_source import SourceSeries, display_colour, structure_codes

log = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired; customary)
PATIENT_STUDY_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                      "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")
SIMPLIFY_PX = 0.05


def slice_contours(mask2d: np.ndarray) -> list[np.ndarray]:
    """Closed polygons (n × 2, (row, column) pixel coordinates, first point not repeated) around the
    pixels of one boolean slice."""
    if not mask2d.any():
        return []
    padded = np.pad(mask2d.astype(np.float32), 1)
    polygons = []
    for c in find_contours(padded, 0.5):
        c = approximate_polygon(c - 1.0, tolerance=SIMPLIFY_PX)
        if len(c) > 1 and np.allclose(c[0], c[-1]):
            c = c[:-1]
        if len(c) >= 3:
            polygons.append(c)
    return polygons


def to_patient(points_rc: np.ndarray, frame) -> np.ndarray:
    """(row, column) pixel coordinates of one slice → patient coordinates (mm), shape n × 3."""
    ipp, row_cos, col_cos, d_row, d_col = frame
    return ipp + np.outer(points_rc[:, 1] * d_col, row_cos) + np.outer(points_rc[:, 0] * d_row, col_cos)


def _ds(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _image_ref(ds: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return ref


def _referenced_frame(source: SourceSeries) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = source.first.SeriesInstanceUID
    series.ContourImageSequence = Sequence([_image_ref(ds) for ds in source.datasets])
    study = Dataset()
    study.ReferencedSOPClassUID = STUDY_COMPONENT_SOP_CLASS
    study.ReferencedSOPInstanceUID = source.first.StudyInstanceUID
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = source.frame_of_reference_uid
    frame.RTReferencedStudySequence = Sequence([study])
    return frame


def _roi_contours(number: int, mask: np.ndarray, source: SourceSeries) -> tuple[Dataset, int]:
    item = Dataset()
    item.ReferencedROINumber = number
    item.ROIDisplayColor = list(display_colour(number))
    contours = []
    for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        frame = source.slice_frame(int(k))
        for polygon in slice_contours(mask[k]):
            c = Dataset()
            c.ContourImageSequence = Sequence([_image_ref(source.datasets[int(k)])])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(polygon)
            c.ContourData = [_ds(v) for v in to_patient(polygon, frame).ravel()]
            contours.append(c)
    if contours:
        item.ContourSequence = Sequence(contours)
    return item, len(contours)


def build_rtstruct(masks: list[tuple[str, np.ndarray]], source: SourceSeries, *,
                   series_description: str = "hnseg structures", series_number: int = 902) -> Dataset:
    check_masks(masks, source, "RTSTRUCT")
    codes = structure_codes([n for n, _ in masks], "RTSTRUCT")
    now = dt.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    for key in PATIENT_STUDY_KEYS:
        setattr(ds, key, source.first.get(key, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = 1
    ds.Manufacturer = "hnseg"
    ds.ManufacturerModelName = "hnseg"
    ds.SoftwareVersions = hnseg.__version__
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = source.frame_of_reference_uid
    ds.PositionReferenceIndicator = source.first.get("PositionReferenceIndicator", "")  # type 2
    ds.StructureSetLabel = "hnseg"
    ds.StructureSetName = "hnseg auto-segmentation"
    ds.StructureSetDate, ds.StructureSetTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.ReferencedFrameOfReferenceSequence = Sequence([_referenced_frame(source)])
    rois, contours, observations = [], [], []
    for number, ((name, mask), code) in enumerate(zip(masks, codes), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = source.frame_of_reference_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        rois.append(roi)
        item, n = _roi_contours(number, mask, source)
        contours.append(item)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.ROIObservationLabel = name
        obs.RTROIInterpretedType = code.rt_roi_type
        obs.ROIInterpreter = ""
        observations.append(obs)
        log.debug("RTSTRUCT ROI %d %s: %d contours", number, name, n)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def write_rtstruct(masks: list[tuple[str, np.ndarray]], source: SourceSeries, path: str | Path, **kwargs) -> str:
    """Write the (name, boolean (z, y, x) mask) pairs as one RTSTRUCT at ``path`` (atomically);
    returns its SOPInstanceUID."""
    ds = build_rtstruct(masks, source, **kwargs)
    write_dicom_atomic(ds, path)
    return str(ds.SOPInstanceUID)
