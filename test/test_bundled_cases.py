"""The bundled example cases (test/input/<case>/, grand-challenge layout) give exactly the bundled
expected output (test/expected_output/<case>/) and score against test/ground_truth/<case>/; the
bundled bad-input case fails with the error its EXPECTED_ERROR file names. ``test.sh`` checks the
same folders through the container."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.evaluation.compare import compare_folders

REPO = Path(__file__).resolve().parents[1]
ALL_CASES = sorted(p.name for p in (REPO / "test" / "input").iterdir() if p.is_dir())
BAD_CASES = [c for c in ALL_CASES if (REPO / "test/expected_output" / c / "EXPECTED_ERROR").is_file()]
CASES = [c for c in ALL_CASES if c not in BAD_CASES]


def task_of(case: str) -> str:
    return case.rsplit("-", 1)[0]


def output_rel(case: str) -> str:
    from hnseg.tasks import get_task

    (slug,) = [o.slug for o in get_task(task_of(case)).image_outputs]
    return f"images/{slug}/output.mha"


def run_env(case: str) -> dict[str, str]:
    """test/run_env/<case>.env (KEY=VALUE lines), as test.sh hands it to the container."""
    f = REPO / "test/run_env" / f"{case}.env"
    lines = f.read_text().splitlines() if f.is_file() else []
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def run_inference(case: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(REPO / "test/input" / case),
                           "--output", str(out), "--device", "cpu"], capture_output=True, text=True,
                          env={**os.environ, **run_env(case)})


def test_one_case_per_task_with_weights_and_a_bad_one():
    from hnseg.tasks import TASKS

    shipped = {t for t in TASKS if (REPO / "weights" / t / "hnseg_weights.json").is_file()}
    assert {"hntsmrg-task1", "hntsmrg-task2"} <= shipped
    assert {task_of(c) for c in CASES} == shipped
    assert BAD_CASES == ["bad-input-unregistered-mask"]
    assert all((REPO / "test/expected_output" / c).is_dir() for c in ALL_CASES)


@pytest.mark.parametrize("case", CASES)
def test_bundled_case_matches_expected_output(case, tmp_path):
    out = tmp_path / "out"
    r = run_inference(case, out)
    assert r.returncode == 0, r.stderr[-3000:]
    # same files, same geometry, identical voxels: same weights, same code, same CPU kind (CI runs
    # where the expectation was made)
    rel = output_rel(case)
    verdicts = compare_folders(REPO / "test/expected_output" / case, out)
    # the image, plus t-stage.json for the NPC task
    extra = ["t-stage.json"] if task_of(case) == "npc-targets" else []
    assert sorted(v.path for v in verdicts) == sorted([rel, *extra])
    assert all(v.ok for v in verdicts), verdicts
    assert all(v.detail.startswith("identical" if v.path == rel else "equal values") for v in verdicts), verdicts

    g = sitk.GetArrayFromImage(sitk.ReadImage(str(REPO / "test/ground_truth" / case / rel)))
    p = sitk.GetArrayFromImage(sitk.ReadImage(str(out / rel)))
    assert g.shape == p.shape
    # label maps (z, y, x): labels 1, 2; 4D binary stacks (structure, z, y, x): each volume
    masks = [(g == k, p == k) for k in (1, 2)] if g.ndim == 3 else [(g[i] > 0, p[i] > 0) for i in range(len(g))]
    dices = {i: 2 * (gm & pm).sum() / (gm.sum() + pm.sum()) for i, (gm, pm) in enumerate(masks) if gm.any()}
    if len(masks) <= 3:  # GTVs: each one found
        assert all(d > 0.5 for d in dices.values()), (case, dices)
    else:  # 45 SegRap OARs: the demo weights' bar is the mean (tiny IAC / cochleae are missed: weights/README.md)
        assert np.mean(list(dices.values())) > 0.7, (case, dices)


def test_ambiguous_case_needs_its_run_env(tmp_path):
    """A SegRap case names its task through test/run_env (the image's HNSEG_TASK); without it the
    run stops with TaskSelectionError naming both SegRap tasks and writes nothing."""
    case = next(c for c in CASES if task_of(c).startswith("segrap-"))
    assert run_env(case) == {"HNSEG_TASK": task_of(case)}
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HNSEG_TASK"}
    r = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(REPO / "test/input" / case),
                        "--output", str(out), "--device", "cpu"], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("TaskSelectionError: ") and "segrap-task1" in last and "segrap-task2" in last, last
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("case", BAD_CASES)
def test_bundled_bad_case_fails_with_its_named_error(case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = run_inference(case, out)
    error = (REPO / "test/expected_output" / case / "EXPECTED_ERROR").read_text().strip()
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(f"{error}: socket 'registered-pre-rt-head-neck-segmentation'")
    assert list(out.iterdir()) == []
