"""``hnseg compare`` (test.sh's verdict): catches every kind of mismatch, passes identical folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.cli import main as cli_main
from hnseg.evaluation.compare import compare_folders

REL = "images/mri-head-neck-segmentation/output.mha"


def label_map(arr: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    img.SetOrigin((-3.0, 4.0, 10.0))
    return img


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    arr = np.zeros((6, 10, 10), np.uint8)
    arr[2:4, 2:6, 2:6] = 1
    arr[2:4, 7:9, 7:9] = 2
    exp, act = tmp_path / "expected", tmp_path / "actual"
    for root in (exp, act):
        (root / REL).parent.mkdir(parents=True)
        sitk.WriteImage(label_map(arr), str(root / REL), useCompression=True)
        (root / "results.json").write_text(json.dumps({"volume": 12.5, "labels": ["GTVp", "GTVn"]}))
    return exp, act


def verdicts_of(exp, act, **kw):
    return {v.path: (v.ok, v.detail) for v in compare_folders(exp, act, **kw)}


def test_identical_folders_match(folders, capsys):
    exp, act = folders
    v = verdicts_of(exp, act)
    assert v[REL] == (True, "identical (600 voxels, labels [0, 1, 2])")
    assert v["results.json"][0]
    assert cli_main(["compare", "--expected", str(exp), "--actual", str(act)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "MATCH"


def test_one_flipped_voxel_fails_unless_a_tolerance_allows_it(folders, capsys):
    exp, act = folders
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(act / REL)))
    arr[0, 0, 0] = 1
    sitk.WriteImage(label_map(arr), str(act / REL))
    ok, detail = verdicts_of(exp, act)[REL]
    assert not ok and detail.startswith("1 voxels differ (allowed 0); label 1 Dice 0.9846, label 2 Dice 1.0000")
    # 40 foreground voxels x 0.025 = 1 allowed
    assert verdicts_of(exp, act, max_voxel_fraction=0.025)[REL][0]
    assert cli_main(["compare", "--expected", str(exp), "--actual", str(act)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.parametrize("change, expect", [
    (lambda img: img.SetSpacing((1.0, 1.0, 2.5)), "spacing expected (1.0, 1.0, 2.0), found (1.0, 1.0, 2.5)"),
    (lambda img: img.SetOrigin((-3.0, 4.0, 10.001)), "origin expected"),
    (lambda img: img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1)), "direction expected"),
])
def test_geometry_changes_fail(folders, change, expect):
    exp, act = folders
    img = sitk.ReadImage(str(act / REL))
    change(img)
    sitk.WriteImage(img, str(act / REL))
    ok, detail = verdicts_of(exp, act, max_voxel_fraction=1.0)[REL]
    assert not ok and expect in detail


def test_pixel_type_and_size_changes_fail(folders):
    exp, act = folders
    img = sitk.Cast(sitk.ReadImage(str(act / REL)), sitk.sitkInt16)
    sitk.WriteImage(img, str(act / REL))
    assert verdicts_of(exp, act)[REL] == (False, "pixel type expected 8-bit unsigned integer, found 16-bit signed integer")
    sitk.WriteImage(label_map(np.zeros((5, 10, 10))), str(act / REL))
    assert verdicts_of(exp, act)[REL] == (False, "size expected (10, 10, 6), found (10, 10, 5)")


def test_missing_extra_and_changed_files_fail(folders):
    exp, act = folders
    shutil.move(act / REL, act / "output.mha")
    (act / "results.json").write_text(json.dumps({"volume": 12.6, "labels": ["GTVp", "GTVn"]}))
    v = verdicts_of(exp, act)
    assert v[REL] == (False, "missing from the output")
    assert v["output.mha"] == (False, "not expected (unexpected extra file)")
    assert not v["results.json"][0] and "12.6" in v["results.json"][1]


def test_json_floats_within_tolerance_match(folders):
    exp, act = folders
    (act / "results.json").write_text(json.dumps({"volume": 12.5 * (1 + 1e-9), "labels": ["GTVp", "GTVn"]}))
    assert verdicts_of(exp, act)["results.json"] == (True, "equal values")


def test_json_probabilities_one_rounding_step_apart_match(tmp_path):
    from hnseg.evaluation.compare import compare_json

    exp, act = tmp_path / "e.json", tmp_path / "a.json"
    exp.write_text(json.dumps({"probabilities": {"T1": 0.994605, "T2": 0.002726}}))
    act.write_text(json.dumps({"probabilities": {"T1": 0.994606, "T2": 0.002725}}))
    assert compare_json(exp, act) == (True, "equal values")
    act.write_text(json.dumps({"probabilities": {"T1": 0.99461, "T2": 0.002726}}))
    assert not compare_json(exp, act)[0]


def test_empty_folders_do_not_match(tmp_path, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert cli_main(["compare", "--expected", str(tmp_path / "a"), "--actual", str(tmp_path / "b")]) == 1
    assert cli_main(["compare", "--expected", str(tmp_path / "nope"), "--actual", str(tmp_path / "b")]) == 2
    assert "MissingInputError: --expected" in capsys.readouterr().err
