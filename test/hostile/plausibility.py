"""Class 7, silently wrong output: images a network would segment without complaint and give nonsense
for (PixelTypeError, ImageDimensionError, IntensityRangeError, NonFiniteImageError,
DirectionMatrixError). Each was accepted with exit code 0 before issue 13.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hostile.kit import (
    CT, CT_CONTRAST, PRE_T2, Setup, ct_pair, gc_case, inputs_json, mri, mri_array, on_grid, predict_args,
    socket_dir, task1_case,
)


def _predict(root: Path, in_dir: Path, *extra: str, **kw) -> Setup:
    out = root / "out"
    return Setup(predict_args(in_dir, out, *extra), out=out, **kw)


def _nifti(root: Path, values: np.ndarray, name: str = "x.nii.gz") -> Path:
    """A NIfTI written by nibabel (which writes any numpy dtype, complex and NaN included)."""
    import nibabel

    in_dir = root / "in"
    affine = np.diag([-2.5, -2.5, 4.0, 1.0])  # LPS 2.5×2.5×4 mm as NIfTI's RAS
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(values.transpose(2, 1, 0)), affine),
                 str(socket_dir(in_dir, PRE_T2) / name))
    inputs_json(in_dir, [PRE_T2])
    return in_dir


def complex_pixels(root: Path) -> Setup:
    a = mri_array()
    return _predict(root, _nifti(root, (a + 1j * a[::-1]).astype(np.complex64)), mention=("x.nii.gz",))


def rgb_pixels(root: Path) -> Setup:
    a = np.clip(mri_array() / 6.0, 0, 255).astype(np.uint8)
    channels = [on_grid(a, mri()), on_grid(a // 2, mri()), on_grid(255 - a, mri())]
    return _predict(root, task1_case(root / "in", sitk.Compose(channels)), mention=("3 component",))


def _extremes(dtype, value: float) -> np.ndarray:
    a = mri_array().astype(dtype)
    a[12, 30, 30] = value
    a[12, 31, 30] = -value
    return a


def huge_values_float64(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in", on_grid(_extremes(np.float64, 1e300), mri())),
                    mention=("x.mha",))


def huge_values_float32(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in", on_grid(_extremes(np.float32, 3e38), mri())),
                    mention=("x.mha",))


def _nonfinite(dtype, value: float) -> np.ndarray:
    a = mri_array().astype(dtype)
    a[12, 30, 30] = value
    return a


def nan_nifti_float32(root: Path) -> Setup:
    return _predict(root, _nifti(root, _nonfinite(np.float32, np.nan)), mention=("x.nii.gz",))


def nan_nifti_float64(root: Path) -> Setup:
    return _predict(root, _nifti(root, _nonfinite(np.float64, np.nan)), mention=("x.nii.gz",))


def inf_nifti_float32(root: Path) -> Setup:
    return _predict(root, _nifti(root, _nonfinite(np.float32, -np.inf)), mention=("x.nii.gz",))


def inf_nifti_float64(root: Path) -> Setup:
    return _predict(root, _nifti(root, _nonfinite(np.float64, np.inf)), mention=("x.nii.gz",))


SCL_OFFSET = 112  # nifti1 header: float32 scl_slope at byte 112, scl_inter at 116


def _scaling(root: Path, slope: float, inter: float) -> Setup:
    """An int16 .nii whose scl_slope / scl_inter fields are patched into the header (nibabel would not
    write them)."""
    in_dir = _nifti(root, np.round(mri_array()).astype(np.int16), name="x.nii")
    path = socket_dir(in_dir, PRE_T2) / "x.nii"
    data = bytearray(path.read_bytes())
    data[SCL_OFFSET:SCL_OFFSET + 8] = struct.pack("<ff", slope, inter)
    path.write_bytes(bytes(data))
    return _predict(root, in_dir, mention=("x.nii",))


def scl_slope_inf(root: Path) -> Setup:
    """Every voxel would scale to ±Inf (ITK ignores the field and reads unscaled values)."""
    return _scaling(root, float("inf"), 0.0)


def scl_inter_nan(root: Path) -> Setup:
    """slope 1, intercept NaN: every voxel would scale to NaN. (A NaN *slope* is no hazard: the NIfTI
    library and nibabel both read it as 'no scaling', so hnseg accepts it.)"""
    return _scaling(root, 1.0, float("nan"))


def _direction(root: Path, matrix: str) -> Setup:
    """The phantom as an .mha whose TransformMatrix is ``matrix`` (patched into the header text: ITK's
    writer normalizes nothing, but building such an image in SimpleITK is not the point)."""
    in_dir = task1_case(root / "in")
    path = socket_dir(in_dir, PRE_T2) / "x.mha"
    data = path.read_bytes()
    line = b"TransformMatrix = 1 0 0 0 1 0 0 0 1"
    assert line in data
    path.write_bytes(data.replace(line, f"TransformMatrix = {matrix}".encode(), 1))
    return _predict(root, in_dir, mention=("x.mha",))


def sheared_direction(root: Path) -> Setup:
    return _direction(root, "1 0 0 0.5 1 0 0 0 1")


def scaled_direction(root: Path) -> Setup:
    return _direction(root, "2 0 0 0 2 0 0 0 2")


def mri_in_ct_sockets(root: Path) -> Setup:
    """The phantom T2w MRI (0…1300, no air below 0) given as both SegRap CTs."""
    ct, _ = ct_pair()
    a = sitk.GetArrayFromImage(sitk.Resample(mri(), ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    a = np.where(a > 0, a, 40.0).astype(np.float32)  # no air: the field of view is all tissue
    img = on_grid(a, ct)
    in_dir = gc_case(root / "in", {CT: img, CT_CONTRAST: img})
    return _predict(root, in_dir, "--task", "segrap-task1", mention=(CT,))


def ct_in_mri_socket(root: Path) -> Setup:
    """The phantom CT (HU, air at −1024) given as the HNTS-MRG T2w MRI."""
    ct, _ = ct_pair()
    return _predict(root, task1_case(root / "in", sitk.Cast(ct, sitk.sitkFloat32)), mention=("x.mha",))


def constant_image(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in", on_grid(np.zeros_like(mri_array()), mri())),
                    mention=("x.mha",))
