"""Reading images with SimpleITK, turning every failure into a named error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import ImageDimensionError, NonFiniteImageError, UnreadableImageError

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and name.endswith(IMAGE_SUFFIXES)


def check_nifti_complete(path: Path, label: str) -> None:
    """ITK reads a truncated NIfTI (``.nii`` or ``.nii.gz``) without complaint, filling the missing
    voxels with whatever is in memory; check that the file holds every voxel its header declares."""
    import gzip
    import zlib

    import nibabel

    try:
        header = nibabel.load(str(path)).header
        need = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    except Exception as exc:  # nibabel's errors have no common base class
        raise UnreadableImageError(f"{label}: expected a NIfTI header, could not read one: {exc}") from None
    if path.name.lower().endswith(".gz"):
        size = 0
        try:
            with gzip.open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    size += len(chunk)
        except (EOFError, OSError, zlib.error) as exc:
            raise UnreadableImageError(f"{label}: expected a complete gzip stream, found a damaged or "
                                       f"truncated one ({exc})") from None
    else:
        size = path.stat().st_size
    if size < need:
        raise UnreadableImageError(f"{label}: expected {need} bytes (header + voxels of shape "
                                   f"{tuple(header.get_data_shape())}), the file holds {size}: truncated")


def read_image(path: str | os.PathLike, what: str | None = None, modality: str | None = None) -> sitk.Image:
    """Read one image; ``what`` (a socket slug or role) goes into error messages. A folder is read as a
    DICOM series (``hnseg.io.dicom``): of ``modality`` ("CT", "MR") when given, else the folder's only
    series."""
    path = Path(path)
    if path.is_dir():
        from hnseg.io.dicom import read_dicom_series

        return read_dicom_series(path, what or "", modality)
    label = f"{what} ({path})" if what else str(path)
    if path.name.lower().endswith((".nii", ".nii.gz")) and path.is_file():
        check_nifti_complete(path, label)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        # ITK's last line is often a stale errno text ("No such file or directory" for a file that
        # exists): prefer its "Reason"/"Description" lines, and say when the file is there
        detail = next((ln for ln in lines if ln.startswith(("Description:", "Reason:"))), lines[-1] if lines
                      else "no reader accepted it")
        if path.is_file():
            detail += f" (the file exists, {path.stat().st_size} bytes: damaged, truncated or not an image)"
        raise UnreadableImageError(
            f"{label}: expected a readable image (.mha/.nii.gz/.nrrd), SimpleITK failed: {detail}"
        ) from None


def check_3d_scalar(image: sitk.Image, what: str) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageDimensionError(
            f"{what}: expected a 3D single-channel image, found {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel, size {image.GetSize()}"
        )


def check_finite(array: np.ndarray, what: str) -> None:
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        n = int(bad.sum())
        if n:
            raise NonFiniteImageError(
                f"{what}: expected finite voxel values, found {n} NaN/Inf voxel(s) "
                f"(first at z,y,x = {tuple(int(i) for i in np.argwhere(bad)[0])})"
            )
