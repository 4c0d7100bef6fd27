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


def read_image(path: str | os.PathLike, what: str | None = None) -> sitk.Image:
    """Read one image; ``what`` (a socket slug or role) goes into error messages."""
    path = Path(path)
    label = f"{what} ({path})" if what else str(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no reader accepted it"
        raise UnreadableImageError(
            f"{label}: expected a readable image (.mha/.nii.gz/.nrrd), SimpleITK failed: {first}"
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
