"""Writing a volume as a DICOM CT / MR image series (pydicom, one single-frame file per slice, every
type 1 / 2 attribute of the CT / MR Image IOD present), for tests and demos of the DICOM input of
``hnseg batch``.

``orientation`` stores the same physical volume in three ways (world coordinates of every voxel
unchanged; ``sitk.PermuteAxes`` / ``sitk.Flip`` keep the physical geometry):

- ``axial``: slices along the image's third axis, as given;
- ``coronal``: slices along its second axis (the array's axes 1 and 2 swapped);
- ``flipped-rows``: axial slices with the row direction reversed (so the slice normal is reversed too
  and the instance numbers run against the position along the normal).

UIDs are deterministic (``2.25.<uuid5 of a seed>``), so a test writes the same files every time.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian


log = logging.getLogger(__name__)

SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
Orientation = Literal["axial", "coronal", "flipped-rows"]


def deterministic_uid(name: str) -> str:
    """A valid DICOM UID derived from ``name`` (``2.25.`` + the integer of its uuid5)."""
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_OID, name).int)


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (DICOM DS)."""
    for digits in range(15, 4, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.4g}"


def _stored_volume(image: sitk.Image, orientation: Orientation) -> sitk.Image:
    if orientation == "axial":
        return image
    if orientation == "coronal":
        return sitk.PermuteAxes(image, [0, 2, 1])
    if orientation == "flipped-rows":
        return sitk.Flip(image, [True, False, False])
    raise ValueError(f"orientation: expected 'axial', 'coronal' or 'flipped-rows', got {orientation!r}")


def _integer_pixels(image: sitk.Image) -> sitk.Image:
    """int16 / uint16 as they are; other integer types cast to int16 when their values fit."""
    if image.GetPixelID() in (sitk.sitkInt16, sitk.sitkUInt16):
        return image
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"write_dicom_series: expected an integer image (scale floats to int16 first), "
                         f"got {image.GetPixelIDTypeAsString()}")
    if array.size and (array.min() < -32768 or array.max() > 32767):
        raise ValueError(f"write_dicom_series: values {array.min()}…{array.max()} do not fit int16")
    return sitk.Cast(image, sitk.sitkInt16)


def _resolve_uids(uids: dict | None, modality: str, series_description: str) -> dict[str, str]:
    given = dict(uids or {})
    seed = str(given.pop("seed", f"hnseg/{modality}/{series_description}"))
    out = {k: str(given.get(k) or deterministic_uid(f"{seed}/{k}")) for k in ("study", "series", "frame_of_reference")}
    out["seed"] = seed
    return out


# The modules of the CT / MR Image IODs (PS3.3 A.3, A.4) beyond geometry and pixels, with values a
# scanner would write: dciodvfy finds no Error in the slices (test_dicom_conformance.py).
COMMON_TAGS = {
    "SpecificCharacterSet": "ISO_IR 192", "StudyDate": "20240101", "StudyTime": "120000", "SeriesDate": "20240101",
    "SeriesTime": "120000", "ContentDate": "20240101", "ContentTime": "120000", "AccessionNumber": "",
    "ReferringPhysicianName": "", "PatientName": "PHANTOM^HNSEG", "PatientBirthDate": "", "PatientSex": "O",
    "StudyID": "1", "SeriesNumber": 1, "PatientPosition": "HFS", "BodyPartExamined": "HEADNECK",
    "PositionReferenceIndicator": "", "Manufacturer": "hnseg phantom", "AcquisitionNumber": 1,
    "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2", "BitsAllocated": 16, "BitsStored": 16,
    "HighBit": 15,
}
MODALITY_TAGS = {
    "CT": {"KVP": "120", "RescaleIntercept": "0", "RescaleSlope": "1", "RescaleType": "HU"},
    "MR": {"ScanningSequence": "SE", "SequenceVariant": "SK", "ScanOptions": "", "MRAcquisitionType": "2D",
           "RepetitionTime": "4000", "EchoTime": "100", "EchoTrainLength": "16", "MagneticFieldStrength": "3"},
}


def image_type(modality: str, orientation: Orientation) -> list[str]:
    """ImageType (0008,0008): value 3 is AXIAL for CT slices (a coronal CT is a reformat), OTHER for MR."""
    if modality == "MR":
        return ["ORIGINAL", "PRIMARY", "OTHER"]
    return ["DERIVED", "SECONDARY", "REFORMATTED"] if orientation == "coronal" else ["ORIGINAL", "PRIMARY", "AXIAL"]


def write_dicom_series(image: sitk.Image, folder: Path, modality: Literal["CT", "MR"], *,
                       orientation: Orientation = "axial", series_description: str = "",
                       uids: dict | None = None) -> dict:
    """Write a 3D integer ``image`` as a DICOM series of ``modality`` into ``folder`` (one file per slice,
    ``slice_0000.dcm`` …). ``uids`` may give ``study``, ``series``, ``frame_of_reference`` and a ``seed``
    the others are derived from. Returns those UIDs, ``sop_instance_uids`` and ``files`` (slice order)."""
    if modality not in SOP_CLASS:
        raise ValueError(f"modality: expected 'CT' or 'MR', got {modality!r}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"write_dicom_series: expected a 3D scalar image, got size {image.GetSize()}")
    vol = _integer_pixels(_stored_volume(image, orientation))
    ids = _resolve_uids(uids, modality, series_description)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = np.array(vol.GetDirection()).reshape(3, 3)
    row, col = d[:, 0], d[:, 1]
    normal = np.cross(row, col)
    sx, sy, sz = vol.GetSpacing()
    pixels = sitk.GetArrayFromImage(vol)  # (slices, rows, columns)
    # pydicom, not SimpleITK's writer: GDCM writes SpacingBetweenSlices 1 for every 2D slice it writes.
    series = Dataset()
    for key, value in {**COMMON_TAGS, **MODALITY_TAGS[modality]}.items():
        setattr(series, key, value)
    series.SOPClassUID = SOP_CLASS[modality]
    series.Modality = modality
    series.SeriesDescription = series_description
    series.PatientID = ids["seed"][:64]
    series.StudyInstanceUID, series.SeriesInstanceUID = ids["study"], ids["series"]
    series.FrameOfReferenceUID = ids["frame_of_reference"]
    series.ImageType = image_type(modality, orientation)
    series.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
    series.PixelSpacing = [_ds(sy), _ds(sx)]  # (row spacing, column spacing)
    series.SliceThickness = _ds(sz)
    if modality == "MR":
        series.SpacingBetweenSlices = _ds(sz)  # MR Image module (type 3); the CT Image module has no such tag
    series.Rows, series.Columns = int(pixels.shape[1]), int(pixels.shape[2])
    series.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    sops, files = [], []
    for k in range(pixels.shape[0]):
        sop = deterministic_uid(f"{ids['seed']}/{ids['series']}/{k}")
        position = np.array(vol.TransformIndexToPhysicalPoint((0, 0, k)))
        ds = Dataset()
        ds.update(series)
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(position @ normal))
        ds.PixelData = np.ascontiguousarray(pixels[k]).astype(pixels.dtype.newbyteorder("<")).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"slice_{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sops.append(sop)
        files.append(path)
    log.debug("wrote %d %s slices (%s) to %s", len(files), modality, orientation, folder)
    return {"study": ids["study"], "series": ids["series"], "frame_of_reference": ids["frame_of_reference"],
            "sop_instance_uids": sops, "files": files}
