"""Prior channel for HNTS-MRG 2024 task 2: a map built from the registered pre-RT mask.

Task 2 segments the mid-RT T2w image with the pre-RT mask, registered onto the mid-RT grid, as a
hint. The network gets a second input channel computed here from the mid-RT image and that mask.
The SAME function serves training (``rng`` given: random margins) and inference (``rng is None``:
the fixed margins of the spec), so the two can never drift apart.

Two kinds (``PriorSpec.kind``):

``box`` -- the seed method's gradient map, reproducing its published code (not its paper prose).
    For label 1 (GTVp) then label 2 (GTVn), per face-connected component of the mask: the component's
    bounding box enlarged by a margin in VOXELS per axis (``margin`` at inference, drawn from
    ``train_margin_range`` per component per axis in training), clipped to the image. The box end is
    computed as ``last + m`` with ``last`` the inclusive last index, used as an exclusive slice end,
    so the effective margin above the component is ``m - 1`` (as in the seed's code). Inside the box:
    min-max normalised image crop -> Gaussian gradient magnitude (sigma in voxels) -> min-max
    normalised (constant -> all ones) -> x2 -> clip at 1. Later boxes overwrite earlier ones (GTVn
    over GTVp); 0 outside every box.

``band`` -- a box-free prior. The seed's named failure is a tumour growing beyond its box, and its
    margins are in voxels: with 0.5 mm in-plane and 2 mm slices a 4-7 voxel margin is 8-14 mm along
    z but only 2-3.5 mm in plane. The band follows the mask's SHAPE with a margin in millimetres:
    per component (same order), the region of voxels within ``band_mm`` physical distance of the
    component (the component itself included), from a Euclidean distance transform with the voxel
    spacing as sampling, on a crop = component bounding box grown by ``ceil(band_mm / spacing)``
    voxels per axis (clipped). The gradient is computed on the crop; the image and gradient min/max
    used for normalisation are taken over the region only; then x2 and clip at 1 as for ``box``.
    0 outside every region; later regions overwrite earlier ones. Training draws ``band_mm`` per
    component from ``uniform(*train_band_mm_range)``.

``none`` -- no prior channel; asking for a map with it is a ``ValueError``.

Arrays here are in SimpleITK/numpy order (z, y, x); ``margin`` in the spec is in image index order
(x, y, z), like everything a user types.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from scipy import ndimage

#: Labels in the order their components are painted (later overwrites earlier): GTVp, then GTVn.
PRIOR_LABELS: tuple[int, ...] = (1, 2)


class PriorSpec(BaseModel):
    """How the prior channel is built; stored in the weights metadata as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["none", "box", "band"] = "box"
    sigma_vox: float = 1.0
    # box (the seed's gradient map)
    margin: tuple[int, int, int] = (5, 5, 5)  # inference margin, voxels, image index order (x, y, z)
    train_margin_range: tuple[int, int] = (4, 7)  # inclusive; drawn per component per axis in training
    # band (box-free)
    band_mm: float = 10.0  # inference band width in mm
    train_band_mm_range: tuple[float, float] = (6.0, 14.0)

    @field_validator("sigma_vox")
    @classmethod
    def _sigma_positive(cls, v: float) -> float:
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"sigma_vox must be a finite number > 0, found {v}")
        return v

    @field_validator("margin")
    @classmethod
    def _margin_nonneg(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(m < 0 for m in v):
            raise ValueError(f"margin must be >= 0 voxels per axis, found {v}")
        return v

    @field_validator("band_mm")
    @classmethod
    def _band_positive(cls, v: float) -> float:
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"band_mm must be a finite number >= 0, found {v}")
        return v

    @model_validator(mode="after")
    def _ranges_ordered(self) -> "PriorSpec":
        lo, hi = self.train_margin_range
        if lo < 0 or hi < lo:
            raise ValueError(f"train_margin_range must be 0 <= lo <= hi, found {self.train_margin_range}")
        blo, bhi = self.train_band_mm_range
        if not (math.isfinite(blo) and math.isfinite(bhi)) or blo < 0 or bhi < blo:
            raise ValueError(
                f"train_band_mm_range must be 0 <= lo <= hi (finite), found {self.train_band_mm_range}"
            )
        return self


def _minmax(a: np.ndarray, where: np.ndarray | None = None, constant: float = 0.0) -> np.ndarray:
    """Min-max normalise ``a`` with statistics over ``where`` (all if None); constant -> ``constant``."""
    vals = a if where is None else a[where]
    lo = float(vals.min())
    hi = float(vals.max())
    if hi > lo:
        return (a - lo) / (hi - lo)
    return np.full_like(a, constant)


def _gradient_map(crop: np.ndarray, sigma: float, region: np.ndarray | None = None) -> np.ndarray:
    """Seed recipe on one crop: normalise, gradient magnitude, normalise (constant -> 1), x2, clip."""
    img = _minmax(crop.astype(np.float64, copy=False), region, constant=0.0)
    grad = ndimage.gaussian_gradient_magnitude(img, sigma=sigma)
    grad = _minmax(grad, region, constant=1.0)
    return np.clip(grad * 2.0, 0.0, 1.0)


def _components(mask: np.ndarray):
    """Yield (label, component boolean array, bbox slices) in label order, face connectivity."""
    for label in PRIOR_LABELS:
        lab, n = ndimage.label(mask == label)
        if n == 0:
            continue
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            yield label, lab, i, sl


def compute_prior_array(
    image: np.ndarray,
    mask: np.ndarray,
    spacing_zyx: Sequence[float],
    spec: PriorSpec,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Prior map (float32, z,y,x) of ``image`` from ``mask``; ``rng`` given => training draws."""
    if spec.kind == "none":
        raise ValueError("PriorSpec.kind is 'none': there is no prior channel to compute")
    assert image.ndim == 3, f"image must be 3D (z,y,x), got shape {image.shape}"
    assert image.shape == mask.shape, f"image {image.shape} and mask {mask.shape} differ in shape"
    spacing = tuple(float(s) for s in spacing_zyx)
    assert len(spacing) == 3 and all(s > 0 for s in spacing), f"bad spacing {spacing_zyx}"

    shape = image.shape
    out = np.zeros(shape, dtype=np.float32)
    for _label, lab, i, sl in _components(mask):
        if spec.kind == "box":
            if rng is None:
                m_xyz = spec.margin
            else:
                lo, hi = spec.train_margin_range
                m_xyz = tuple(int(v) for v in rng.integers(lo, hi + 1, size=3))  # x, y, z
            m_zyx = m_xyz[::-1]
            # sl[a].stop - 1 is the INCLUSIVE last index; like the seed's code it becomes
            # ``last + m`` as an EXCLUSIVE end, so the box reaches only m - 1 voxels above.
            box = tuple(
                slice(max(0, s.start - m), min(n, (s.stop - 1) + m))
                for s, m, n in zip(sl, m_zyx, shape)
            )
            out[box] = _gradient_map(image[box], spec.sigma_vox).astype(np.float32)
        else:  # band
            band = spec.band_mm if rng is None else float(rng.uniform(*spec.train_band_mm_range))
            grow = [int(math.ceil(band / sp)) for sp in spacing]
            crop = tuple(
                slice(max(0, s.start - g), min(n, s.stop + g)) for s, g, n in zip(sl, grow, shape)
            )
            comp = lab[crop] == i
            dist = ndimage.distance_transform_edt(~comp, sampling=spacing)
            region = dist <= band
            vals = _gradient_map(image[crop], spec.sigma_vox, region=region)
            sub = out[crop]
            sub[region] = vals[region]
    return out


def compute_prior(
    image: sitk.Image,
    mask: sitk.Image,
    spec: PriorSpec,
    rng: np.random.Generator | None = None,
) -> sitk.Image:
    """Prior map as a float32 image on ``image``'s exact grid (mask assumed on the same grid)."""
    if spec.kind == "none":
        raise ValueError("PriorSpec.kind is 'none': there is no prior channel to compute")
    arr = sitk.GetArrayViewFromImage(image)
    msk = sitk.GetArrayViewFromImage(mask)
    spacing_zyx = tuple(image.GetSpacing())[::-1]
    prior = compute_prior_array(arr, msk, spacing_zyx, spec, rng)
    out = sitk.GetImageFromArray(prior)
    out.CopyInformation(image)
    return out
