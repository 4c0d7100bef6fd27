"""Run one catalogue case: build it, snapshot its folder, run the child under a memory cap and a hard
timeout, measure wall time and peak RSS (``os.wait4``), snapshot again.

The child is ``launch.py`` (sets the limits, runs the real command, reports its ``wait4`` peak RSS
through a pipe), started without
``preexec_fn`` so that cases can run from worker threads (``Prefetcher``: ``HNSEG_HOSTILE_JOBS``
children at a time, default 2), which keeps the catalogue's total time down on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostile.kit import REPO, Case, Setup, snapshot

LAUNCH = Path(__file__).with_name("launch.py")
DATA_LIMIT = 2 << 30  # RLIMIT_DATA of the child: 2 GiB
HARD_TIMEOUT_S = 60.0  # the child is killed after this (the check itself is 30 s)
MAX_WALL_S, MAX_PEAK_MB = 30.0, 2048.0
CAP_SETPCAP = 8

PREFIX = {
    "predict": [sys.executable, str(REPO / "inference.py")],
    "batch": [sys.executable, "-m", "hnseg", "batch"],
    "verify": [sys.executable, "-m", "hnseg", "weights", "verify"],
}


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    wall_s: float
    peak_mb: float
    timed_out: bool


@dataclass
class Execution:
    case: Case
    root: Path
    setup: Setup
    before: dict[str, str]
    after: dict[str, str]
    outcome: Outcome


def can_drop_dac() -> bool:
    """Root can drop CAP_DAC_OVERRIDE from a child's bounding set only with CAP_SETPCAP."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SETPCAP & 1)
    return False


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HNSEG_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                      if p and Path(p).resolve() != REPO]])
    env.update(extra)
    return env


def _read(stream, sink: list[bytes]) -> None:
    sink.append(stream.read())


def run_child(cmd: list[str], setup: Setup, cwd: Path, timeout_s: float = HARD_TIMEOUT_S) -> Outcome:
    r, w = os.pipe()  # the launcher reports the command's peak RSS here
    launcher = [sys.executable, "-S", "-E", str(LAUNCH), "--report", str(w), "--data", str(DATA_LIMIT)]
    if setup.fsize is not None:
        launcher += ["--fsize", str(setup.fsize)]
    if setup.read_only and os.geteuid() == 0:
        launcher += ["--drop-dac"]
    out: list[bytes] = []
    err: list[bytes] = []
    t0 = time.monotonic()
    # stdout/stderr are pipes, not files: a file would count against RLIMIT_FSIZE
    p = subprocess.Popen([*launcher, "--", *cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=child_env(setup.env), cwd=cwd, start_new_session=True,
                         pass_fds=(w,))
    os.close(w)
    peak: list[bytes] = []
    report = os.fdopen(r, "rb")
    readers = [threading.Thread(target=_read, args=(p.stdout, out), daemon=True),
               threading.Thread(target=_read, args=(p.stderr, err), daemon=True),
               threading.Thread(target=_read, args=(report, peak), daemon=True)]
    for t in readers:
        t.start()
    timed_out = False
    while True:
        pid, status, _ = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > timeout_s and not timed_out:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)
        time.sleep(0.02)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    with _suppress():
        os.killpg(p.pid, signal.SIGKILL)  # a grandchild left behind
    for t in readers:
        t.join(timeout=10)
    p.stdout.close()
    p.stderr.close()
    report.close()
    reported = b"".join(peak).split()
    rc = p.returncode if p.returncode < 128 else -(p.returncode - 128)  # the launcher's 128 + N: signal N
    return Outcome(rc=rc, stdout=b"".join(out).decode(errors="replace"),
                   stderr=b"".join(err).decode(errors="replace"), wall_s=wall,
                   peak_mb=int(reported[0]) / 1024.0 if reported else float("nan"), timed_out=timed_out)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return exc[0] is ProcessLookupError or exc[0] is PermissionError


def execute(case: Case, root: Path) -> Execution:
    root.mkdir(parents=True, exist_ok=True)
    setup = case.build(root)
    if setup.read_only and os.geteuid() == 0 and not can_drop_dac():
        pytest.skip("running as root without CAP_SETPCAP: cannot make a folder read-only for the child")
    for d in setup.read_only:
        d.chmod(0o555)
    try:
        before = snapshot(root)
        # outside the snapshots: reading a lock file would drop the POSIX lock this process holds on it
        with setup.hold() if setup.hold else contextlib.nullcontext():
            outcome = run_child([*PREFIX[case.kind], *setup.args], setup, cwd=root)
        after = snapshot(root)
    finally:
        for d in setup.read_only:
            d.chmod(0o755)  # so that pytest can remove tmp_path
    return Execution(case, root, setup, before, after, outcome)


class Prefetcher:
    """Runs the selected cases ``jobs`` at a time, in the order pytest will ask for them."""

    def __init__(self, cases: list[Case], make_root, jobs: int):
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="hostile")
        self._futures: dict[str, Future] = {c.id: self._pool.submit(execute, c, make_root(c)) for c in cases}

    def result(self, case: Case) -> Execution:
        return self._futures[case.id].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
