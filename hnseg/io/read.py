"""Reading images with SimpleITK, turning every failure into a named error."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import ImageDimensionError, NonFiniteImageError, UnreadableImageError
from hnseg.io.header import ImageInfo, check_data_files, check_meta_inflation, nifti_scan, read_information
from hnseg.io.safe_paths import check_regular_file

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and name.endswith(IMAGE_SUFFIXES)


def _nifti_header(path: Path):
    """The NIfTI-1 or -2 header as stored (``nibabel.load`` would refuse a NaN scl_inter itself)."""
    import gzip

    import nibabel

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read(540)
    sizeof = int.from_bytes(raw[:4], "little")
    cls = nibabel.Nifti2Header if sizeof in (540, 540 << 24) else nibabel.Nifti1Header
    return cls.from_fileobj(io.BytesIO(raw + b"\0" * 4))


def check_nifti(path: Path, label: str) -> None:
    """What ITK does not check in a NIfTI file (``.nii`` / ``.nii.gz``):

    - truncation: ITK fills missing voxels with whatever is in memory;
    - NaN / Inf float voxels: ITK's reader silently turns them into 0;
    - non-finite header scaling (``scl_slope`` ±Inf, or a finite slope with a NaN/Inf ``scl_inter``):
      ITK ignores it where nibabel and the NIfTI standard would not;
    - a ``.nii.gz`` stream inflating beyond the header's size (a decompression bomb).
    One pass over the (decompressed) bytes."""
    try:
        header = _nifti_header(path)
        offset = int(header.get_data_offset())
        dtype = header.get_data_dtype()
        shape = tuple(int(d) for d in header.get_data_shape())
        need = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
        slope, inter = (float(header[k]) for k in ("scl_slope", "scl_inter"))
    except Exception as exc:  # nibabel's errors have no common base class
        raise UnreadableImageError(f"{label}: expected a NIfTI header, could not read one: {exc}") from None
    if np.isinf(slope) or (np.isfinite(slope) and slope != 0 and not np.isfinite(inter)):
        raise NonFiniteImageError(f"{label}: expected finite NIfTI intensity scaling, found scl_slope {slope}, "
                                  f"scl_inter {inter}")
    size, bad = nifti_scan(path, label, need, offset, dtype.newbyteorder("=") if dtype.kind == "f" else dtype)
    if size < need:
        raise UnreadableImageError(f"{label}: expected {need} bytes (header + voxels of shape "
                                   f"{shape}), the file holds {size}: truncated")
    if bad:
        raise NonFiniteImageError(f"{label}: expected finite voxel values, found {bad} NaN/Inf voxel(s) "
                                  "(SimpleITK would have read them as 0)")


def read_image(path: str | os.PathLike, what: str | None = None, modality: str | None = None,
               root: str | os.PathLike | None = None,
               header_check: Callable[[ImageInfo, str], None] | None = None) -> sitk.Image:
    """Read one image; ``what`` (a socket slug or role) goes into error messages. A folder is read as a
    DICOM series (``hnseg.io.dicom``): of ``modality`` ("CT", "MR") when given, else the folder's only
    series.

    Before any voxel is read: the path (and any data file its header names) must be a regular file inside
    ``root`` (default: no rule for the path itself, the header's folder for its data files);
    ``header_check`` sees the header's geometry and pixel type; a compressed stream may not inflate beyond
    the header's size."""
    path = Path(path)
    label = f"{what} ({path})" if what else str(path)
    check_regular_file(path, root, label, allow_folder=True)
    if path.is_dir():
        from hnseg.io.dicom import read_dicom_series

        # GDCM opens every file of the folder: no FIFO (blocks), device or link out of the input folder
        for entry in sorted(path.iterdir()):
            if not entry.name.startswith("."):
                check_regular_file(entry, root if root is not None else path, f"DICOM file {entry.name} of {label}",
                                   allow_folder=True)

        image = read_dicom_series(path, what or "", modality)
        if header_check is not None:
            header_check(ImageInfo.of(image), label)
        return image
    meta = check_data_files(path, label, root)
    if header_check is not None:
        header_check(ImageInfo.of(read_information(path, label)), label)
    if meta is not None:
        check_meta_inflation(path, meta, label, root)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti(path, label)
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
