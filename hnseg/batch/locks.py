"""Locks that keep concurrent ``hnseg batch`` runs on one output folder from doing a case twice or
deleting each other's work.

POSIX record locks (``fcntl.lockf``; they work on NFS through its lock manager), on one byte each:

- ``OUT/.hnseg-batch.lock`` byte 1 is the **run lock**: a run without ``--shard`` takes it exclusively,
  a shard takes it shared, and only together with shards of the same plan (``RunPlan``: same task,
  same N, same sorted case list, written to ``OUT/.hnseg-batch.plan.json`` by the first shard).
  Anything else is refused with ``BatchLockError`` naming the holder (host, pid, start time, read from
  the lock file, where every holder writes itself after locking).
- byte 0 of the same file is the **setup lock**, held for the few milliseconds in which a run takes
  the run lock, checks or writes the plan and writes its holder record: it makes these steps atomic
  between processes.
- ``OUT/.locks/<case_id>.lock`` is the **case lock**, exclusive, held while the case is run. A worker
  that finds it held skips the case; a temp folder ``OUT/.<case_id>.tmp-*`` is stale exactly when its
  case lock is free (its process is dead: the kernel, or the NFS lock manager, dropped the lock), so it
  is removed only by a holder of the case lock, never by age or name.

A POSIX lock belongs to the process and is dropped when *any* descriptor of the file is closed in that
process: each lock file is opened once per holder and read through that descriptor (``os.pread``).
Lock files are never deleted (deleting one would let two processes lock two different files).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import fcntl

from hnseg.batch.layout import CASE_LOCK_DIR, LOCK_FILE, PLAN_FILE
from hnseg.errors import BatchLockError, OutputWriteError

log = logging.getLogger(__name__)

SETUP_BYTE, RUN_BYTE = 0, 1
SETUP_WAIT_S = 30.0  # the setup lock is held for milliseconds; a longer wait means a hung holder
_RECORD_SIZE = 4096
_BUSY = (errno.EACCES, errno.EAGAIN)


@dataclass(frozen=True)
class RunPlan:
    """What the shards sharing an output folder must agree on."""

    task: str
    shards: int
    cases: int
    case_ids_sha256: str

    @classmethod
    def of(cls, task: str, shard: tuple[int, int] | None, case_ids: list[str]) -> RunPlan:
        digest = hashlib.sha256("\n".join(sorted(case_ids)).encode()).hexdigest()
        return cls(task=task, shards=shard[1] if shard else 1, cases=len(case_ids), case_ids_sha256=digest)

    def describe(self) -> str:
        return (f"task {self.task}, {self.shards} shard(s), {self.cases} case(s), case list sha256 "
                f"{self.case_ids_sha256[:12]}")


def _holder_record(role: str) -> bytes:
    record = {"host": socket.gethostname(), "pid": os.getpid(), "role": role,
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return json.dumps(record).encode()


def _describe_holder(raw: bytes) -> str:
    try:
        r = json.loads(raw.rstrip(b"\0 \n").decode())
        return f"hnseg batch pid {r['pid']} on host {r['host']} since {r['since']} ({r['role']})"
    except (ValueError, KeyError, TypeError):
        return "another hnseg batch process (its holder record cannot be read)"


def _write_record(fd: int, record: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, record[:_RECORD_SIZE], 0)


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputWriteError(f"output folder {path.parent}: cannot create the lock file {path.name}: "
                               f"{exc.strerror or exc}") from None


def _try_lock(fd: int, shared: bool, byte: int, path: Path) -> bool:
    """One non-blocking lock attempt on ``byte``; False when another process holds a conflicting lock."""
    try:
        fcntl.lockf(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB, 1, byte)
        return True
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise BatchLockError(f"lock file {path}: expected a file system with POSIX record locks (fcntl), "
                             f"found locking fails: {exc.strerror or exc}") from None


def _unlock(fd: int, byte: int) -> None:
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, byte)


class RunLock:
    """The run lock of one output folder (see the module docstring); a context manager."""

    def __init__(self, output_dir: Path, plan: RunPlan, shard: tuple[int, int] | None = None,
                 setup_wait_s: float = SETUP_WAIT_S):
        self.output_dir, self.plan, self.shard = Path(output_dir), plan, shard
        self.path = self.output_dir / LOCK_FILE
        self.setup_wait_s = setup_wait_s
        self.fd: int | None = None

    @property
    def role(self) -> str:
        return f"shard {self.shard[0]}/{self.shard[1]}" if self.shard else "whole run"

    def __enter__(self) -> RunLock:
        self.fd = _open(self.path)
        try:
            self._setup()
        except BaseException:
            os.close(self.fd)  # drops every lock of this process on the file
            self.fd = None
            raise
        log.debug("run lock %s taken (%s)", self.path, self.role)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _setup(self) -> None:
        assert self.fd is not None
        deadline = time.monotonic() + self.setup_wait_s
        while not _try_lock(self.fd, False, SETUP_BYTE, self.path):
            if time.monotonic() > deadline:
                raise BatchLockError(f"output folder {self.output_dir}: its lock {self.path} has been held in setup "
                                     f"for over {self.setup_wait_s:.0f} s by {self._holder()}; expected a few "
                                     "milliseconds; wait for it or use another folder")
            time.sleep(0.05)
        try:
            self._take_run_byte()
            try:
                _write_record(self.fd, _holder_record(self.role))
            except OSError:  # a full disk must not stop the lock; the record is only for messages
                log.debug("run lock %s: holder record not written", self.path, exc_info=True)
        finally:
            _unlock(self.fd, SETUP_BYTE)

    def _take_run_byte(self) -> None:
        assert self.fd is not None
        if _try_lock(self.fd, False, RUN_BYTE, self.path):  # nobody else: any plan on disk is of a dead run
            if self.shard is not None:
                self._write_plan()
                _try_lock(self.fd, True, RUN_BYTE, self.path)  # downgrade in place (POSIX: atomic)
            return
        if self.shard is None or not _try_lock(self.fd, True, RUN_BYTE, self.path):
            note = " (only shards of one plan share a folder)" if self.shard else ""
            raise BatchLockError(f"output folder {self.output_dir} is in use by {self._holder()}; wait for it "
                                 f"or use another folder{note}")
        found = self._read_plan()
        if found != self.plan:
            _unlock(self.fd, RUN_BYTE)
            theirs = found.describe() if found else "a plan that cannot be read"
            raise BatchLockError(f"output folder {self.output_dir} is in use by shards of another plan ({theirs}; "
                                 f"last joined by {self._holder()}); this {self.role} is of {self.plan.describe()}; "
                                 "wait for them or use another folder")

    def _holder(self) -> str:
        assert self.fd is not None
        return _describe_holder(os.pread(self.fd, _RECORD_SIZE, 0))

    def _write_plan(self) -> None:
        from hnseg.io.write import write_json_atomic

        try:
            write_json_atomic(asdict(self.plan), self.output_dir / PLAN_FILE)
        except OSError as exc:
            raise OutputWriteError(f"output folder {self.output_dir}: cannot write {PLAN_FILE}: "
                                   f"{exc.strerror or exc}") from None

    def _read_plan(self) -> RunPlan | None:
        try:
            return RunPlan(**json.loads((self.output_dir / PLAN_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


class CaseLock:
    """The exclusive lock of one case, taken without waiting (``acquire``); a context manager."""

    def __init__(self, output_dir: Path, case_id: str):
        self.path = Path(output_dir) / CASE_LOCK_DIR / f"{case_id}.lock"
        self.case_id = case_id
        self.fd: int | None = None
        self.holder = ""  # who holds it, when ``acquire`` failed

    def acquire(self) -> bool:
        """True when taken (the holder record written); False when another process holds it."""
        fd = _open(self.path)
        if not _try_lock(fd, False, 0, self.path):
            self.holder = _describe_holder(os.pread(fd, _RECORD_SIZE, 0))
            os.close(fd)  # this process holds no lock on the file: closing drops nothing
            return False
        try:
            _write_record(fd, _holder_record(f"case {self.case_id}"))
        except OSError:  # a full disk must not stop the lock; the record is only for messages
            log.debug("case lock %s: holder record not written", self.path, exc_info=True)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> CaseLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
