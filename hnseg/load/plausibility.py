"""Is this image plausible for the task? Rules from the task profile (``hnseg.tasks.plausibility``).

- from the header, before any voxel is read: 3D single-component real-valued pixels, an orthonormal
  direction matrix, voxel count / extent / spacing within ``TaskProfile.image_limits``;
- from the voxels, before any compute: finite values, and values plausible for the socket's modality
  (``TaskProfile.intensity_rules``: CT shows air in Hounsfield units, MRI is non-negative up to noise,
  neither is constant). ``force`` turns an intensity refusal into a logged warning (batch mode copies
  warnings into the case's report.json).
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from hnseg.errors import (
    DirectionMatrixError, ImageDimensionError, IntensityRangeError, PixelTypeError, ResourceLimitError,
)
from hnseg.io.header import ImageInfo
from hnseg.tasks.plausibility import ImageLimits, IntensityRule

log = logging.getLogger(__name__)

_REAL_SCALARS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
    sitk.sitkUInt64, sitk.sitkInt64, sitk.sitkFloat32, sitk.sitkFloat64,
}
SAMPLE_VOXELS = 2_000_000  # percentiles from an even subsample: exact enough, bounded cost


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def check_header(info: ImageInfo, label: str, limits: ImageLimits) -> None:
    """Refuse, from the header alone, what no head-and-neck scan looks like."""
    if info.pixel_id in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise PixelTypeError(f"{label}: expected real-valued scalar voxels (integer or float), found "
                             f"{info.pixel_type}")
    if info.dimension != 3 or info.components != 1:
        raise ImageDimensionError(
            f"{label}: expected a 3D single-channel image, found {info.dimension}D with {info.components} "
            f"component(s) per voxel, size {info.size}")
    if info.pixel_id not in _REAL_SCALARS:
        raise PixelTypeError(f"{label}: expected real-valued scalar voxels (integer or float), found "
                             f"{info.pixel_type}")
    voxels = int(np.prod(info.size, dtype=object))
    extent = [n * s for n, s in zip(info.size, info.spacing)]
    problems = []
    if voxels > limits.max_voxels:
        problems.append(f"{voxels:,} voxels (size {info.size})")
    if any(not np.isfinite(s) or s < limits.min_spacing_mm or s > limits.max_spacing_mm for s in info.spacing):
        problems.append(f"spacing {_fmt(info.spacing)} mm")
    if any(e > limits.max_extent_mm for e in extent):
        problems.append(f"extent {_fmt(extent)} mm")
    if problems:
        raise ResourceLimitError(f"{label}: expected a head-and-neck scan ({limits.describe()}), found "
                                 + ", ".join(problems) + "; refused before reading its voxels")
    d = np.array(info.direction, dtype=float).reshape(3, 3)
    error = np.abs(d.T @ d - np.eye(3)).max() if np.all(np.isfinite(d)) else np.inf
    if error > limits.direction_tolerance:
        raise DirectionMatrixError(
            f"{label}: expected an orthonormal direction matrix (rotation, |DᵀD − I| ≤ "
            f"{limits.direction_tolerance:g}), found {_fmt(info.direction)} (deviation {error:.3g}): a sheared "
            "or scaled grid cannot be resampled faithfully")


def _sample(array: np.ndarray) -> np.ndarray:
    flat = array.reshape(-1)
    step = max(1, flat.size // SAMPLE_VOXELS)
    return flat[::step].astype(np.float64, copy=False)


def intensity_problem(array: np.ndarray, rule: IntensityRule) -> str | None:
    """What makes ``array`` implausible under ``rule`` (None: plausible). Values must be finite."""
    lo, hi = float(array.min()), float(array.max())
    if max(abs(lo), abs(hi)) > rule.max_abs:
        return f"values from {lo:.6g} to {hi:.6g}, beyond ±{rule.max_abs:g}"
    if rule.min_value is not None and lo < rule.min_value:
        return f"a minimum of {lo:.6g}, below {rule.min_value:g}"
    if lo == hi:
        return f"a constant image (every voxel {lo:.6g}): no anatomy to segment"
    sample = _sample(array)
    if rule.air_range is not None:
        air = float(np.mean((sample >= rule.air_range[0]) & (sample <= rule.air_range[1])))
        if air < rule.min_air_fraction:
            return (f"{air:.2%} of voxels in the air range {rule.air_range[0]:g}…{rule.air_range[1]:g} HU "
                    f"(values {lo:.6g}…{hi:.6g}): not a CT in Hounsfield units (an MRI, or stored values "
                    "without their rescale slope/intercept?)")
    if rule.max_negative_ratio is not None:
        p_lo, p_hi = np.percentile(sample, [0.5, 99.5])
        if p_lo < -rule.max_negative_ratio * max(p_hi, 0.0):
            return (f"0.5th/99.5th percentiles {p_lo:.6g}/{p_hi:.6g}: an MRI magnitude image is not this "
                    "negative (a CT, or a phase/difference image?)")
    return None


def check_intensities(array: np.ndarray, rule: IntensityRule | None, label: str, force: bool = False) -> None:
    if rule is None:
        return
    problem = intensity_problem(array, rule)
    if problem is None:
        return
    message = f"{label}: expected {rule.modality} values ({rule.describe()}), found {problem}"
    if not force:
        raise IntensityRangeError(message + "; --force segments it anyway (recorded as a warning)")
    log.warning("implausible intensities accepted by --force: %s", message)
