"""The hostile-input catalogue (issue 13, point 1): every case of ``hostile.cases.CASES`` runs in a real
subprocess under a 2 GiB RLIMIT_DATA and a 60 s hard timeout, and must be refused with

- its exact exit code (2: a refused run; batch: 1 when a case failed and the others went on);
- its named error on stderr (``<ErrorName>: <message>``), the message holding the case's fragments;
- no traceback;
- nothing new or changed under the case's folder (inputs byte-identical by sha256; output folder
  empty; batch: the bad case ``failed`` in the summary, every other case finished with its report);
- no payload marker, within 30 s wall time and under 2 GiB peak RSS (``os.wait4``).

The table and the builders are in test/hostile/ (see its ``__init__``); docs/hostile_inputs.md is
generated from the table (``python test/hostile/table.py > docs/hostile_inputs.md``). The children
run ``HNSEG_HOSTILE_JOBS`` at a time (default 2); a per-class summary ends the pytest output.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from hostile.cases import CASES
from hostile.kit import BATCH_INFRA, REPO, SUMMARY, Case, Setup
from hostile.runner import MAX_PEAK_MB, MAX_WALL_S, Execution, Outcome, Prefetcher, run_child
from hostile.summary import PLUGIN_NAME, HostileSummary
from hostile.table import render

TRACEBACK = "Traceback (most recent call last)"
LEFTOVER = ("*.part*", "*.tmp-*", "*.old-*")


@pytest.fixture(scope="session")
def hostile_summary(request) -> HostileSummary:
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is None:
        plugin = HostileSummary()
        request.config.pluginmanager.register(plugin, PLUGIN_NAME)
    return plugin


@pytest.fixture(scope="session")
def hostile_runs(request, tmp_path_factory, hostile_summary):
    """Start every selected case at once (``HNSEG_HOSTILE_JOBS`` children at a time)."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_hostile_case"]
    t0 = time.monotonic()
    pool = Prefetcher(selected, lambda c: tmp_path_factory.mktemp(f"hostile-{c.id}", numbered=True),
                      int(os.environ.get("HNSEG_HOSTILE_JOBS", "2")))
    yield pool
    pool.close()
    hostile_summary.total_s = time.monotonic() - t0


def _matches(rel: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(Path(rel).name, g) for g in globs)


def _summary_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def check(ex: Execution) -> None:
    case, setup, o = ex.case, ex.setup, ex.outcome
    tail = f"\n--- stderr (last 3000 chars) ---\n{o.stderr[-3000:]}"
    assert not o.timed_out, f"{case.id}: still running after the hard timeout (killed){tail}"
    assert o.rc == case.exit_code, f"{case.id}: exit code {o.rc}, expected {case.exit_code}{tail}"
    assert TRACEBACK not in o.stderr, f"{case.id}: a traceback on stderr{tail}"
    # the named error: the CLI's line for a refused run; batch's log line for a failed case
    prefix = f"{case.error}: "
    lines = o.stderr.splitlines()
    starts = [i for i, ln in enumerate(lines) if (ln.startswith(prefix) if case.exit_code == 2 else prefix in ln)]
    assert starts, f"{case.id}: no '{prefix}' line on stderr{tail}"
    message = "\n".join(lines[starts[-1]:]) if case.exit_code == 2 else lines[starts[-1]]  # the CLI's is last
    fragments = (*case.fragments, *setup.mention)
    assert fragments, f"{case.id}: a case must name what was wrong and where"
    for frag in fragments:
        assert frag in message, f"{case.id}: {frag!r} not in the error message: {message}"
    for text in setup.not_in_stderr:
        assert text not in o.stderr, f"{case.id}: {text!r} on stderr{tail}"
    for marker in setup.markers:
        assert not marker.exists(), f"{case.id}: the payload ran: {marker} exists"

    # nothing changed, nothing removed; only what the case allows appeared
    changed = sorted(k for k in ex.before if ex.after.get(k) != ex.before[k])
    assert not changed, f"{case.id}: changed or removed: {changed}"
    allowed = setup.allowed_new
    out_rel = setup.out.relative_to(ex.root).as_posix() if setup.out is not None else None
    if out_rel is not None:
        allowed += (out_rel,)  # the (empty) output folder itself
    if case.kind == "batch" and out_rel is not None:
        allowed += tuple(f"{out_rel}/{g}" for g in BATCH_INFRA)
        if setup.batch_ok or setup.batch_failed:
            allowed += (f"{out_rel}/{SUMMARY}",) + tuple(f"{out_rel}/{c}" for c in setup.batch_ok) + tuple(
                f"{out_rel}/{c}/*" for c in setup.batch_ok)
    new = sorted(k for k in ex.after if k not in ex.before)
    unexpected = [k for k in new if not _matches(k, allowed)]
    assert not unexpected, f"{case.id}: written although refused: {unexpected}{tail}"
    leftovers = [k for k in new if _matches(k, LEFTOVER)]
    assert not leftovers, f"{case.id}: temporary files left behind: {leftovers}"
    empty = [k for k in new if ex.after[k].endswith(":0") and not _matches(k, tuple(
        f"{out_rel}/{g}" for g in BATCH_INFRA) if out_rel else ())]
    assert not empty, f"{case.id}: empty files left behind: {empty}"

    if setup.batch_ok or setup.batch_failed:
        assert setup.out is not None
        rows = _summary_rows(setup.out / SUMMARY)
        for c in setup.batch_ok:
            assert rows[c]["status"] == "ok", f"{case.id}: case {c}: {rows[c]}"
            assert (setup.out / c / "report.json").is_file(), f"{case.id}: case {c} has no report.json"
        for c in setup.batch_failed:
            assert rows[c]["status"] == "failed" and rows[c]["error_class"] == case.error, f"{case.id}: {rows[c]}"
            for frag in (*case.fragments, *setup.mention):
                assert frag in rows[c]["error_message"], f"{case.id}: {frag!r} not in {rows[c]['error_message']}"
            assert not (setup.out / c).exists(), f"{case.id}: the failed case {c} has an output folder"

    if case.exit_code == 2:
        assert o.wall_s < MAX_WALL_S, f"{case.id}: refused after {o.wall_s:.1f} s (limit {MAX_WALL_S:.0f} s)"
    else:  # the run also segmented the good cases: the bad case's own time is in the summary
        for c in setup.batch_failed:
            seconds = float(rows[c]["seconds"])
            assert seconds < MAX_WALL_S, f"{case.id}: case {c} refused after {seconds:.1f} s"
    assert o.peak_mb < MAX_PEAK_MB, f"{case.id}: peak RSS {o.peak_mb:.0f} MB (limit {MAX_PEAK_MB:.0f} MB)"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case: Case, hostile_runs: Prefetcher, hostile_summary: HostileSummary):
    ex = hostile_runs.result(case)
    hostile_summary.record(case.id, case.cls, ex.outcome.wall_s, ex.outcome.peak_mb)
    check(ex)
    hostile_summary.passed(case.id)
    shutil.rmtree(ex.root, ignore_errors=True)  # kept only when the case failed (weights copies, bombs)


def test_catalogue_table_is_complete():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(CASES) >= 75
    for c in CASES:
        assert c.exit_code in (1, 2) and (c.exit_code == 2 or c.kind == "batch"), c.id


def test_docs_table_is_up_to_date():
    doc = REPO / "docs" / "hostile_inputs.md"
    assert doc.read_text() == render(), (
        "docs/hostile_inputs.md is out of date: python test/hostile/table.py > docs/hostile_inputs.md")


# --- the harness itself: each check can fail for the reason it names ------------------------------
def test_runner_measures_the_childs_peak_memory(tmp_path):
    """wait4's ru_maxrss is the child's own: 400 MiB written by the child shows, the parent's does not
    (this process holds far more than a bare interpreter's ~10 MB)."""
    o = run_child([sys.executable, "-c", "b = b'x' * (400 << 20)"], Setup(args=[]), tmp_path)
    assert o.rc == 0, o.stderr
    assert 400 < o.peak_mb < 450, o.peak_mb
    bare = run_child([sys.executable, "-S", "-c", "pass"], Setup(args=[]), tmp_path)
    assert bare.peak_mb < 30, bare.peak_mb


def test_runner_caps_the_childs_memory(tmp_path):
    o = run_child([sys.executable, "-c", "b = b'x' * (3 << 30)"], Setup(args=[]), tmp_path)
    assert o.rc == 1 and "MemoryError" in o.stderr, (o.rc, o.stderr[-500:])


def test_runner_kills_a_hung_child(tmp_path):
    o = run_child([sys.executable, "-c", "import time; time.sleep(60)"], Setup(args=[]), tmp_path, timeout_s=1.0)
    assert o.timed_out and o.rc == -9 and o.wall_s < 10, o


def test_runner_full_disk_fails_writes(tmp_path):
    code = "with open('big', 'wb') as f: f.write(b'x' * 4096)"
    o = run_child([sys.executable, "-c", code], Setup(args=[], fsize=1024), tmp_path)
    assert o.rc == 1 and "File too large" in o.stderr, o.stderr[-500:]


def _fake(tmp_path, rc=2, stderr="OutputWriteError: output folder /x/out: expected a writable folder\n",
          after_extra=None) -> Execution:
    case = next(c for c in CASES if c.id == "predict-output-read-only")
    before = {"in": "dir", "in/x.mha": "abc:10"}
    after = {**before, "out": "dir", **(after_extra or {})}
    return Execution(case, tmp_path, Setup(args=[], out=tmp_path / "out", mention=("/x/out",)), before, after,
                     Outcome(rc=rc, stdout="", stderr=stderr, wall_s=1.0, peak_mb=100.0, timed_out=False))


@pytest.mark.parametrize("fault, needle", [
    ({"rc": 0}, "exit code 0"),
    ({"stderr": "Traceback (most recent call last):\nOutputWriteError: output folder /x/out\n"}, "traceback"),
    ({"stderr": "WeightsError: /x/out\n"}, "no 'OutputWriteError: ' line"),
    ({"stderr": "OutputWriteError: somewhere else\n"}, "'/x/out' not in"),
    ({"after_extra": {"out/images": "dir"}}, "written although refused"),
    ({"after_extra": {"in/x.mha": "def:10"}}, "changed or removed"),
    ({"after_extra": {"out/.output.mha.part.mha": "abc:0"}}, "written although refused"),
])
def test_check_catches(fault, needle, tmp_path):
    check(_fake(tmp_path))  # the unfaulted execution passes
    with pytest.raises(AssertionError, match=needle):
        check(_fake(tmp_path, **fault))
