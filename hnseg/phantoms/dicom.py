"""Writing a volume as a DICOM CT / MR image series with SimpleITK (SimpleITK's "Dicom Series From
Array" example), for tests and demos of the DICOM input of ``hnseg batch``.

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

from hnseg.io.dicom import keeps_locale

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


@keeps_locale
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
    series_tags = [
        ("0008|0016", SOP_CLASS[modality]), ("0008|0060", modality), ("0008|103e", series_description),
        ("0008|0020", "20240101"), ("0008|0030", "120000"), ("0008|0021", "20240101"), ("0008|0031", "120000"),
        ("0010|0010", "PHANTOM^HNSEG"), ("0010|0020", ids["seed"][:64]),
        ("0020|000d", ids["study"]), ("0020|000e", ids["series"]), ("0020|0052", ids["frame_of_reference"]),
        ("0020|0011", "1"), ("0020|0037", "\\".join(_ds(v) for v in (*row, *col))),
        ("0028|0030", f"{_ds(sy)}\\{_ds(sx)}"), ("0018|0050", _ds(sz)),
    ]
    if modality == "CT":
        series_tags += [("0028|1052", "0"), ("0028|1053", "1"), ("0028|1054", "HU")]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    sops, files = [], []
    for k in range(vol.GetSize()[2]):
        sop = deterministic_uid(f"{ids['seed']}/{ids['series']}/{k}")
        position = np.array(vol.TransformIndexToPhysicalPoint((0, 0, k)))
        s = vol[:, :, k]
        for key, value in series_tags:
            s.SetMetaData(key, value)
        s.SetMetaData("0008|0018", sop)
        s.SetMetaData("0020|0013", str(k + 1))
        s.SetMetaData("0020|0032", "\\".join(_ds(v) for v in position))
        s.SetMetaData("0020|1041", _ds(float(position @ normal)))
        path = folder / f"slice_{k:04d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(s)
        sops.append(sop)
        files.append(path)
    log.debug("wrote %d %s slices (%s) to %s", len(files), modality, orientation, folder)
    return {"study": ids["study"], "series": ids["series"], "frame_of_reference": ids["frame_of_reference"],
            "sop_instance_uids": sops, "files": files}
