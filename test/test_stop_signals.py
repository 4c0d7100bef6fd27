"""Issue 13, point 5: SIGTERM / SIGINT stop every stage within 10 s, registration included, and leave
nothing partial behind (``hnseg.signals``; elastix in a killable child, ``hnseg.preprocess.registration``).

Real subprocesses, measured from the signal to the exit:
- ``hnseg batch`` on an hntsmrg-task2 case that needs registration, signalled while elastix runs (its
  log file exists in the child's work folder): exit 143 within 10 s, no temp folder, no case folder, no
  elastix child left, the case ``interrupted`` in the summary;
- the registration's parent killed by SIGKILL (no clean-up code can run): the child dies with it;
- ``inference.py`` on the bundled task-1 case, signalled during the prediction: 143 / 130 within 10 s,
  one ``Interrupted:`` line, no file under the output folder.
In-process (seconds): the registration's parent interrupted while it waits stops its child and removes
the work folder; a child that fails or dies is a ``RegistrationError``; the atomic writer leaves no temp
file when a write is interrupted.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.batch.signals import BatchInterrupted
from hnseg.batch.signals import StopSignals as BatchStopSignals
from hnseg.errors import RegistrationError
from hnseg.io.write import _atomic
from hnseg.phantoms.deformed_pair import make_deformed_pair
from hnseg.preprocess import registration
from hnseg.preprocess.registration import RegistrationSettings, register_pre_to_mid
from hnseg.signals import Interrupted, StopSignals, held_signals
from hnseg.tasks.hntsmrg import MID_T2, PRE_MASK, PRE_T2

REPO = Path(__file__).resolve().parents[1]
STOP_WITHIN_S = 10.0  # the bound, from the signal to the exit
POLL_TIMEOUT_S = 240.0  # to reach the stage to interrupt (ITK's import alone takes 10-25 s)
WORKER = "hnseg.preprocess.registration_worker"


# -- helpers ---------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not reaped, counts as gone: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(what: str, found, proc: subprocess.Popen, log_file: Path):
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before {what}:\n{log_file.read_text()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail(f"not seen {what} within {POLL_TIMEOUT_S:.0f} s:\n{log_file.read_text()[-3000:]}")


def _elastix_running(parent: int, tmp: Path):
    """(worker pid, work folder) once elastix has started in the registration child (its log exists)."""
    workers = [p for p in _children(parent) if WORKER in _cmdline(p)]
    logs = list(tmp.glob("hnseg-elastix-*/elastix/elastix.log"))
    if workers and logs:
        return workers[0], logs[0].parents[1]
    return None


def _signal_and_time(proc: subprocess.Popen, signum: int) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(signum)
    try:
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, time.monotonic() - t0


def _env(tmp: Path) -> dict[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp)}  # the registration's work folder goes here: observable


def _write_registration_case(case: Path) -> None:
    pair = make_deformed_pair(7, size=(48, 48, 20), spacing=(4.0, 4.0, 6.0))
    case.mkdir(parents=True)
    for slug, img in ((MID_T2, pair.mid_image), (PRE_T2, pair.pre_image), (PRE_MASK, pair.pre_mask)):
        sitk.WriteImage(img, str(case / f"{slug}.nii.gz"))


# -- registration: the real elastix stage, subprocesses ---------------------------------------------
@pytest.mark.slow
def test_sigterm_during_registration_stops_batch_within_10_s(tmp_path):
    _write_registration_case(tmp_path / "in" / "p1")
    out, tmp, log_file = tmp_path / "out", tmp_path / "tmp", tmp_path / "batch.log"
    cmd = [sys.executable, "-m", "hnseg", "batch", "-i", str(tmp_path / "in"), "-o", str(out),
           "--task", "hntsmrg-task2", "--weights", str(REPO / "weights" / "hntsmrg-task2"), "--device", "cpu",
           "--tta", "off", "--folds", "0", "--no-qa",
           "--registration-iterations", "5000"]  # minutes of elastix: the signal lands inside it
    with open(log_file, "w") as log_f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log_f, stderr=subprocess.STDOUT, env=_env(tmp))
        worker, work = _wait_for("elastix running", lambda: _elastix_running(proc.pid, tmp), proc, log_file)
        assert _alive(worker)
        rc, seconds = _signal_and_time(proc, signal.SIGTERM)
    log_text = log_file.read_text()
    assert rc == 143, log_text[-3000:]
    print(f"batch stopped {seconds:.2f} s after SIGTERM during elastix")  # shown with -s / -rP
    assert seconds <= STOP_WITHIN_S, f"stopped {seconds:.1f} s after SIGTERM:\n{log_text[-3000:]}"
    assert not _alive(worker), f"the elastix child {worker} outlived the batch"
    assert not work.exists() and list(tmp.glob("hnseg-elastix-*")) == []  # the work folder is gone
    assert not (out / "p1").exists()  # no case folder, no temp folder or file (lock files may stay)
    assert [p.name for p in out.rglob("*") if any(m in p.name for m in (".tmp-", ".part", ".old-"))] == []
    with open(out / "batch_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["case"], r["status"], r["error_class"]) for r in rows] == [("p1", "interrupted", "BatchInterrupted")]
    assert "interrupted by SIGTERM during p1" in log_text
    assert "Traceback" not in log_text


PARENT_SCRIPT = """
import sys
import SimpleITK as sitk
from hnseg.preprocess.registration import RegistrationSettings, register_pre_to_mid
d = sys.argv[1]
images = [sitk.ReadImage(f"{d}/{name}.nii.gz") for name in sys.argv[2:5]]
register_pre_to_mid(*images, RegistrationSettings(max_iterations=5000))
"""


@pytest.mark.slow
def test_registration_child_dies_with_a_parent_killed_by_sigkill(tmp_path):
    case = tmp_path / "case"
    _write_registration_case(case)
    tmp, log_file = tmp_path / "tmp", tmp_path / "parent.log"
    with open(log_file, "w") as log_f:
        proc = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT, str(case), PRE_T2, PRE_MASK, MID_T2],
                                cwd=REPO, stdout=log_f, stderr=subprocess.STDOUT, env=_env(tmp))
        worker, _ = _wait_for("elastix running", lambda: _elastix_running(proc.pid, tmp), proc, log_file)
        rc, _ = _signal_and_time(proc, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    deadline = time.monotonic() + STOP_WITHIN_S
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), f"the elastix child {worker} outlived its parent killed by SIGKILL"


# -- registration: the parent's side, in-process (the child never reaches elastix) ------------------
@pytest.fixture(scope="module")
def pair():
    return make_deformed_pair(7, size=(24, 24, 10), spacing=(8.0, 8.0, 12.0))


@pytest.fixture
def started(monkeypatch, tmp_path):
    """The registration's temp folder in ``tmp_path``; the child processes started are recorded."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    procs: list[subprocess.Popen] = []
    run_child = registration._run_child

    def record(work):
        procs.append(run_child(work))
        return procs[-1]

    monkeypatch.setattr(registration, "_run_child", record)
    return procs


def test_interrupted_parent_stops_its_child_and_removes_the_work_folder(pair, started, tmp_path):
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            register_pre_to_mid(pair.pre_image, pair.pre_mask, pair.mid_image, RegistrationSettings())
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 1.0 + STOP_WITHIN_S
    # stopped by the parent (SIGTERM; SIGKILL after the grace if it was still starting) and reaped
    assert len(started) == 1 and started[0].returncode in (-signal.SIGTERM, -signal.SIGKILL)
    assert not _alive(started[0].pid)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_by_stop_signals_while_waiting_for_the_child(pair, started, tmp_path):
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    with BatchStopSignals() as signals, signals.interruptible():
        timer.start()
        with pytest.raises(BatchInterrupted) as err:
            register_pre_to_mid(pair.pre_image, pair.pre_mask, pair.mid_image, RegistrationSettings())
    assert err.value.exit_code == 143
    assert started[0].returncode in (-signal.SIGTERM, -signal.SIGKILL) and list(tmp_path.iterdir()) == []


def test_ctrl_c_reaches_the_child_but_only_the_parent_acts_on_it(pair, started, tmp_path):
    seen = {}

    def ctrl_c() -> None:  # a terminal sends SIGINT to the whole process group: child first, here
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("hnseg-elastix-*/elastix")) and time.monotonic() < deadline:
            time.sleep(0.05)  # the child is in its main(): its signal set-up is done
        os.kill(started[0].pid, signal.SIGINT)
        time.sleep(0.5)
        seen["child alive after its SIGINT"] = started[0].poll() is None
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=ctrl_c, daemon=True)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        register_pre_to_mid(pair.pre_image, pair.pre_mask, pair.mid_image, RegistrationSettings())
    thread.join()
    assert seen == {"child alive after its SIGINT": True}
    assert started[0].returncode == -signal.SIGTERM  # stopped by the parent, not by its own SIGINT
    assert list(tmp_path.iterdir()) == []


def test_child_that_cannot_start_is_a_registration_error(pair, started, tmp_path, monkeypatch):
    monkeypatch.setattr(registration, "CHILD_MODULE", "hnseg.no_such_registration_worker")
    with pytest.raises(RegistrationError) as err:
        register_pre_to_mid(pair.pre_image, pair.pre_mask, pair.mid_image, RegistrationSettings())
    msg = str(err.value)
    assert "exited with code 1 without a result" in msg
    assert "No module named hnseg.no_such_registration_worker" in msg
    assert list(tmp_path.iterdir()) == []


def test_child_killed_by_a_signal_is_a_registration_error(pair, started, tmp_path, monkeypatch):
    run_child = registration._run_child

    def killed(work):  # e.g. the kernel's OOM killer
        proc = run_child(work)
        proc.send_signal(signal.SIGKILL)
        return proc

    monkeypatch.setattr(registration, "_run_child", killed)
    with pytest.raises(RegistrationError, match="the elastix child process was killed by SIGKILL without a result"):
        register_pre_to_mid(pair.pre_image, pair.pre_mask, pair.mid_image, RegistrationSettings())
    assert list(tmp_path.iterdir()) == []


# -- inference.py: the prediction stage ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_prediction_stops_inference_within_10_s(tmp_path, signum, code):
    out, log_file = tmp_path / "out", tmp_path / "inference.log"
    cmd = [sys.executable, "inference.py", "--input", str(REPO / "test" / "input" / "hntsmrg-task1-5101"),
           "--output", str(out), "--weights", str(REPO / "weights" / "hntsmrg-task1"),
           "--device", "cpu"]  # full mirror TTA, 5 folds: about a minute of prediction on a CPU

    def predicting() -> bool:  # the model is loaded and nnU-Net's sliding-window progress bar runs
        text = log_file.read_text()
        return "loaded hntsmrg-task1" in text and " 1/" in text.split("loaded hntsmrg-task1", 1)[1]

    with open(log_file, "w") as log_f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log_f, stderr=subprocess.STDOUT)
        _wait_for("the prediction running", predicting, proc, log_file)
        rc, seconds = _signal_and_time(proc, signum)
    log_text = log_file.read_text()
    assert rc == code, log_text[-3000:]
    print(f"inference.py stopped {seconds:.2f} s after {signal.Signals(signum).name}")
    assert seconds <= STOP_WITHIN_S, f"stopped {seconds:.1f} s after the signal:\n{log_text[-3000:]}"
    name = signal.Signals(signum).name
    assert log_text.rstrip().splitlines()[-1].startswith(f"Interrupted: {name} received; "), log_text[-2000:]
    assert "Traceback" not in log_text and "segmented" not in log_text
    written = [p for p in out.rglob("*") if not p.is_dir()] if out.exists() else []
    assert written == []  # no output, no .output.mha.*.part.mha temp file


# -- the atomic writer's contract, the signals' classes ---------------------------------------------
def test_atomic_write_interrupted_mid_write_leaves_no_temp_file(tmp_path):
    final = tmp_path / "output.mha"
    final.write_bytes(b"the previous complete file")

    def half_write(tmp: Path) -> None:
        tmp.write_bytes(b"\0" * 4096)  # half of the file on disk under the temp name
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic(final, half_write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output.mha"]
    assert final.read_bytes() == b"the previous complete file"


def test_atomic_write_interrupted_by_a_real_sigterm_leaves_no_file(tmp_path):
    final = tmp_path / "images" / "output.mha"
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.uint8))

    def write_then_sigterm(tmp: Path) -> None:
        sitk.WriteImage(image, str(tmp))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted long before
        pytest.fail("SIGTERM did not interrupt the write")

    with StopSignals() as signals, signals.interruptible():
        with pytest.raises(Interrupted) as err:
            _atomic(final, write_then_sigterm)
    assert err.value.exit_code == 143 and type(err.value) is Interrupted
    assert list((tmp_path / "images").iterdir()) == []


def test_batch_interrupted_is_the_shared_interrupted():
    assert issubclass(BatchInterrupted, Interrupted) and issubclass(Interrupted, BaseException)
    assert not issubclass(Interrupted, Exception)  # an ``except Exception`` does not swallow it
    assert BatchInterrupted(signal.SIGINT).exit_code == 130 and BatchInterrupted(2).signal_name == "SIGINT"


def test_held_signals_deliver_the_signal_after_the_block():
    done = []
    with StopSignals() as signals, signals.interruptible():
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(Interrupted) as err:
            with held_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # not interrupted: held
                done.append("the block ran to its end")
            pytest.fail("the held SIGTERM was not raised after the block")
        assert signal.getsignal(signal.SIGTERM) == handler  # StopSignals' handler is back
    assert done == ["the block ran to its end"] and err.value.signal_name == "SIGTERM"

