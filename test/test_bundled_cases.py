"""The bundled example cases (test/input/<case>/, grand-challenge layout) give exactly the bundled
expected output (test/expected_output/<case>/) and score against test/ground_truth/<case>/; the
bundled bad-input case fails with the error its EXPECTED_ERROR file names. ``test.sh`` checks the
same folders through the container."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from hnseg.evaluation.compare import compare_folders

REPO = Path(__file__).resolve().parents[1]
ALL_CASES = sorted(p.name for p in (REPO / "test" / "input").iterdir() if p.is_dir())
BAD_CASES = [c for c in ALL_CASES if (REPO / "test/expected_output" / c / "EXPECTED_ERROR").is_file()]
CASES = [c for c in ALL_CASES if c not in BAD_CASES]
OUT_REL = "images/mri-head-neck-segmentation/output.mha"


def run_inference(case: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(REPO / "test/input" / case),
                           "--output", str(out), "--device", "cpu"], capture_output=True, text=True)


def test_one_case_per_task_with_weights_and_a_bad_one():
    from hnseg.tasks import TASKS

    shipped = {t for t in TASKS if (REPO / "weights" / t / "hnseg_weights.json").is_file()}
    assert {"hntsmrg-task1", "hntsmrg-task2"} <= shipped
    assert {c.rsplit("-", 1)[0] for c in CASES} == shipped
    assert BAD_CASES == ["bad-input-unregistered-mask"]
    assert all((REPO / "test/expected_output" / c).is_dir() for c in ALL_CASES)


@pytest.mark.parametrize("case", CASES)
def test_bundled_case_matches_expected_output(case, tmp_path):
    out = tmp_path / "out"
    r = run_inference(case, out)
    assert r.returncode == 0, r.stderr[-3000:]
    # same files, same geometry, identical voxels: same weights, same code, same CPU kind (CI runs
    # where the expectation was made)
    verdicts = compare_folders(REPO / "test/expected_output" / case, out)
    assert [v.path for v in verdicts] == [OUT_REL]
    assert all(v.ok for v in verdicts), verdicts
    assert verdicts[0].detail.startswith("identical")

    g = sitk.GetArrayFromImage(sitk.ReadImage(str(REPO / "test/ground_truth" / case / OUT_REL)))
    p = sitk.GetArrayFromImage(sitk.ReadImage(str(out / OUT_REL)))
    for label in (1, 2):
        if (g == label).any():
            dice = 2 * ((g == label) & (p == label)).sum() / ((g == label).sum() + (p == label).sum())
            assert dice > 0.5, (case, label, dice)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bundled_bad_case_fails_with_its_named_error(case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = run_inference(case, out)
    error = (REPO / "test/expected_output" / case / "EXPECTED_ERROR").read_text().strip()
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(f"{error}: socket 'registered-pre-rt-head-neck-segmentation'")
    assert list(out.iterdir()) == []
