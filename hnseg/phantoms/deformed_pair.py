"""A pre-RT / mid-RT T2w phantom pair related by a KNOWN smooth deformation (registration tests).

The mid-RT image and mask are an HNTS-MRG phantom's mid-RT scan (``make_mri_case``, both GTVs kept,
no growth lobe). The pre-RT image and mask are made FROM them, so the true correspondence is known
exactly: a pre-RT world point ``q`` shows the mid-RT world point

    G(q) = c + R (q - c) + t + u(q)

with ``c`` the mid-RT grid centre, ``R`` a rotation by ``rotation_deg`` about a random axis, ``t`` a
shift of length ``shift_mm`` in a random direction and ``u`` a smooth random displacement (sums of
plane waves, wavelengths 80–200 mm, rms ≈ ``deformation_rms_mm``; ``hnseg.phantoms.anatomy``'s
``Deformation``). The pre-RT grid has its own spacing (``pre_spacing``, default 0.9 × the mid-RT
spacing) and origin (shifted by up to 5 mm per axis) and covers the same extent, like a real pre-RT
scan. Image: linear interpolation of the mid-RT image through ``G``, times a random gain in
[0.8, 1.25] (mutual information does not care), plus Gaussian noise of 2 % of the 99th percentile,
clipped at 0. Mask: nearest neighbour through ``G``.

A perfect registration of pre-RT (moving) onto mid-RT (fixed) recovers ``G⁻¹``; the Dice of the
warped pre-RT mask with the mid-RT mask then is close to 1 (only nearest-neighbour losses), while
the pre-RT mask resampled with the identity transform (what "no registration" gives) scores lower.

Randomness: the phantom from ``seed``, the pair's transform, gain and noise from
``np.random.default_rng([seed, 1])``; the same arguments give bit-identical images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from hnseg.evaluation.metrics import dice
from hnseg.phantoms.anatomy import GTVN, GTVP, Deformation, Grid, make_mri_case

LABEL_NAMES = {GTVP: "GTVp", GTVN: "GTVn"}


@dataclass(frozen=True)
class DeformedPair:
    mid_image: sitk.Image  # float32, mid-RT grid
    mid_mask: sitk.Image  # uint8 (0, 1 GTVp, 2 GTVn), mid-RT grid
    pre_image: sitk.Image  # float32, pre-RT grid
    pre_mask: sitk.Image  # uint8, pre-RT grid
    info: dict


def _rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues' rotation matrix about the unit vector ``axis``."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1.0 - math.cos(angle_rad)) * (k @ k)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def make_deformed_pair(seed: int = 0, *, size=(96, 96, 32), spacing=(2.0, 2.0, 4.0),
                       pre_spacing=None, rotation_deg: float = 4.0, shift_mm: float = 6.0,
                       deformation_rms_mm: float = 3.0) -> DeformedPair:
    """The pair described in the module docstring. ``size``/``spacing``: the mid-RT grid (x, y, z)."""
    size = tuple(int(v) for v in size)
    spacing = tuple(float(v) for v in spacing)
    case = make_mri_case(seed, size=size, spacing=spacing, gtvp_vanished=False,
                         gtvn_vanished=False, beyond_box=False)
    mid_image = sitk.Cast(case.mid_t2, sitk.sitkFloat32)
    mid_mask = sitk.Cast(case.mid_mask, sitk.sitkUInt8)

    rng = np.random.default_rng([int(seed), 1])
    pre_sp = (tuple(float(v) for v in pre_spacing) if pre_spacing is not None
              else tuple(0.9 * s for s in spacing))
    mid_grid = Grid.from_image(mid_image)
    centre = mid_grid.world_of_index((np.asarray(size, float) - 1.0) / 2.0)
    extent = np.asarray(size, float) * np.asarray(spacing)
    pre_size = tuple(int(math.ceil(e / s)) for e, s in zip(extent, pre_sp))
    pre_origin = centre - (np.asarray(pre_size, float) - 1.0) / 2.0 * np.asarray(pre_sp)
    pre_origin = pre_origin + rng.uniform(-5.0, 5.0, size=3)
    pre_grid = Grid(pre_size, pre_sp, tuple(float(v) for v in pre_origin))

    axis = _unit(rng)
    rot = _rotation(axis, math.radians(rotation_deg))
    shift = _unit(rng) * float(shift_mm)
    u = Deformation.draw(rng, float(deformation_rms_mm))
    gain = float(rng.uniform(0.8, 1.25))

    # displacement d(q) = G(q) - q at the pre-RT voxel centres, numpy (z, y, x, 3), components x, y, z
    x, y, z = (np.broadcast_to(a, pre_grid.shape).astype(np.float64) for a in pre_grid.world())
    q = np.stack([x, y, z], axis=-1)
    del x, y, z
    ux, uy, uz = (f(*(q[..., k].astype(np.float32) for k in range(3))) for f in u.fields)
    g = centre + (q - centre) @ rot.T + shift + np.stack([ux, uy, uz], axis=-1)
    disp = g - q
    del q, g, ux, uy, uz

    field = sitk.GetImageFromArray(disp, isVector=True)
    field.SetSpacing(pre_grid.spacing)
    field.SetOrigin(pre_grid.origin)
    field.SetDirection(pre_grid.direction)
    tfm = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    ref = pre_grid.to_image(np.zeros(pre_grid.shape, np.uint8))
    pre_image = sitk.Resample(mid_image, ref, tfm, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    pre_mask = sitk.Resample(mid_mask, ref, tfm, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)

    arr = sitk.GetArrayFromImage(pre_image) * np.float32(gain)
    sigma = 0.02 * float(np.percentile(arr, 99))
    arr += rng.normal(0.0, sigma, size=arr.shape).astype(np.float32)
    np.clip(arr, 0.0, None, out=arr)
    noisy = sitk.GetImageFromArray(arr.astype(np.float32))
    noisy.CopyInformation(pre_image)

    mag = np.linalg.norm(disp, axis=-1)
    fg = sitk.GetArrayFromImage(pre_mask) > 0
    info = {
        "seed": int(seed), "phantom": case.info["case_id"],
        "mid_size": list(size), "mid_spacing": list(spacing),
        "mid_origin": [float(v) for v in mid_grid.origin],
        "pre_size": list(pre_size), "pre_spacing": list(pre_sp),
        "pre_origin": [float(v) for v in pre_grid.origin],
        "rotation_deg": float(rotation_deg), "rotation_axis": [round(float(v), 4) for v in axis],
        "shift_mm": [round(float(v), 3) for v in shift],
        "deformation_rms_mm": float(deformation_rms_mm), "gain": round(gain, 4),
        "noise_sigma": round(sigma, 3),
        "displacement_mm_mean": round(float(mag.mean()), 3),
        "displacement_mm_in_pre_mask_mean": round(float(mag[fg].mean()), 3) if fg.any() else None,
        "displacement_mm_in_pre_mask_max": round(float(mag[fg].max()), 3) if fg.any() else None,
        "mid_labels_voxels": {LABEL_NAMES[lb]: int((sitk.GetArrayViewFromImage(mid_mask) == lb).sum())
                              for lb in (GTVP, GTVN)},
    }
    return DeformedPair(mid_image=mid_image, mid_mask=mid_mask, pre_image=noisy,
                        pre_mask=pre_mask, info=info)


def resample_identity(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``mask`` resampled onto ``reference``'s grid with the identity transform, nearest neighbour
    (uint8): the "unregistered" baseline."""
    return sitk.Resample(mask, reference, sitk.Transform(3, sitk.sitkIdentity),
                         sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def dice_scores(truth: sitk.Image, test: sitk.Image) -> dict[str, float | None]:
    """Dice of ``test`` vs ``truth`` (same grid): foreground (any label) and per label (GTVp,
    GTVn; ``None`` when the label is absent from both)."""
    t = sitk.GetArrayViewFromImage(truth)
    p = sitk.GetArrayViewFromImage(test)
    if t.shape != p.shape:
        raise ValueError(f"dice_scores: arrays of shape {t.shape} and {p.shape}")
    out = {}
    for name, a, b in [("foreground", t > 0, p > 0)] + [(LABEL_NAMES[lb], t == lb, p == lb)
                                                         for lb in (GTVP, GTVN)]:
        out[name] = dice(float(np.count_nonzero(a & b)), float(np.count_nonzero(a)),
                         float(np.count_nonzero(b)))
    return out
