"""The catalogue's records and the helpers every builder uses.

A ``Case`` is one row of the catalogue: what is hostile, which command meets it, the exact exit code,
the named error and fragments of its message, and why it matters. Its builder makes the hostile
input under a fresh folder (``root``) and returns a ``Setup``: the command's arguments and what the
checks need to know (the output folder, files that may appear, markers that must never exist, …).

Inputs are small phantoms (``hnseg.phantoms``: 64×64×24 voxels at 2.5×2.5×4 mm, a plausible neck
MRI; a 48×48×24 CT at ~3×3×5 mm) so that a refusal costs little more than the child's imports, and a
case that is wrongly accepted costs one fast prediction (``--folds 0 --tta off --device cpu``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = REPO / "weights"  # a folder of <task>/ weights folders (read only: tampering is on copies)
TASK1_WEIGHTS = WEIGHTS / "hntsmrg-task1"
FAST = ["--device", "cpu", "--tta", "off", "--folds", "0"]

TASK1 = "hntsmrg-task1"
PRE_T2 = "pre-rt-t2w-head-neck"  # hntsmrg-task1's only input socket
OUT_SLUG = "mri-head-neck-segmentation"
CT, CT_CONTRAST, NPC_MRI = "head-neck-ct", "head-neck-contrast-enhanced-ct", "head-neck-t1w-mri"
SUMMARY = "batch_summary.csv"
# What a batch run may create in its output folder even when it refuses or stops: its lock files
# (hnseg/batch: the run lock, the per-case locks and the plan file beside them)
BATCH_INFRA = (".hnseg-batch*", ".locks", ".locks/*")

Kind = Literal["predict", "batch", "verify"]

CLASSES: dict[str, str] = {
    "location": "1. Data loss: output location",
    "writes": "2. Output writes",
    "weights": "3. Weights",
    "locks": "4. Batch concurrency",
    "escapes": "5. Input escapes",
    "bombs": "6. Resource bombs",
    "plausibility": "7. Silently wrong output",
    "tracebacks": "8. Tracebacks turned into named errors",
    "existing": "9. Existing refusals",
}


@dataclass
class Setup:
    """What a builder made: the command's arguments (after ``inference.py`` / ``hnseg batch`` /
    ``hnseg weights verify``) and what the checks need."""

    args: list[str]
    out: Path | None = None  # the output folder: nothing may appear there (batch: see batch_ok)
    env: dict[str, str] = field(default_factory=dict)
    mention: tuple[str, ...] = ()  # message fragments known only once built (paths under root)
    fsize: int | None = None  # RLIMIT_FSIZE of the child (a "full disk")
    read_only: tuple[Path, ...] = ()  # folders made read-only; the child runs without CAP_DAC_OVERRIDE
    markers: tuple[Path, ...] = ()  # files a payload would create: must never exist
    batch_ok: tuple[str, ...] = ()  # batch cases that must be finished (report.json) and 'ok'
    batch_failed: tuple[str, ...] = ()  # batch cases that must be 'failed' with the case's error
    allowed_new: tuple[str, ...] = ()  # globs (relative to root) of paths that may appear
    hold: Callable[[], contextlib.AbstractContextManager] | None = None  # held while the child runs
    not_in_stderr: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    id: str
    cls: str  # a key of CLASSES
    what: str  # the hostile input, in words
    build: Callable[[Path], Setup]
    kind: Kind
    exit_code: int
    error: str  # the named error class on stderr
    fragments: tuple[str, ...]  # must all be in the error line (what was wrong and where)
    why: str

    def __post_init__(self) -> None:
        assert self.cls in CLASSES, self.cls


# --- command lines -------------------------------------------------------------------------------
def predict_args(in_dir: Path, out_dir: Path, *extra: str, weights: Path = WEIGHTS) -> list[str]:
    return ["--input", str(in_dir), "--output", str(out_dir), "--weights", str(weights), *FAST, *extra]


def batch_args(out_dir: Path, *extra: str, in_dir: Path | None = None, manifest: Path | None = None,
               task: str = TASK1, weights: Path = TASK1_WEIGHTS) -> list[str]:
    src = ["-i", str(in_dir)] if manifest is None else ["--manifest", str(manifest)]
    return [*src, "-o", str(out_dir), "--task", task, "--weights", str(weights), *FAST, "--no-qa", *extra]


# --- images --------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _mri_array() -> tuple[np.ndarray, tuple, tuple]:
    from hnseg.phantoms import make_mri_case

    img = make_mri_case(21, "p", size=(64, 64, 24), spacing=(2.5, 2.5, 4.0)).pre_t2
    return sitk.GetArrayFromImage(img).astype(np.float32), img.GetSpacing(), img.GetOrigin()


def mri(values: np.ndarray | None = None, spacing=None, origin=None, direction=None) -> sitk.Image:
    """The phantom T2w MRI (float32, 0…~1300, air ~0), or ``values`` on its grid."""
    base, sp, org = _mri_array()
    img = sitk.GetImageFromArray(base.copy() if values is None else values)
    img.SetSpacing(spacing or sp)
    img.SetOrigin(origin or org)
    if direction is not None:
        img.SetDirection(direction)
    return img


def mri_array() -> np.ndarray:
    return _mri_array()[0].copy()


@lru_cache(maxsize=1)
def _ct_case():
    from hnseg.phantoms import make_ct_case

    return make_ct_case(3, "c", size=(48, 48, 24), spacing=(3.0, 3.0, 5.0))


def ct_pair() -> tuple[sitk.Image, sitk.Image]:
    """The phantom CT pair (int16 HU, air −1024), one grid."""
    c = _ct_case()
    return sitk.Image(c.ct), sitk.Image(c.ct_contrast)


def ct_mri() -> sitk.Image:
    """The phantom T1w MRI that goes with ``ct_pair`` (own grid, same physical space)."""
    return sitk.Image(_ct_case().mri)


def on_grid(values: np.ndarray, like: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(values)
    img.CopyInformation(like)
    return img


# --- grand-challenge case folders ----------------------------------------------------------------
def inputs_json(in_dir: Path, slugs: list[str]) -> None:
    entries = [{"socket": {"slug": s, "relative_path": f"images/{s}", "kind": "Image", "super_kind": "Image"},
                "value": None} for s in slugs]
    (in_dir / "inputs.json").write_text(json.dumps(entries))


def socket_dir(in_dir: Path, slug: str) -> Path:
    d = in_dir / "images" / slug
    d.mkdir(parents=True, exist_ok=True)
    return d


def gc_case(in_dir: Path, images: dict[str, sitk.Image | bytes], name: str = "x.mha") -> Path:
    """A grand-challenge case folder: ``images/<slug>/<name>`` per socket and inputs.json."""
    for slug, value in images.items():
        path = socket_dir(in_dir, slug) / name
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            sitk.WriteImage(value, str(path))
    inputs_json(in_dir, list(images))
    return in_dir


def task1_case(in_dir: Path, image: sitk.Image | None = None) -> Path:
    """A valid hntsmrg-task1 case folder (the phantom MRI)."""
    return gc_case(in_dir, {PRE_T2: image if image is not None else mri()})


def batch_folder(case_dir: Path, image: sitk.Image | None = None, ext: str = ".mha") -> Path:
    """A batch case folder (generic naming: ``<slug><ext>``) holding a valid hntsmrg-task1 input."""
    case_dir.mkdir(parents=True, exist_ok=True)
    path = case_dir / f"{PRE_T2}{ext}"
    sitk.WriteImage(image if image is not None else mri(), str(path))
    return path


def write_mha_header(path: Path, data_file: str, dims=(64, 64, 24), element_type: str = "MET_FLOAT",
                     spacing=(2.5, 2.5, 4.0), extra: str = "") -> Path:
    """A detached MetaImage header (``.mha``/``.mhd``) naming its data file, written by hand."""
    path.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"{extra}TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
        f"ElementSpacing = {' '.join(map(str, spacing))}\nDimSize = {' '.join(map(str, dims))}\n"
        f"ElementType = {element_type}\nElementDataFile = {data_file}\n"
    )
    return path


# --- weights -------------------------------------------------------------------------------------
def weights_copy(root: Path, task: str = TASK1) -> Path:
    """A private copy of the shipped weights of ``task`` (tamper here, never in the repository)."""
    dst = root / "weights" / task
    shutil.copytree(WEIGHTS / task, dst)
    return dst


def tripwire_weights(root: Path) -> Path:
    """A weights folder whose metadata is unusable: a run that gets as far as loading weights (that is,
    did not refuse before compute) ends in WeightsError instead of the case's error."""
    w = root / "tripwire-weights"
    w.mkdir()
    (w / "hnseg_weights.json").write_text("{}")
    return w


def remanifest(folder: Path) -> None:
    """Re-compute the sha256 manifest of a (tampered) weights folder, as an attacker would."""
    from hnseg.predict.weights import METADATA_FILE, manifest

    meta_path = folder / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["files"] = manifest(folder)
    meta_path.write_text(json.dumps(meta, indent=2))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- snapshots (what the checks compare) ----------------------------------------------------------
def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` → 'dir', 'link:<target>', '<sha256>:<size>' or the file type; never
    follows a link and never opens anything but a regular file (a FIFO or a device would hang)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames + filenames:
            p = base / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = f"link:{os.readlink(p)}"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = f"{sha256(p)}:{st.st_size}"
            else:
                out[rel] = f"special:{stat.S_IFMT(st.st_mode):o}"
    return out

