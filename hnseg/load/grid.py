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
