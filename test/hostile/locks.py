"""Class 4, batch concurrency (BatchLockError): a second run while the output folder's lock is held.

The test process plays the live run: it takes the run lock the way ``hnseg.batch.locks`` does (an
exclusive POSIX record lock on byte 1 of ``OUT/.hnseg-batch.lock``, the holder record written into the
file as JSON) and holds it while the child runs. The child must refuse, naming the holder's pid, and
delete nothing: not a finished case, not the live run's temp folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from hostile.kit import Setup, batch_args, batch_folder

LOCK_FILE = ".hnseg-batch.lock"
RUN_BYTE = 1


@contextlib.contextmanager
def holding(out: Path) -> Iterator[None]:
    """The run lock, held by this process (opened once: closing any descriptor of the file in this
    process would drop the lock, so nothing else here may open it meanwhile)."""
    fd = os.open(out / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, RUN_BYTE)
        yield
    finally:
        os.close(fd)


def _folders(root: Path) -> tuple[Path, Path]:
    in_dir, out = root / "in", root / "out"
    for c in ("p1", "p2"):
        batch_folder(in_dir / c)
    out.mkdir()
    record = {"host": socket.gethostname(), "pid": os.getpid(), "role": "whole run",
              "since": "2026-01-01T00:00:00+00:00"}  # the holder record a live run writes after locking
    (out / LOCK_FILE).write_text(json.dumps(record))
    return in_dir, out


def lock_held(root: Path) -> Setup:
    in_dir, out = _folders(root)
    return Setup(batch_args(out, in_dir=in_dir), out=out, hold=lambda: holding(out),
                 mention=(f"pid {os.getpid()}", str(out)))


def lock_held_resume(root: Path) -> Setup:
    """``--resume`` must not take the live run's temp folder for a stale one, nor touch its finished case."""
    in_dir, out = _folders(root)
    (out / "p1").mkdir()
    (out / "p1" / "report.json").write_text('{"finished": "by the live run"}\n')
    (out / ".p2.tmp-live").mkdir()
    (out / ".p2.tmp-live" / "output.nii.gz.part").write_bytes(b"being written by the live run")
    return Setup(batch_args(out, "--resume", in_dir=in_dir), out=out, hold=lambda: holding(out),
                 mention=(f"pid {os.getpid()}",))


def lock_held_shard(root: Path) -> Setup:
    """A ``--shard`` joins only shards of one plan, never a whole run."""
    in_dir, out = _folders(root)
    return Setup(batch_args(out, "--shard", "1/2", in_dir=in_dir), out=out, hold=lambda: holding(out),
                 mention=(f"pid {os.getpid()}",))
