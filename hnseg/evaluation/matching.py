"""Pairing ground-truth and prediction files by case id, and bringing them onto one voxel grid.

Layouts accepted for a folder (GT and prediction folders are detected independently):

* flat: image files directly in the folder; the case id is the text before the first ``_`` of the
  file name, or the stem (name without the image suffix) when there is no ``_``:
  ``81_midRT_mask.nii.gz`` ↔ ``81_preRT_mask_registered.nii.gz`` → ``81``.
* case sub-folders (grand-challenge output layout ``<case>/images/<slug>/output.mha``): used when the
  folder holds no image file directly; each non-hidden sub-folder must hold exactly one image file
  somewhere below it, and the case id is the sub-folder name.

Grids follow the HNTS-MRG organisers: a spacing difference above 1e-6 on any axis is refused
(``SpacingMismatchError``); a prediction whose size, origin or direction differs is resampled onto
the GT grid with nearest-neighbour interpolation, and a warning names the case.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import CaseMatchingError, SpacingMismatchError
from hnseg.io.read import IMAGE_SUFFIXES, is_image_file

log = logging.getLogger(__name__)

SPACING_TOLERANCE = 1e-6
GEOMETRY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class CasePair:
    case_id: str
    gt: Path
    pred: Path


def strip_image_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def case_id_from_filename(name: str) -> str:
    """Leading id of a file name: text before the first ``_``, else the stem."""
    stem = strip_image_suffix(name)
    head = stem.split("_", 1)[0]
    return head if head else stem


def _images_below(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            p = Path(root) / f
            if is_image_file(p):
                found.append(p)
    return found


def collect_cases(folder: str | os.PathLike, role: str) -> dict[str, Path]:
    """Map case id → image file for one folder; ``role`` ('ground truth'/'prediction') goes into
    error messages."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CaseMatchingError(f"{role} folder {folder}: expected a directory, found none")
    entries = sorted(folder.iterdir())
    files = [p for p in entries if is_image_file(p)]
    by_id: dict[str, list[Path]] = {}
    if files:
        for p in files:
            by_id.setdefault(case_id_from_filename(p.name), []).append(p)
        skipped = [p.name for p in entries if p.is_dir() and not p.name.startswith(".")]
        if skipped:
            log.debug("%s folder %s: flat layout, ignoring sub-folders %s", role, folder, skipped)
    else:
        subdirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        if not subdirs:
            raise CaseMatchingError(
                f"{role} folder {folder}: expected image files ({', '.join(IMAGE_SUFFIXES)}) or case "
                f"sub-folders, found neither"
            )
        for d in subdirs:
            images = _images_below(d)
            if len(images) != 1:
                listed = ", ".join(str(p) for p in images) if images else "none"
                raise CaseMatchingError(
                    f"{role} case folder {d}: expected exactly one image file below it, found "
                    f"{len(images)} ({listed})"
                )
            by_id[d.name] = images
    dupes = {k: v for k, v in by_id.items() if len(v) > 1}
    if dupes:
        raise_duplicate_ids(folder, role, dupes)
    return {k: v[0] for k, v in by_id.items()}


def raise_duplicate_ids(folder, role: str, dupes: dict[str, list[Path]]) -> None:
    detail = "; ".join(f"id {k!r}: {', '.join(str(p) for p in v)}" for k, v in sorted(dupes.items()))
    raise CaseMatchingError(f"{role} folder {folder}: duplicate case ids ({detail})")


def _id_sort_key(case_id: str) -> tuple[int, int | str]:
    return (0, int(case_id)) if case_id.isdigit() else (1, case_id)


def match_folders(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike) -> list[CasePair]:
    """Pair every GT case with its prediction; a GT case without prediction is an error, extra
    predictions are logged as a warning and skipped."""
    gt = collect_cases(gt_dir, "ground truth")
    pred = collect_cases(pred_dir, "prediction")
    missing = sorted(set(gt) - set(pred), key=_id_sort_key)
    if missing:
        listed = ", ".join(f"{k} ({gt[k].name})" for k in missing)
        raise CaseMatchingError(
            f"{len(missing)} ground-truth case(s) in {gt_dir} have no prediction in {pred_dir}: "
            f"{listed}; prediction ids found: {sorted(pred, key=_id_sort_key)}"
        )
    extra = sorted(set(pred) - set(gt), key=_id_sort_key)
    if extra:
        log.warning(
            "%d prediction(s) in %s have no ground truth and are ignored: %s",
            len(extra), pred_dir, ", ".join(f"{k} ({pred[k].name})" for k in extra),
        )
    return [CasePair(k, gt[k], pred[k]) for k in sorted(gt, key=_id_sort_key)]


def _geometry_differs(a: sitk.Image, b: sitk.Image) -> list[str]:
    diffs = []
    if a.GetSize() != b.GetSize():
        diffs.append(f"size {b.GetSize()} vs {a.GetSize()}")
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=GEOMETRY_TOLERANCE):
        diffs.append(f"origin {b.GetOrigin()} vs {a.GetOrigin()}")
    if not np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=GEOMETRY_TOLERANCE):
        diffs.append(f"direction {b.GetDirection()} vs {a.GetDirection()}")
    return diffs


def check_spacing(
    gt: sitk.Image, pred: sitk.Image, case_id: str, gt_path: Path | str, pred_path: Path | str
) -> None:
    """A prediction must have the GT's spacing (it is never resampled across spacings)."""
    gs, ps = gt.GetSpacing(), pred.GetSpacing()
    if len(gs) != len(ps) or any(abs(x - y) > SPACING_TOLERANCE for x, y in zip(gs, ps)):
        raise SpacingMismatchError(
            f"case {case_id}: prediction {pred_path} has spacing {tuple(ps)} but ground truth "
            f"{gt_path} has spacing {tuple(gs)} (tolerance {SPACING_TOLERANCE:g} per axis); "
            f"predictions must be written on the ground-truth grid"
        )


def align_to_reference(
    gt: sitk.Image, pred: sitk.Image, case_id: str, gt_path: Path | str, pred_path: Path | str
) -> tuple[sitk.Image, bool]:
    """Return the prediction on the GT grid and whether it had to be resampled."""
    check_spacing(gt, pred, case_id, gt_path, pred_path)
    diffs = _geometry_differs(gt, pred)
    if not diffs:
        return pred, False
    log.warning(
        "case %s: prediction %s differs from the ground-truth grid (%s); resampling it onto the "
        "ground-truth grid (nearest neighbour)",
        case_id, pred_path, "; ".join(diffs),
    )
    resampled = sitk.Resample(
        pred, gt, sitk.Transform(), sitk.sitkNearestNeighbor, 0, pred.GetPixelID()
    )
    return resampled, True
