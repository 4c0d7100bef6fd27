"""Compare an output folder with an expected one, file by file (what ``test.sh`` checks).

Same set of files; images: same size, pixel type and geometry (spacing, origin, direction within
1e-6) and identical voxels, unless ``max_voxel_fraction`` allows a documented tolerance (a share of
the expected foreground, for runs on other hardware); JSON: equal values (floats within 1e-6
relative); anything else: identical bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd", ".tif", ".tiff")
GEOMETRY_ATOL = 1e-6


@dataclass(frozen=True)
class FileVerdict:
    path: str  # relative to the compared folders
    ok: bool
    detail: str


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _is_image(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_SUFFIXES)


def _geometry_differences(exp: sitk.Image, act: sitk.Image) -> list[str]:
    diffs = []
    if exp.GetSize() != act.GetSize():
        return [f"size expected {exp.GetSize()}, found {act.GetSize()}"]
    if exp.GetPixelIDTypeAsString() != act.GetPixelIDTypeAsString():
        diffs.append(f"pixel type expected {exp.GetPixelIDTypeAsString()}, found {act.GetPixelIDTypeAsString()}")
    if exp.GetNumberOfComponentsPerPixel() != act.GetNumberOfComponentsPerPixel():
        diffs.append("components per pixel differ")
    for name in ("Spacing", "Origin", "Direction"):
        e, a = getattr(exp, f"Get{name}")(), getattr(act, f"Get{name}")()
        if not np.allclose(e, a, rtol=0, atol=GEOMETRY_ATOL):
            diffs.append(f"{name.lower()} expected {tuple(round(v, 6) for v in e)}, found {tuple(round(v, 6) for v in a)}")
    return diffs


def _dice_by_label(e: np.ndarray, a: np.ndarray) -> str:
    parts = []
    for lab in sorted((set(np.unique(e).tolist()) | set(np.unique(a).tolist())) - {0}):
        ev, av = e == lab, a == lab
        denom = int(ev.sum() + av.sum())
        parts.append(f"label {lab} Dice {2 * int((ev & av).sum()) / denom:.4f}")
    return ", ".join(parts)


def compare_images(expected: Path, actual: Path, max_voxel_fraction: float = 0.0) -> tuple[bool, str]:
    try:
        exp, act = sitk.ReadImage(str(expected)), sitk.ReadImage(str(actual))
    except RuntimeError as exc:
        return False, f"cannot be read: {str(exc).strip().splitlines()[-1]}"
    diffs = _geometry_differences(exp, act)
    if diffs:
        return False, "; ".join(diffs)
    e, a = sitk.GetArrayViewFromImage(exp), sitk.GetArrayViewFromImage(act)
    differing = int(np.count_nonzero(e != a))
    if differing == 0:
        return True, f"identical ({e.size} voxels, labels {sorted(np.unique(e).tolist())})"
    allowed = math.floor(max_voxel_fraction * max(1, int(np.count_nonzero(e))))
    detail = f"{differing} voxels differ (allowed {allowed}); {_dice_by_label(e, a)}"
    return differing <= allowed, detail


def _json_equal(e, a) -> bool:
    if isinstance(e, bool) or isinstance(a, bool):
        return e is a
    if isinstance(e, (int, float)) and isinstance(a, (int, float)):
        # abs 2e-6: one step of the 6-decimal rounding of written probabilities (t-stage.json), which
        # float noise of another CPU can flip
        return math.isclose(e, a, rel_tol=1e-6, abs_tol=2e-6) or (e != e and a != a)
    if isinstance(e, dict) and isinstance(a, dict):
        return e.keys() == a.keys() and all(_json_equal(e[k], a[k]) for k in e)
    if isinstance(e, list) and isinstance(a, list):
        return len(e) == len(a) and all(_json_equal(x, y) for x, y in zip(e, a))
    return e == a


def compare_json(expected: Path, actual: Path) -> tuple[bool, str]:
    try:
        e, a = json.loads(expected.read_text()), json.loads(actual.read_text())
    except (OSError, ValueError) as exc:
        return False, f"not valid JSON: {exc}"
    return (True, "equal values") if _json_equal(e, a) else (False, f"expected {e!r}, found {a!r}")


def compare_folders(expected: Path, actual: Path, max_voxel_fraction: float = 0.0) -> list[FileVerdict]:
    """One verdict per file present in either folder (missing and unexpected files fail)."""
    want, got = _files(expected), _files(actual)
    verdicts = []
    for rel in sorted(want | got):
        if rel not in got:
            verdicts.append(FileVerdict(rel, False, "missing from the output"))
        elif rel not in want:
            verdicts.append(FileVerdict(rel, False, "not expected (unexpected extra file)"))
        elif _is_image(rel):
            verdicts.append(FileVerdict(rel, *compare_images(expected / rel, actual / rel, max_voxel_fraction)))
        elif rel.lower().endswith(".json"):
            verdicts.append(FileVerdict(rel, *compare_json(expected / rel, actual / rel)))
        else:
            same = (expected / rel).read_bytes() == (actual / rel).read_bytes()
            verdicts.append(FileVerdict(rel, same, "identical bytes" if same else "bytes differ"))
    return verdicts
