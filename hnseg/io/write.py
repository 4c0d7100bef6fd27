"""Atomic, checked writers: a file appears under its final name complete, or not at all.

Each writer writes a temporary file beside the target, flushes it to disk (fsync), reads it back and
compares it with what was meant to be written, and only then renames it into place. Any failure on the
way (a full disk, a read-only or unwritable folder, a file where a folder must be, a writer that failed
silently — ITK's can leave a 0-byte file on a full disk without an error) removes the temporary file
and raises ``OutputWriteError`` naming the target.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hnseg.errors import OutputLocationError, OutputWriteError

# SimpleITK picks the writer from the extension, so the temp name keeps the real one at the end.
_DOUBLE_SUFFIXES = (".nii.gz",)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in _DOUBLE_SUFFIXES:
        if name.endswith(s):
            return s
    return path.suffix


_FULL = (os.strerror(errno.ENOSPC), os.strerror(errno.EFBIG), os.strerror(errno.EDQUOT))
_FULL_HINT = "disk full or file size limit"


def _write_error(path: Path, exc: BaseException) -> OutputWriteError:
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
    else:  # ITK: the useful part is its "Reason:" / "Description:" line
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(("Reason:", "Description:"))),
                      lines[-1] if lines else type(exc).__name__)
        reason = reason.split(" Reason: ")[-1]
    if any(text in reason for text in _FULL):
        reason += f" ({_FULL_HINT})"
    return OutputWriteError(f"{path}: expected to write this output, failed: {reason}; no partial file was left")


def _make_folder(folder: Path, what: str = "output folder") -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
        found = f"{blocker} is a file" if blocker else (exc.strerror or str(exc))
        raise OutputWriteError(f"{what} {folder}: expected a folder that can be created, found: {found}") from None


def _temp_beside(path: Path) -> Path:
    _make_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + _suffix(path), dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        _fsync(folder)
    except OSError:  # some file systems cannot sync a folder; the rename itself has happened
        pass


def check_target(path: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Before compute: nothing stands where ``path`` (a file under ``output_dir``) will be written —
    every existing folder on the way is a folder, and ``path`` itself is not one. Creates nothing."""
    path, top = Path(path), Path(output_dir)
    if path.is_dir():
        raise OutputWriteError(f"{path}: expected to write an output file there, found a folder")
    for folder in [path.parent, *path.parent.parents]:
        if folder.exists() and not folder.is_dir():
            raise OutputWriteError(f"{path}: expected a folder at {folder} to write into, found a file")
        if folder == top or folder.exists():
            break


def created_folders(path: Path, output_dir: Path) -> list[Path]:
    """The folders between ``output_dir`` and ``path`` that do not exist yet (deepest first)."""
    missing = []
    for folder in [path.parent, *path.parent.parents]:
        if folder == output_dir or folder.exists():
            break
        missing.append(folder)
    return missing


def check_output_folder(output_dir: str | os.PathLike, input_dir: str | os.PathLike | None = None) -> Path:
    """Before any compute: the output folder must not be, contain or lie inside the input folder
    (``OutputLocationError``), must be a folder (created if missing) and must take a file
    (``OutputWriteError``)."""
    out = Path(output_dir)
    if input_dir is not None:
        o, i = Path(os.path.realpath(out)), Path(os.path.realpath(input_dir))
        if o == i or i in o.parents or o in i.parents:
            relation = "is" if o == i else "lies inside" if i in o.parents else "contains"
            raise OutputLocationError(f"output folder {out}: expected a folder apart from the input folder "
                                      f"{input_dir}, found it {relation} it")
    _make_folder(out)
    try:
        fd, probe = tempfile.mkstemp(prefix=".hnseg-write-check.", dir=out)
        try:
            os.write(fd, b"hnseg")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise OutputWriteError(f"output folder {out}: expected a writable folder, found: "
                               f"{exc.strerror or exc}") from None
    return out


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
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        os.chmod(path, 0o777 & ~_umask())
    except OSError as exc:
        raise OutputWriteError(f"{parent}: expected a writable folder for {prefix}…, found: "
                               f"{exc.strerror or exc}") from None
    return path


def _atomic(path: str | os.PathLike, write, check=None) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, sync it, ``check(tmp)`` (raises when the
    file is not what was meant), then rename it into place."""
    path = Path(path)
    tmp = None
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder stands where the file must go")
        tmp = _temp_beside(path)
        write(tmp)
        if not tmp.is_file() or tmp.stat().st_size == 0:  # ITK's writers can fail without raising
            raise OSError(errno.EIO, f"the writer left no file or an empty one ({_FULL_HINT} or a writer error)")
        _fsync(tmp)
        if check is not None:
            check(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OutputWriteError:
        _remove(tmp)
        raise
    except (OSError, RuntimeError, ValueError, EOFError) as exc:  # RuntimeError: ITK; EOF/Value: pydicom
        _remove(tmp)
        raise _write_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def _remove(tmp: Path | None) -> None:
    if tmp is not None:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _same_image(image: sitk.Image):
    def check(tmp: Path) -> None:
        back = sitk.ReadImage(str(tmp))
        same = (back.GetSize() == image.GetSize() and back.GetPixelID() == image.GetPixelID()
                and np.allclose(back.GetSpacing(), image.GetSpacing()) and np.allclose(back.GetOrigin(), image.GetOrigin())
                and np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image)))
        if not same:
            raise OSError(errno.EIO, "the file read back differs from the image written")
    return check


def write_image_atomic(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` through a temporary file in the same folder (read back and compared
    voxel by voxel), then rename."""
    return _atomic(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=compress), _same_image(image))


def _same_bytes(data: bytes):
    def check(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise OSError(errno.EIO, "the file read back differs from the text written")
    return check


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    data = text.encode("utf-8")
    return _atomic(path, lambda tmp: tmp.write_bytes(data), _same_bytes(data))


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2) + "\n", path)


def write_dicom_atomic(dataset: Any, path: str | os.PathLike) -> Path:
    """A pydicom ``Dataset`` (highdicom's SEG included) as a DICOM Part-10 file."""
    def check(tmp: Path) -> None:
        import pydicom

        pydicom.dcmread(tmp)  # raises on a truncated or damaged file

    return _atomic(path, lambda tmp: dataset.save_as(tmp, enforce_file_format=True), check)
