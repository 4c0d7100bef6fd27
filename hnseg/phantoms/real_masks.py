"""Real-mask mode: synthetic T2w images built around REAL HNTS-MRG masks.

The real mid-RT mask and the real registered pre-RT mask (one grid) are kept exactly (size, spacing,
origin, direction, voxels). The mid-RT image is rendered around the mid-RT GTVs, the registered
pre-RT image around the registered mask; body, airway, cord and muscles are fitted to the field of
view. Simplification (recorded in ``info``): there is no separate pre-RT grid, the pre-RT image and
mask ARE the registered ones.

Built for full-size real grids (768×768×116 = 68 M voxels): the anatomy is rendered on a coarse,
body-cropped grid and upsampled, lesions only inside their bounding boxes, noise slab by slab.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hnseg.errors import GridMismatchError, MaskLabelError
from hnseg.io.read import check_3d_scalar, read_image
from hnseg.phantoms.anatomy import (
    draw_scan_appearance,
    BEYOND_BOX_MIN_VOX, GTVN, GTVP, MID_SIGNAL_FACTOR, OEDEMA_LEVEL,
    TUMOUR_RANGE, Deformation, Grid, Lesion, MriPhantomCase, NeckAnatomy, SmoothField,
    beyond_box_extension, fg_bbox, label_volumes_ml, render_t2,
)
from hnseg.tasks.hntsmrg import MASK_VALUES

log = logging.getLogger(__name__)

SIMPLIFICATION = ("real-mask mode: the pre-RT image and mask are the registered pre-RT image and "
                  "mask on the mid-RT grid (no separate pre-RT grid)")


def _read_mask(path, what: str) -> tuple[sitk.Image, np.ndarray]:
    img = read_image(path, what)
    check_3d_scalar(img, what)
    arr = sitk.GetArrayFromImage(img)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise MaskLabelError(f"{what} ({path}): expected an integer label map, found "
                                 f"non-integer values ({arr.dtype})")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise MaskLabelError(f"{what} ({path}): expected labels {MASK_VALUES}, found values "
                                 f"in [{arr.min()}, {arr.max()}]")
        arr = arr.astype(np.uint8)
    counts = np.bincount(arr.ravel(), minlength=256)
    bad = [int(v) for v in np.flatnonzero(counts) if v not in MASK_VALUES]
    if bad:
        raise MaskLabelError(f"{what} ({path}): expected labels {MASK_VALUES}, found {bad}")
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out, arr


def _same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def _crop(bb, shape, pad: int) -> tuple[slice, slice, slice]:
    lo, hi = bb  # x, y, z inclusive
    return tuple(slice(max(0, int(lo[k]) - pad), min(shape[2 - k], int(hi[k]) + pad + 1))
                 for k in (2, 1, 0))


def _mask_lesion(mask: np.ndarray, labels, level: float, texture, name: str,
                 alpha: float = 1.0, exclude: np.ndarray | None = None) -> Lesion | None:
    """Lesion from the voxels of ``mask`` with a value in ``labels`` (smoothed indicator as the
    partial-volume weight), cropped to their bounding box."""
    sel = (mask > 0) if set(labels) >= {GTVP, GTVN} else (mask == labels[0])
    bb = fg_bbox(sel)
    if bb is None:
        return None
    sl = _crop(bb, mask.shape, pad=3)
    ind = sel[sl].astype(np.float32)
    if exclude is not None:
        ind[exclude[sl] > 0] = 0.0
        if not ind.any():
            return None
    w = ndimage.gaussian_filter(ind, sigma=(0.4, 0.6, 0.6), truncate=3.0)
    if alpha != 1.0:
        w *= np.float32(alpha)
    return Lesion(sl, w, level, texture, name)


def _count_components(mask: np.ndarray, label: int) -> int:
    sel = mask == label
    bb = fg_bbox(sel)
    if bb is None:
        return 0
    return int(ndimage.label(sel[_crop(bb, mask.shape, pad=1)])[1])


def _world_stats(grid: Grid, mask: np.ndarray, label: int | None):
    sel = (mask > 0) if label is None else (mask == label)
    bb = fg_bbox(sel)
    if bb is None:
        return None, None
    sl = _crop(bb, mask.shape, pad=0)
    com = np.array(ndimage.center_of_mass(sel[sl]))  # z, y, x within crop
    idx = com[::-1] + np.array([sl[2].start, sl[1].start, sl[0].start])
    corners = np.array([[(bb[0], bb[1])[b[k]][k] for k in range(3)] for b in np.ndindex(2, 2, 2)])
    return grid.world_of_index(idx), grid.world_of_index(corners)


def _fit_anatomy(rng, grid: Grid, mid: np.ndarray, reg: np.ndarray) -> NeckAnatomy:
    """Neck anatomy placed so the GTVp sits beside the airway and every GTV lies in the body."""
    c_p, _ = _world_stats(grid, mid, GTVP)
    if c_p is None:
        c_p, _ = _world_stats(grid, reg, GTVP)
    fg_corners = [c for m in (mid, reg) for c in [_world_stats(grid, m, None)[1]] if c is not None]
    fov_centre = grid.world_of_index((np.asarray(grid.size) - 1) / 2.0)
    anatomy = NeckAnatomy.draw(rng, fov_centre)
    if c_p is not None:
        centre = np.array([c_p[0], c_p[1] - anatomy.y_airway, c_p[2] - 5.0])
    elif fg_corners:
        pts = np.concatenate(fg_corners)
        centre = np.array([fov_centre[0], pts[:, 1].mean() + 10.0, pts[:, 2].mean()])
    else:
        centre = fov_centre
    anatomy.centre = centre.astype(float)
    if fg_corners:
        pts = np.concatenate(fg_corners)
        q = pts - anatomy.centre
        k = float(np.max(np.sqrt((q[:, 0] / anatomy.a0) ** 2 + (q[:, 1] / anatomy.b0) ** 2)))
        if k > 0.8:
            anatomy.scale = k / 0.8
    return anatomy


def make_mri_case_from_real_masks(mid_mask_path, registered_mask_path, seed: int,
                                  case_id: str | None = None) -> MriPhantomCase:
    """Synthetic mid-RT / registered pre-RT T2w images around a real mid-RT mask and a real
    registered pre-RT mask (which must share one grid); see the module docstring."""
    t0 = time.perf_counter()
    seed = int(seed)
    if case_id is None:
        case_id = os.path.basename(os.fspath(mid_mask_path)).split("_")[0]
    case_id = str(case_id)
    rng = np.random.default_rng(seed)
    mid_img, mid = _read_mask(mid_mask_path, "mid-RT mask")
    reg_img, reg = _read_mask(registered_mask_path, "registered pre-RT mask")
    resampled = False
    if not _same_grid(mid_img, reg_img):
        if not np.allclose(mid_img.GetSpacing(), reg_img.GetSpacing(), atol=1e-3):
            raise GridMismatchError(
                f"registered pre-RT mask ({registered_mask_path}): expected the grid of the mid-RT "
                f"mask ({mid_mask_path}): spacing {mid_img.GetSpacing()}, found "
                f"{reg_img.GetSpacing()}")
        log.warning("case %s: registered mask grid differs slightly; resampling (nearest) onto "
                    "the mid-RT grid", case_id)
        reg_img = sitk.Resample(reg_img, mid_img, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                sitk.sitkUInt8)
        reg = sitk.GetArrayFromImage(reg_img)
        resampled = True
    else:
        reg_img.CopyInformation(mid_img)
    grid = Grid.from_image(mid_img)

    anatomy = _fit_anatomy(rng, grid, mid, reg)
    lvl_p = rng.uniform(*TUMOUR_RANGE)
    lvl_n = float(np.clip(lvl_p + rng.uniform(-0.12, 0.12), *TUMOUR_RANGE))
    mid_fac = rng.uniform(*MID_SIGNAL_FACTOR)
    tex_p = SmoothField.draw(rng, 10, (3.0, 10.0), 0.10)
    tex_n = SmoothField.draw(rng, 10, (3.0, 10.0), 0.08)
    warp_mid = Deformation.draw(rng, rng.uniform(1.0, 2.0), wavelength=(60.0, 160.0))
    warp_reg = Deformation.draw(rng, rng.uniform(1.0, 2.0), wavelength=(60.0, 160.0))
    scans = {name: draw_scan_appearance(rng) for name in ("reg", "mid")}

    # registered pre-RT image around the registered mask
    lesions = [les for les in (_mask_lesion(reg, (GTVP,), lvl_p, tex_p, "GTVp"),
                               _mask_lesion(reg, (GTVN,), lvl_n, tex_n, "GTVn")) if les is not None]
    reg_t2, _ = render_t2(grid, anatomy, warp=warp_reg, lesions=lesions, rng=rng, **scans["reg"])
    del lesions
    reg_t2_img = grid.to_image(reg_t2)
    del reg_t2

    # mid-RT image: faint oedema where the registered GTVs were, then the real mid-RT GTVs
    lesions = [les for les in (
        _mask_lesion(reg, (GTVP, GTVN), OEDEMA_LEVEL, None, "oedema", alpha=0.6, exclude=mid),
        _mask_lesion(mid, (GTVP,), lvl_p * mid_fac, tex_p, "GTVp"),
        _mask_lesion(mid, (GTVN,), lvl_n * mid_fac, tex_n, "GTVn"),
    ) if les is not None]
    mid_t2, _ = render_t2(grid, anatomy, warp=warp_mid, lesions=lesions, rng=rng, **scans["mid"])
    del lesions
    mid_t2_img = grid.to_image(mid_t2)
    del mid_t2

    ext = beyond_box_extension(mid, reg)
    vol_mid, vol_reg = label_volumes_ml(mid, grid.spacing), label_volumes_ml(reg, grid.spacing)
    info = {
        "case_id": case_id, "mode": "real_masks", "seed": seed,
        "mid_mask_path": os.fspath(mid_mask_path),
        "registered_mask_path": os.fspath(registered_mask_path),
        "size": list(grid.size), "spacing": list(grid.spacing), "mid_origin": list(grid.origin),
        "pre_size": list(grid.size), "pre_origin": list(grid.origin),
        "pre_is_registered": True, "simplification": SIMPLIFICATION,
        "registered_mask_resampled": resampled,
        "gtvp_vanished": bool(vol_reg["GTVp"] > 0 and vol_mid["GTVp"] == 0),
        "gtvn_vanished": bool(vol_reg["GTVn"] > 0 and vol_mid["GTVn"] == 0),
        "beyond_box": bool(max(ext) >= BEYOND_BOX_MIN_VOX), "beyond_box_vox": ext,
        "n_nodes": _count_components(reg, GTVN),
        "tumour_muscle_ratio_pre": round(lvl_p, 4),
        "tumour_muscle_ratio_mid": round(lvl_p * mid_fac, 4),
        "anatomy_centre": [round(float(v), 3) for v in anatomy.centre],
        "anatomy_scale": round(float(anatomy.scale), 4),
        "snr_pre": round(scans["reg"]["snr"], 3), "snr_mid": round(scans["mid"]["snr"], 3),
        "scale_pre": round(scans["reg"]["scale"], 3), "scale_mid": round(scans["mid"]["scale"], 3),
        "volumes_ml": {"pre": vol_reg, "mid": vol_mid, "reg": vol_reg},
    }
    log.info("case %s: real-mask phantom %s in %.1f s", case_id, grid.size,
             time.perf_counter() - t0)
    return MriPhantomCase(case_id=case_id, pre_t2=reg_t2_img, pre_mask=reg_img, mid_t2=mid_t2_img,
                          mid_mask=mid_img, reg_t2=reg_t2_img, reg_mask=reg_img, info=info)
