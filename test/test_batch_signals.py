"""``hnseg batch`` stopped by SIGTERM (Slurm / Kubernetes) or SIGINT (Ctrl-C) in the middle of a case:
the case in progress leaves no output, the summary marks it ``interrupted``, the exit code is
128 + signal number, and ``--resume`` completes the batch (docs/batch.md, "Stopping a batch").

hntsmrg-task1 demo weights, fold 0, no TTA, CPU. The phantoms of the subprocess test are 96 × 96 × 48
voxels, so that a case lasts a few seconds and the test can see it in progress (its temp folder).
"""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from hnseg.batch.run import BatchRunner
from hnseg.batch.signals import BatchInterrupted, StopSignals
from hnseg.cli import main
from hnseg.phantoms import make_mri_case
from hnseg.tasks.hntsmrg import PRE_T2

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights" / "hntsmrg-task1"
FAST = ["--task", "hntsmrg-task1", "--weights", str(WEIGHTS), "--device", "cpu", "--tta", "off", "--folds", "0"]
SPACING = (2.5, 2.5, 4.0)
CASES = ["c1", "c2", "c3"]
POLL_TIMEOUT_S = 120.0


def _write_cases(root: Path, size: tuple[int, int, int], seed: int) -> Path:
    for i, case_id in enumerate(CASES):
        path = root / case_id / f"{PRE_T2}.nii.gz"
        path.parent.mkdir(parents=True)
        image = make_mri_case(seed + i, case_id, size=size, spacing=SPACING).pre_t2
        sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(path))
    return root


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if ".tmp-" in p.name or ".part" in p.name or ".old-" in p.name]


def _batch(inp: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hnseg", "batch", "-i", str(inp), "-o", str(out), *FAST, *extra]


def _in_progress(out: Path, cases: list[str]) -> str | None:
    """The case among ``cases`` whose temp folder exists (the case being run), if any."""
    return next((c for c in cases if any(out.glob(f".{c}.tmp-*"))), None)


def _wait_mid_case(proc: subprocess.Popen, out: Path, log_file: Path) -> str:
    """Poll until the first case is finished and a later one is in progress; returns the latter."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hnseg batch exited ({proc.returncode}) before it was seen mid-case:\n"
                        f"{log_file.read_text()[-3000:]}")
        if (out / CASES[0] / "report.json").is_file():
            case = _in_progress(out, CASES[1:])
            if case is not None:
                return case
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    pytest.fail(f"hnseg batch was not seen mid-case within {POLL_TIMEOUT_S:.0f} s:\n{log_file.read_text()[-3000:]}")


def test_sigterm_mid_case_leaves_no_partial_output_and_resume_completes(tmp_path):
    inp = _write_cases(tmp_path / "in", (96, 96, 48), seed=70)
    out = tmp_path / "out"
    log_file = tmp_path / "first.log"
    with open(log_file, "w") as log_f:
        proc = subprocess.Popen(_batch(inp, out), cwd=REPO, stdout=log_f, stderr=subprocess.STDOUT)
        try:
            case = _wait_mid_case(proc, out, log_file)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log_text = log_file.read_text()
    assert rc == 143, log_text[-3000:]
    assert case == CASES[1], f"the SIGTERM was meant for {CASES[1]}, it reached {case}"
    assert (out / CASES[0] / "report.json").is_file()
    assert (out / CASES[0] / "mri-head-neck-segmentation.nii.gz").is_file()
    assert not (out / CASES[1]).exists() and not (out / CASES[2]).exists()
    assert _leftovers(out) == []
    rows = _rows(out / "batch_summary.csv")
    assert list(rows) == CASES[:2]  # the case not started is left out
    assert rows[CASES[0]]["status"] == "ok"
    assert rows[CASES[1]]["status"] == "interrupted" and rows[CASES[1]]["error_class"] == "BatchInterrupted"
    assert "SIGTERM" in rows[CASES[1]]["error_message"]
    assert f"interrupted by SIGTERM during {CASES[1]}" in log_text
    finished_mtime = (out / CASES[0] / "report.json").stat().st_mtime_ns

    again = subprocess.run(_batch(inp, out, "--resume"), cwd=REPO, capture_output=True, text=True,
                           timeout=POLL_TIMEOUT_S)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"skip {CASES[0]}: finished (report.json)" in again.stderr
    assert (out / CASES[0] / "report.json").stat().st_mtime_ns == finished_mtime
    assert all((out / c / "report.json").is_file() for c in CASES)
    assert _leftovers(out) == []
    rows = _rows(out / "batch_summary.csv")
    assert [rows[c]["status"] for c in CASES] == ["skipped", "ok", "ok"]


# -- in-process: SIGINT, the handlers' lifetime ----------------------------------------------------
def test_sigint_in_process_exits_130_and_restores_the_handlers(tmp_path, monkeypatch, caplog):
    inp = _write_cases(tmp_path / "in", (48, 48, 16), seed=80)
    out = tmp_path / "out"
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    write_case = BatchRunner._write_case

    def interrupt_c2(self, folder, values):  # Ctrl-C while c2 writes into its temp folder
        if folder.name.startswith(f".{CASES[1]}.tmp-"):
            os.kill(os.getpid(), signal.SIGINT)
        return write_case(self, folder, values)

    monkeypatch.setattr(BatchRunner, "_write_case", interrupt_c2)
    caplog.set_level(logging.INFO)
    assert main(["batch", "-i", str(inp), "-o", str(out), *FAST]) == 130
    assert {s: signal.getsignal(s) for s in before} == before
    assert (out / CASES[0] / "report.json").is_file()
    assert not (out / CASES[1]).exists() and not (out / CASES[2]).exists()
    assert _leftovers(out) == []
    rows = _rows(out / "batch_summary.csv")
    assert {c: r["status"] for c, r in rows.items()} == {CASES[0]: "ok", CASES[1]: "interrupted"}
    assert f"interrupted by SIGINT during {CASES[1]}" in [r.getMessage() for r in caplog.records]


def test_stop_signals_hold_a_signal_outside_interruptible_blocks():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)  # not interruptible: held
        assert signals.pending == signal.SIGTERM
        with pytest.raises(BatchInterrupted) as err:
            with signals.interruptible():  # the held signal is raised on entry
                pytest.fail("entered an interruptible block with a signal pending")
        assert err.value.exit_code == 143 and err.value.signal_name == "SIGTERM"
        with pytest.raises(BatchInterrupted) as err:
            with signals.interruptible():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # interrupted long before
        assert err.value.exit_code == 130 and signals.pending is None
    assert signal.getsignal(signal.SIGTERM) is before
