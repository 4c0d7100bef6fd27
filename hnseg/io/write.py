"""Atomic writers: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import SimpleITK as sitk

# SimpleITK picks the writer from the extension, so the temp name keeps the real one at the end.
_DOUBLE_SUFFIXES = (".nii.gz",)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in _DOUBLE_SUFFIXES:
        if name.endswith(s):
            return s
    return path.suffix


def _temp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + _suffix(path), dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _umask() -> int:
    umask = os.umask(0o022)  # the only way to read it: set, then restore
    os.umask(umask)
    return umask


def _default_file_mode() -> int:
    """0o666 less the process umask: what ``open()`` would give (mkstemp's 0o600 would hide outputs
    written by the container's non-root user from everyone else on the host)."""
    return 0o666 & ~_umask()


def temp_folder(parent: str | os.PathLike, prefix: str) -> Path:
    """A new folder in ``parent`` (renamed into place when complete), with the mode ``mkdir`` would
    give (0o777 less the umask) instead of mkdtemp's 0o700, which would lock a published weights or
    case folder away from every other user (the container's user reading mounted weights, a team)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o777 & ~_umask())
    return path


def _atomic(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        write(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_image_atomic(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` through a temporary file in the same folder, then rename."""
    return _atomic(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=compress))


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2) + "\n", path)


def write_dicom_atomic(dataset: Any, path: str | os.PathLike) -> Path:
    """A pydicom ``Dataset`` (highdicom's SEG included) as a DICOM Part-10 file."""
    return _atomic(path, lambda tmp: dataset.save_as(tmp, enforce_file_format=True))
