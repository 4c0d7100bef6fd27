"""Input paths that stay where they were given: inside the input folder, regular files only.

A symbolic link is followed only when its target lies inside the root folder it was found in; a
socket file must be a regular file (a FIFO would block the reader forever, a device such as
``/dev/zero`` never ends). Every refusal is an ``UnsafePathError`` naming the path and its target.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hnseg.errors import UnreadableImageError, UnsafePathError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
)


def real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(path))


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path``, all links resolved, is ``root`` or lies below it (``root`` resolved too)."""
    p, r = real(path), real(root)
    return p == r or r in p.parents


Roots = str | os.PathLike | tuple | list | None


def _roots(root: Roots) -> list:
    return [] if root is None else list(root) if isinstance(root, (tuple, list)) else [root]


def check_inside(path: str | os.PathLike, root: Roots, label: str) -> Path:
    """``path`` resolved; refused when it leads out of ``root`` (or out of every one of several roots;
    ``None``: no containment rule)."""
    target = real(path)
    roots = _roots(root)
    if roots and not any(is_inside(target, r) for r in roots):
        via = f" (through a symbolic link to {target})" if target != Path(os.path.abspath(path)) else ""
        shown = " or ".join(str(r) for r in roots)
        raise UnsafePathError(f"{label}: expected a path inside the input folder {shown}, found {path}{via}")
    return target


def file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular_file(path: str | os.PathLike, root: Roots, label: str,
                       allow_folder: bool = False) -> Path:
    """``path`` must resolve inside ``root`` to a regular file (or a folder when ``allow_folder``:
    a DICOM series). Returns the resolved path."""
    target = check_inside(path, root, label)
    try:
        mode = os.stat(target).st_mode
    except OSError as exc:
        raise UnreadableImageError(f"{label}: expected a readable file, found none ({exc.strerror})") from None
    if stat.S_ISREG(mode) or (allow_folder and stat.S_ISDIR(mode)):
        return target
    shown = f"{path} → {target}" if target != Path(os.path.abspath(path)) else str(path)
    raise UnsafePathError(f"{label}: expected a regular image file, found {file_kind(mode)} ({shown})")


def read_bounded(path: str | os.PathLike, max_bytes: int, label: str, error: type[Exception],
                 limit_error: type[Exception] | None = None) -> bytes:
    """A small text file (JSON, CSV) read whole, refused when it is not a regular file, cannot be read
    (``error``) or holds more than ``max_bytes`` (``limit_error``, default ``error``): never read past it."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{label} {path}: expected a regular file, found {file_kind(mode)}")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{label} {path}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise (limit_error or error)(f"{label} {path}: expected at most {max_bytes:,} bytes, found more")
    return data
