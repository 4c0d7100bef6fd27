"""``hnseg batch`` cannot lose data or clobber a concurrent run (issue 13, points 3 and 4):

- an output folder that is, contains or lies inside the input folder or a case source is refused
  (``OutputLocationError``) before anything is written, and the inputs stay byte-identical;
- case ids that collide with batch's own files, and manifests with NUL bytes, are named errors;
- one run lock per output folder (``hnseg.batch.locks``): a second run, or a ``--resume``, is refused
  with ``BatchLockError`` while another run lives, shards of one plan share the folder, shards of another
  plan do not; case locks keep workers from doing a case twice or deleting a live temp folder;
- a full disk (here: ``RLIMIT_FSIZE``, writes fail with EFBIG) fails the case and stops the run, exit 2.

Real concurrency uses real processes: ``python -m hnseg batch`` (hntsmrg-task1 demo weights, fold 0, no
TTA, CPU, small phantoms) and small lock-holder processes; a run is frozen mid-case with SIGSTOP, so
that the others meet it live whatever the machine's speed (a stopped process keeps its locks).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import SimpleITK as sitk

from hnseg.batch.locks import CaseLock, RunLock, RunPlan
from hnseg.batch.run import BatchRunner
from hnseg.cli import main
from hnseg.errors import BatchLockError
from hnseg.phantoms import make_mri_case
from hnseg.tasks.hntsmrg import PRE_T2

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights" / "hntsmrg-task1"
TASK = "hntsmrg-task1"
FAST = ["--task", TASK, "--weights", str(WEIGHTS), "--device", "cpu", "--tta", "off", "--folds", "0", "--no-qa"]
SPACING = (2.5, 2.5, 4.0)
TIMEOUT_S = 240.0
HOST = socket.gethostname()
DONE_RE = re.compile(r"INFO hnseg\.batch\.run: (\S+): done in ")


def _write_cases(root: Path, ids: list[str], size=(48, 48, 16), seed: int = 300) -> Path:
    for i, case_id in enumerate(ids):
        path = root / case_id / f"{PRE_T2}.nii.gz"
        path.parent.mkdir(parents=True)
        image = make_mri_case(seed + i, case_id, size=size, spacing=SPACING).pre_t2
        sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(path))
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if any(t in p.name for t in (".tmp-", ".part", ".old-"))]


# -- output location ---------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path) -> Path:
    """tmp/in/{in,c2}: cases (one named like its input folder: the issue's data loss), tmp/src/d1/<slug>/
    a DICOM-like source folder for manifests."""
    _write_cases(tmp_path / "in", ["in", "c2"])
    src = tmp_path / "src" / "d1" / PRE_T2
    src.mkdir(parents=True)
    (src / "1.dcm").write_bytes(b"not read: refused before")
    (tmp_path / "src" / "x.nii.gz").write_bytes((tmp_path / "in" / "c2" / f"{PRE_T2}.nii.gz").read_bytes())
    (tmp_path / "manifest.csv").write_text(f"case_id,{PRE_T2}\nm1,src/d1/{PRE_T2}\nm2,src/x.nii.gz\n")
    os.symlink(tmp_path / "in" / "c2", tmp_path / "link-to-c2")
    return tmp_path


LOCATIONS = {  # name: (source flags, output folder), relative to the tree
    "output is the input": (["-i", "in"], "in"),
    "output inside the input": (["-i", "in"], "in/c2/out"),
    "output is the input's parent": (["-i", "in"], "."),
    "output is a symlink into the input": (["-i", "in"], "link-to-c2"),
    "output below a symlink into the input": (["-i", "in"], "link-to-c2/sub"),
    "output inside a manifest DICOM folder": (["--manifest", "manifest.csv"], f"src/d1/{PRE_T2}/out"),
    "output holds a manifest DICOM folder": (["--manifest", "manifest.csv"], "src/d1"),
    "output holds manifest sources": (["--manifest", "manifest.csv"], "src"),
}


@pytest.mark.parametrize("name", list(LOCATIONS))
@pytest.mark.parametrize("again", [[], ["--overwrite"]])
def test_output_in_or_around_an_input_is_refused_and_inputs_stay_identical(tree, name, again, capsys):
    flags, out = LOCATIONS[name]
    flags = [flags[0], str(tree / flags[1])]
    before = _hashes(tree)
    entries = sorted(p.name for p in (tree / out).iterdir()) if (tree / out).is_dir() else None
    assert main(["batch", *flags, "-o", str(tree / out), *FAST, *again]) == 2
    err = capsys.readouterr().err
    assert err.startswith("OutputLocationError: output folder ") and "Traceback" not in err, err
    assert "expected a folder outside the input folder and every case source" in err
    assert re.search(r"found that it (is|lies inside|contains) ", err), err
    assert _hashes(tree) == before  # not one input byte changed, nothing written anywhere in the tree
    if entries is None:
        assert not (tree / out).exists()
    else:
        assert sorted(p.name for p in (tree / out).iterdir()) == entries


def test_output_beside_the_input_is_accepted(tree):
    assert main(["batch", "-i", str(tree / "in"), "-o", str(tree / "out"), *FAST]) == 0
    assert (tree / "out" / "in" / "report.json").is_file() and (tree / "in" / "in" / f"{PRE_T2}.nii.gz").is_file()


# -- case ids and manifests ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["batch_summary.csv", "Batch_Summary_shard-1-of-2.csv"])
def test_a_case_named_like_batchs_own_files_is_refused(tmp_path, name, capsys):
    _write_cases(tmp_path / "in", ["ok", name], size=(24, 24, 8))
    assert main(["batch", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("SettingsError: input folder ") and f"case id {name!r}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "m.csv").write_text(f"case_id,{PRE_T2}\nok,in/ok/{PRE_T2}.nii.gz\n{name},in/ok/{PRE_T2}.nii.gz\n")
    assert main(["batch", "--manifest", str(tmp_path / "m.csv"), "-o", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"SettingsError: manifest {tmp_path / 'm.csv'} line 3: case id {name!r}"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text,expected", [
    (b"case_id,pre-rt-t2w-head-neck\np1,a.mha\np2,b\x00.mha\n", r"line 3: expected CSV text, found a NUL byte"),
    ("case_id,pre-rt-t2w-head-neck\np1,a.mha\n".encode("utf-16"), r"line 1: expected CSV text, found a NUL byte"),
    (b"case_id,pre-rt-t2w-head-neck\nP1,a.mha\np1,b.mha\n", r"case ids 'P1' and 'p1' differ only in letter case"),
])
def test_manifest_with_nul_bytes_or_case_clashes_is_a_settings_error(tmp_path, text, expected, capsys):
    path = tmp_path / "m.csv"
    path.write_bytes(text)
    assert main(["batch", "--manifest", str(path), "-o", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"SettingsError: manifest {path}") and re.search(expected, err) and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# -- lock holders in other processes -----------------------------------------------------------------
HOLDER = r"""
import json, sys
from hnseg.batch.locks import CaseLock, RunLock, RunPlan
a = json.loads(sys.argv[1])
shard = tuple(a["shard"]) if a["shard"] else None
with RunLock(a["out"], RunPlan.of(a["task"], shard, a["case_ids"]), shard):
    locks = [CaseLock(a["out"], c) for c in a["case_locks"]]
    assert all(lock.acquire() for lock in locks)
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextmanager
def holding(out: Path, case_ids: list[str], shard=None, case_locks=(), task=TASK):
    """Another process holds ``out``'s run lock (and the given case locks) until the block ends."""
    arg = json.dumps({"out": str(out), "task": task, "shard": shard, "case_ids": case_ids,
                      "case_locks": list(case_locks)})
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, arg], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line == "locked\n", proc.stderr.read()
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_run_lock_refuses_a_second_run_and_names_the_holder(tmp_path):
    plan = RunPlan.of(TASK, None, ["a", "b"])
    with holding(tmp_path, ["a", "b"]) as holder:
        for shard in (None, (1, 2)):
            with pytest.raises(BatchLockError, match=rf"is in use by hnseg batch pid {holder.pid} on host "
                                                     rf"{re.escape(HOST)} since .*\(whole run\); wait for it"):
                with RunLock(tmp_path, RunPlan.of(TASK, shard, ["a", "b"]), shard):
                    pass
    with RunLock(tmp_path, plan):  # the holder is gone: its lock went with it
        pass


def test_shards_of_one_plan_share_the_folder_and_no_other(tmp_path):
    ids = ["a", "b", "c"]
    with holding(tmp_path, ids, shard=[1, 2]) as holder:
        for other, shard in ((ids + ["d"], (2, 2)), (ids, (2, 3)), (ids, None)):
            with pytest.raises(BatchLockError, match=rf"pid {holder.pid} on host {re.escape(HOST)}"):
                with RunLock(tmp_path, RunPlan.of(TASK, shard, other), shard):
                    pass
        with pytest.raises(BatchLockError, match="shards of another plan .*2 shard\\(s\\), 3 case\\(s\\).*this "
                                                 "shard 1/3 is of task hntsmrg-task1, 3 shard\\(s\\)"):
            with RunLock(tmp_path, RunPlan.of(TASK, (1, 3), ids), (1, 3)):
                pass
        with RunLock(tmp_path, RunPlan.of(TASK, (2, 2), ids), (2, 2)):  # same plan: shared
            with CaseLock(tmp_path, "b") as lock:
                assert lock.acquire()


def test_case_lock_is_held_per_process_and_freed_when_it_dies(tmp_path):
    with holding(tmp_path, ["a"], case_locks=["a"]) as holder:
        lock = CaseLock(tmp_path, "a")
        assert not lock.acquire()
        assert f"pid {holder.pid} on host {HOST}" in lock.holder and "(case a)" in lock.holder
        with CaseLock(tmp_path, "b") as other:
            assert other.acquire()
        holder.kill()  # SIGKILL: no clean-up of its own
        holder.wait()
        with CaseLock(tmp_path, "a") as again:
            assert again.acquire()


def test_resume_while_a_run_lives_is_refused_and_deletes_nothing(tmp_path, capsys):
    inp = _write_cases(tmp_path / "in", ["c1", "c2"], size=(24, 24, 8))
    out = tmp_path / "out"
    live = out / ".c2.tmp-live"
    live.mkdir(parents=True)
    (live / "part.nii.gz").write_bytes(b"being written")
    with holding(out, ["c1", "c2"], case_locks=["c2"]) as holder:
        for flags in (["--resume"], [], ["--overwrite"], ["--shard", "1/2", "--resume"]):
            assert main(["batch", "-i", str(inp), "-o", str(out), *FAST, *flags]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"BatchLockError: output folder {out} is in use by hnseg batch pid {holder.pid}"), err
            assert (live / "part.nii.gz").read_bytes() == b"being written"
    assert sorted(p.name for p in out.iterdir()) == [".c2.tmp-live", ".hnseg-batch.lock", ".locks"]


def test_a_live_workers_case_is_skipped_and_its_temp_folder_kept(tmp_path, caplog):
    ids = ["c1", "c2", "c3"]
    inp = _write_cases(tmp_path / "in", ids)
    out = tmp_path / "out"
    live = out / ".c2.tmp-live"
    live.mkdir(parents=True)
    (live / "part.nii.gz").write_bytes(b"being written")
    with holding(out, ids, shard=[1, 1], case_locks=["c2"]) as holder:
        assert main(["batch", "-i", str(inp), "-o", str(out), *FAST, "--shard", "1/1", "--resume"]) == 0
        assert (live / "part.nii.gz").read_bytes() == b"being written"
    rows = _rows(out / "batch_summary_shard-1-of-1.csv")
    assert {c: r["status"] for c, r in rows.items()} == {"c1": "ok", "c2": "skipped", "c3": "ok"}
    assert rows["c2"]["error_message"].startswith(f"in progress in another worker (hnseg batch pid {holder.pid}")
    assert not (out / "c2").exists()
    assert main(["batch", "-i", str(inp), "-o", str(out), *FAST, "--shard", "1/1", "--resume"]) == 0
    assert not live.exists() and _leftovers(out) == []  # its process is dead: stale, removed under the lock
    assert (out / "c2" / "report.json").is_file()
    assert any(f"removing stale temporary folder {live}" in r.getMessage() for r in caplog.records)


# -- an interrupted replacement (--overwrite) --------------------------------------------------------
def test_recover_puts_back_an_older_folder_and_removes_leftovers(tmp_path):
    out = tmp_path
    old = out / ".c1.old-x1"
    (old / "c1").mkdir(parents=True)
    (old / "c1" / "report.json").write_text("previous")
    (out / ".c1.tmp-y2").mkdir()  # the new version, complete or not, killed between the two renames
    BatchRunner._recover(SimpleNamespace(output_dir=out), "c1")
    assert (out / "c1" / "report.json").read_text() == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["c1"]
    (out / ".c1.old-x3" / "c1").mkdir(parents=True)  # killed after both renames: c1 is the new one
    (out / "c1" / "report.json").write_text("new")
    BatchRunner._recover(SimpleNamespace(output_dir=out), "c1")
    assert (out / "c1" / "report.json").read_text() == "new" and sorted(p.name for p in out.iterdir()) == ["c1"]


# -- full disk ------------------------------------------------------------------------------------
def _file_size_limit(limit: int):
    def apply() -> None:  # python ignores SIGXFSZ: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow  # ~25 s each on a loaded machine: a fresh process (torch, the model) under the limit
@pytest.mark.parametrize("limit,summary", [(16 * 1024, True), (200, False)])
def test_full_disk_fails_the_case_and_stops_the_run(tmp_path, limit, summary):
    ids = ["c1", "c2", "c3"]
    inp = _write_cases(tmp_path / "in", ids)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hnseg", "batch", "-i", str(inp), "-o", str(out),
           *[a for a in FAST if a != "--no-qa"]]  # the QA sheet (~100 KB) is the first file over 16 KB
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S,
                       preexec_fn=_file_size_limit(limit))
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("OutputWriteError: case c1: ") and "File too large" in last, r.stderr[-3000:]
    assert "the run stopped with 2 case(s) not started" in last and "--resume" in last
    assert "Traceback" not in r.stderr
    assert not any((out / c).exists() for c in ids) and _leftovers(out) == []
    if summary:
        assert "qa.png: cannot be written" in last
        rows = _rows(out / "batch_summary.csv")
        assert list(rows) == ["c1"] and rows["c1"]["status"] == "failed"
        assert rows["c1"]["error_class"] == "OutputWriteError"
    else:
        assert "the summary could not be written either" in last
        assert not (out / "batch_summary.csv").exists()


def test_output_folder_that_is_a_file_is_an_output_write_error(tmp_path, capsys):
    inp = _write_cases(tmp_path / "in", ["c1"], size=(24, 24, 8))
    (tmp_path / "out").write_text("a file")
    assert main(["batch", "-i", str(inp), "-o", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"OutputWriteError: output folder {tmp_path / 'out'}: expected a folder that can be "
                          "created or written, found: File exists"), err
    assert (tmp_path / "out").read_text() == "a file"


# -- real concurrent batch processes ----------------------------------------------------------------
def _batch_cmd(inp: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hnseg", "batch", "-i", str(inp), "-o", str(out), *FAST, *extra]


class Worker:
    def __init__(self, name: str, cmd: list[str], logs: Path):
        self.name, self.log = name, logs / f"{name}.log"
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"{self.name} did not finish in {TIMEOUT_S:.0f} s:\n{self.text()[-3000:]}")

    def text(self) -> str:
        return self.log.read_text()

    def done(self) -> list[str]:
        return DONE_RE.findall(self.text())


def _freeze_mid_case(worker: Worker, out: Path) -> Path:
    """SIGSTOP the worker while it runs a case (its temp folder exists); returns that temp folder."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            pytest.fail(f"{worker.name} exited ({worker.proc.returncode}) before it was seen mid-case:\n"
                        f"{worker.text()[-3000:]}")
        temps = list(out.glob(".*.tmp-*"))
        if temps:
            worker.proc.send_signal(signal.SIGSTOP)
            time.sleep(0.2)
            if temps[0].is_dir():
                return temps[0]
            worker.proc.send_signal(signal.SIGCONT)  # the case ended in between: catch the next one
        time.sleep(0.01)
    pytest.fail(f"{worker.name} was not seen mid-case:\n{worker.text()[-3000:]}")


@contextmanager
def _reaped(*workers: Worker):
    try:
        yield
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                w.proc.kill()
                w.proc.wait()


@pytest.mark.slow
def test_two_runs_and_a_resume_on_one_folder_do_every_case_once(tmp_path):
    ids = ["c1", "c2", "c3", "c4"]
    inp = _write_cases(tmp_path / "in", ids)
    out = tmp_path / "out"
    before = _hashes(inp)
    first = Worker("first", _batch_cmd(inp, out), tmp_path)
    with _reaped(first):
        live = _freeze_mid_case(first, out)  # a live run, in the middle of a case
        second = Worker("second", _batch_cmd(inp, out), tmp_path)
        resume = Worker("resume", _batch_cmd(inp, out, "--resume"), tmp_path)
        with _reaped(second, resume):
            assert second.wait() == 2 and resume.wait() == 2
        assert live.is_dir(), "the live run's temp folder was deleted"
        for w in (second, resume):
            assert f"BatchLockError: output folder {out} is in use by hnseg batch pid {first.proc.pid} on host " \
                   f"{HOST}" in w.text(), w.text()[-3000:]
            assert w.done() == [] and "removing" not in w.text() and "Traceback" not in w.text()
        first.proc.send_signal(signal.SIGCONT)
        assert first.wait() == 0, first.text()[-3000:]
    assert sorted(first.done()) == ids  # every case once, by the first run
    assert {c: r["status"] for c, r in _rows(out / "batch_summary.csv").items()} == {c: "ok" for c in ids}
    assert all((out / c / "report.json").is_file() for c in ids) and _leftovers(out) == []
    assert _hashes(inp) == before


@pytest.mark.slow
def test_shards_of_one_plan_run_side_by_side_and_cover_every_case_once(tmp_path):
    ids = [f"c{i}" for i in range(1, 7)]  # shard 1/2: c1 c3 c5, shard 2/2: c2 c4 c6
    inp = _write_cases(tmp_path / "in", ids)
    out = tmp_path / "out"
    first = Worker("s1", _batch_cmd(inp, out, "--shard", "1/2", "--resume"), tmp_path)
    with _reaped(first):
        live = _freeze_mid_case(first, out)
        busy = live.name.split(".tmp-")[0][1:]
        others = [Worker("s1-again", _batch_cmd(inp, out, "--shard", "1/2", "--resume"), tmp_path),
                  Worker("s2", _batch_cmd(inp, out, "--shard", "2/2", "--resume"), tmp_path),
                  Worker("other-plan", _batch_cmd(inp, out, "--shard", "1/3", "--resume"), tmp_path),
                  Worker("whole", _batch_cmd(inp, out, "--resume"), tmp_path)]
        with _reaped(*others):
            rcs = {w.name: w.wait() for w in others}
        assert rcs == {"s1-again": 0, "s2": 0, "other-plan": 2, "whole": 2}, {w.name: w.text()[-2000:] for w in others}
        assert live.is_dir(), "a live shard's temp folder was deleted"
        again, second, other_plan, whole = others
        assert f"skip {busy}: in progress in another worker (hnseg batch pid {first.proc.pid}" in again.text()
        assert "BatchLockError" in other_plan.text() and "shards of another plan" in other_plan.text()
        assert f"BatchLockError: output folder {out} is in use by hnseg batch pid" in whole.text()
        first.proc.send_signal(signal.SIGCONT)
        assert first.wait() == 0, first.text()[-3000:]
    done = first.done() + again.done() + second.done()
    assert sorted(done) == ids, {w.name: w.done() for w in (first, again, second)}  # each case exactly once
    assert busy in first.done() and sorted(second.done()) == ["c2", "c4", "c6"]
    assert all((out / c / "report.json").is_file() for c in ids) and _leftovers(out) == []
    assert other_plan.done() == [] and whole.done() == []
