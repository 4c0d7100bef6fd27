"""The bundled example cases (test/input/<case>/, grand-challenge layout) give exactly the bundled
expected output (test/expected_output/<case>/) and score against test/ground_truth/<case>/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
CASES = sorted(p.name for p in (REPO / "test" / "input").iterdir() if p.is_dir())
OUT_REL = "images/mri-head-neck-segmentation/output.mha"


def test_one_case_per_implemented_task():
    from hnseg.tasks import TASKS

    assert {c.rsplit("-", 1)[0] for c in CASES} == set(TASKS)


@pytest.mark.parametrize("case", CASES)
def test_bundled_case_matches_expected_output(case, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(REPO / "test/input" / case),
                        "--output", str(out), "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    exp_dir = REPO / "test/expected_output" / case
    assert got == sorted(p.relative_to(exp_dir).as_posix() for p in exp_dir.rglob("*") if p.is_file())
    a, b = sitk.ReadImage(str(out / OUT_REL)), sitk.ReadImage(str(exp_dir / OUT_REL))
    assert (a.GetSize(), a.GetSpacing(), a.GetOrigin(), a.GetDirection(), a.GetPixelID()) == (
        b.GetSize(), b.GetSpacing(), b.GetOrigin(), b.GetDirection(), b.GetPixelID())
    # identical voxels: same weights, same code, same CPU kind (CI runs where the expectation was made)
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))

    gt = REPO / "test/ground_truth" / case / OUT_REL
    g = sitk.GetArrayFromImage(sitk.ReadImage(str(gt)))
    p = sitk.GetArrayFromImage(a)
    for label in (1, 2):
        if (g == label).any():
            dice = 2 * ((g == label) & (p == label)).sum() / ((g == label).sum() + (p == label).sum())
            assert dice > 0.5, (case, label, dice)
