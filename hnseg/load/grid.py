"""Voxel-grid comparison (size, spacing, origin, direction) with small tolerances."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict


class GridTolerance(BaseModel):
    model_config = ConfigDict(frozen=True)
    spacing_rel: float = 1e-4  # relative, per axis
    origin_mm: float = 1e-2  # absolute, mm (a hundredth of a millimetre, far below any voxel)
    direction: float = 1e-4  # absolute, per cosine


def describe_grid(image: sitk.Image) -> str:
    fmt = lambda v: "(" + ", ".join(f"{x:.6g}" for x in v) + ")"  # noqa: E731
    return (f"size {image.GetSize()}, spacing {fmt(image.GetSpacing())}, origin "
            f"{fmt(image.GetOrigin())}, direction {fmt(image.GetDirection())}")


def grid_differences(a: sitk.Image, b: sitk.Image, tol: GridTolerance = GridTolerance()) -> list[str]:
    """Names of the grid properties in which ``b`` differs from ``a`` (empty: same grid)."""
    diffs = []
    if a.GetSize() != b.GetSize():
        diffs.append("size")
    if a.GetDimension() != b.GetDimension():
        return diffs + ["dimension"]
    sa, sb = np.array(a.GetSpacing()), np.array(b.GetSpacing())
    if np.any(np.abs(sa - sb) > tol.spacing_rel * np.abs(sa)):
        diffs.append("spacing")
    if np.any(np.abs(np.array(a.GetOrigin()) - np.array(b.GetOrigin())) > tol.origin_mm):
        diffs.append("origin")
    if np.any(np.abs(np.array(a.GetDirection()) - np.array(b.GetDirection())) > tol.direction):
        diffs.append("direction")
    return diffs


def same_grid(a: sitk.Image, b: sitk.Image, tol: GridTolerance = GridTolerance()) -> bool:
    return not grid_differences(a, b, tol)


def world_box(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounding box (mm) of the image's voxel extent (voxel corners included)."""
    size = np.array(image.GetSize(), dtype=float)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    pts = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(c * size - 0.5)) for c in corners])
    return pts.min(axis=0), pts.max(axis=0)


def overlap_fraction(fixed: sitk.Image, moving: sitk.Image) -> float:
    """Share of ``moving``'s world box that lies inside ``fixed``'s world box (0 … 1)."""
    (a0, a1), (b0, b1) = world_box(fixed), world_box(moving)
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)
    return float(np.prod(inter) / np.prod(b1 - b0))
