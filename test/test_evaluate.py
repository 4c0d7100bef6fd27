"""hnseg.evaluation: DSCagg (physical volumes), per-case metrics, matching, grids, report, CLI."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from evalutils import stats as eu

from hnseg.errors import CaseMatchingError, SpacingMismatchError
from hnseg.evaluation import CasePair, EvaluationReport, evaluate_folders, evaluate_pairs
from hnseg.evaluation import cli as eval_cli
from hnseg.evaluation.matching import case_id_from_filename, match_folders
from hnseg.evaluation.metrics import (
    directed_percentile,
    directed_surface_distances,
    hd95_and_msd,
    structure_metrics,
)

LABELS = {"GTVp": 1, "GTVn": 2}
SHAPE = (6, 12, 16)  # z, y, x


def write_mask(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Path:
    """``arr`` is (z, y, x); ``spacing``/``origin`` are SimpleITK (x, y, z)."""
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def blank() -> np.ndarray:
    return np.zeros(SHAPE, np.uint8)


def put(arr: np.ndarray, label: int, n: int, start: int = 0, z: int = 2, y: int = 3) -> np.ndarray:
    """Set ``n`` voxels to ``label`` along x in row (z, y) starting at x = ``start``."""
    arr[z, y, start : start + n] = label
    return arr


def two_case_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Case 1 at 1 mm³ voxels: GTVp 10 GT, 10 pred, 10 TP. Case 2 at 8 mm³ voxels: GTVp 10 GT,
    10 pred, 5 TP. GTVn: perfect 4-voxel match in case 1 only."""
    gt, pr = tmp_path / "gt", tmp_path / "pred"
    g1 = put(put(blank(), 1, 10), 2, 4, y=7)
    write_mask(gt / "1_midRT_mask.nii.gz", g1, (1.0, 1.0, 1.0))
    write_mask(pr / "1_preRT_mask_registered.nii.gz", g1.copy(), (1.0, 1.0, 1.0))
    write_mask(gt / "2_midRT_mask.nii.gz", put(blank(), 1, 10, start=0), (2.0, 2.0, 2.0))
    write_mask(pr / "2_preRT_mask_registered.nii.gz", put(blank(), 1, 10, start=5), (2.0, 2.0, 2.0))
    return gt, pr


# ---------------------------------------------------------------- (a) physical weighting
def test_dscagg_uses_physical_volumes(tmp_path):
    gt, pr = two_case_dirs(tmp_path)
    report = evaluate_folders(gt, pr, LABELS, progress=False)
    # physical: 2*(10*1 + 5*8) / ((10+10)*1 + (10+10)*8) = 100/180 = 5/9
    assert report.dsc_agg("GTVp") == float(Fraction(5, 9))
    # voxel counting would give 2*(10+5)/40 = 3/4: the weighting changes the answer
    rows = [r for r in report.rows if r.structure == "GTVp"]
    by_voxels = 2 * sum(r.tp_voxels for r in rows) / sum(r.gt_voxels + r.pred_voxels for r in rows)
    assert by_voxels == 0.75 != report.dsc_agg("GTVp")
    assert report.dsc_agg("GTVn") == 1.0
    assert report.mean_dsc_agg == (5 / 9 + 1.0) / 2
    row2 = next(r for r in rows if r.case_id == "2")
    assert (row2.voxel_volume_mm3, row2.tp_mm3, row2.gt_mm3, row2.dsc) == (8.0, 40.0, 80.0, 0.5)
    # GTVn absent from case 2 in both: per-case DSC null, distances null
    n2 = next(r for r in report.rows if r.case_id == "2" and r.structure == "GTVn")
    assert (n2.dsc, n2.hd95_mm, n2.msd_mm) == (None, None, None)


# ---------------------------------------------------------------- (b) empty GT with FPs
def test_empty_gt_false_positives_lower_dscagg(tmp_path):
    gt, pr = two_case_dirs(tmp_path)
    write_mask(gt / "3_midRT_mask.nii.gz", blank(), (1.0, 1.0, 1.0))
    write_mask(pr / "3_preRT_mask_registered.nii.gz", put(blank(), 1, 6), (1.0, 1.0, 1.0))
    report = evaluate_folders(gt, pr, LABELS, progress=False)
    # 2*50 / (180 + 6) = 50/93, lowered by exactly 5/9 - 50/93
    assert report.dsc_agg("GTVp") == float(Fraction(50, 93))
    assert Fraction(5, 9) - Fraction(50, 93) == Fraction(5, 279)
    r3 = next(r for r in report.rows if r.case_id == "3" and r.structure == "GTVp")
    assert (r3.gt_voxels, r3.pred_voxels, r3.dsc, r3.hd95_mm, r3.msd_mm) == (0, 6, 0.0, None, None)
    s = report.structures[0]
    assert (s.cases_with_gt, s.cases_with_pred) == (2, 3)


# ---------------------------------------------------------------- (c) label absent everywhere
def test_label_absent_everywhere_is_null_and_left_out_of_mean(tmp_path):
    gt, pr = two_case_dirs(tmp_path)
    labels = {"GTVp": 1, "GTVn": 2, "Other": 3}
    report = evaluate_folders(gt, pr, labels, progress=False)
    assert report.dsc_agg("Other") is None
    assert report.mean_dsc_agg == (5 / 9 + 1.0) / 2
    data = json.loads(report.to_json())
    other = next(s for s in data["structures"] if s["structure"] == "Other")
    assert other["dsc_agg"] is None and "absent" in other["note"]
    assert any("mean_dsc_agg" in n for n in data["notes"])
    assert "NaN" not in report.to_json()
    only_absent = evaluate_folders(gt, pr, {"Other": 3}, progress=False)
    assert only_absent.mean_dsc_agg is None


# ---------------------------------------------------------------- (d) HD95 / MSD with spacing
def test_plate_shift_along_3mm_axis_and_spacing_order():
    sp_zyx = (3.0, 1.0, 0.5)  # SimpleITK spacing (0.5, 1, 3) reversed
    g = np.zeros((8, 10, 12), bool)
    g[3, 2:7, 2:8] = True
    p = np.roll(g, 1, axis=0)  # one slice along z (3 mm)
    m = structure_metrics(g, p, sp_zyx)
    assert (m.dsc, m.hd95_mm, m.msd_mm) == (0.0, 3.0, 3.0)
    # a wrong (x, y, z) order would measure 0.5 mm along that axis
    assert hd95_and_msd(g, p, (0.5, 1.0, 3.0)) == (0.5, 0.5)
    # shift along x (0.5 mm): 5 of 30 voxels per side at 0.5 mm, the rest at 0
    px = np.roll(g, 1, axis=2)
    assert hd95_and_msd(g, px, sp_zyx) == (0.5, 5 / 60)


def test_box_shift_known_hd95_msd_and_agreement_with_evalutils():
    sp_zyx = (3.0, 1.0, 1.0)
    g = np.zeros((10, 14, 14), bool)
    g[2:6, 2:12, 2:12] = True  # 4 slices x 10 x 10
    p = np.roll(g, 1, axis=0)
    hd95, msd = hd95_and_msd(g, p, sp_zyx)
    # per side: 100 bottom-face voxels at 3 mm; top-face interior rings at 1, 2, 3, 3 mm
    # (28, 20, 12, 4 voxels); 108 side voxels at 0 -> mean 416/272 = 26/17, 95th pct = 3
    assert hd95 == 3.0
    assert msd == float(Fraction(416, 272))
    a, b = directed_surface_distances(g, p, sp_zyx)
    assert eu.hausdorff_distance(g, p, voxelspacing=sp_zyx) == max(a.max(), b.max())
    assert eu.modified_hausdorff_distance(g, p, voxelspacing=sp_zyx) == max(a.mean(), b.mean())
    assert eu.percentile_hausdorff_distance(g, p, 0.95, voxelspacing=sp_zyx) == hd95


def test_cropping_is_exact_near_borders():
    rng = np.random.default_rng(0)
    g = np.zeros((9, 11, 13), bool)
    p = np.zeros_like(g)
    g[0:4, 0:5, 3:9] = True  # touches the array border
    p[2:9, 4:11, 6:13] = True
    g &= rng.random(g.shape) > 0.2
    sp = (2.0, 0.7, 0.9)
    a, b = directed_surface_distances(g, p, sp)
    full = eu.hausdorff_distance_measures(g, p, voxelspacing=sp)
    assert full.distance == max(a.max(), b.max())
    assert full.modified_distance == max(a.mean(), b.mean())


def test_percentile_rank_rule_follows_deepmind_not_evalutils():
    d = np.arange(10, dtype=float)
    # DeepMind: first index whose cumulative share reaches 0.95 -> 9; evalutils int(9*0.95) -> 8
    assert directed_percentile(d) == 9.0
    assert directed_percentile(np.arange(100, dtype=float)) == 94.0


# ---------------------------------------------------------------- (e) spacing mismatch
def test_spacing_mismatch_names_files_and_spacings(tmp_path):
    g = write_mask(tmp_path / "gt" / "5_midRT_mask.nii.gz", put(blank(), 1, 4), (1.0, 1.0, 1.0))
    p = write_mask(tmp_path / "pr" / "5_pred.nii.gz", put(blank(), 1, 4), (1.0, 1.0, 1.5))
    with pytest.raises(SpacingMismatchError) as exc:
        evaluate_folders(g.parent, p.parent, LABELS, progress=False)
    msg = str(exc.value)
    assert str(g) in msg and str(p) in msg
    assert "(1.0, 1.0, 1.5)" in msg and "(1.0, 1.0, 1.0)" in msg


# ---------------------------------------------------------------- (f) origin-only difference
def test_origin_difference_is_resampled_with_warning(tmp_path, caplog):
    arr = put(put(blank(), 1, 5, start=4), 2, 3, start=4, y=8)
    g = write_mask(tmp_path / "gt" / "case7.nii.gz", arr)
    # prediction grid starts 1 mm further along x, holding the same object shifted by one voxel
    p = write_mask(tmp_path / "pr" / "case7.mha", np.roll(arr, -1, axis=2), origin=(1.0, 0.0, 0.0))
    with caplog.at_level(logging.WARNING, logger="hnseg.evaluation"):
        report = evaluate_folders(g.parent, p.parent, LABELS, progress=False)
    assert any("case7" in r.getMessage() and "resampl" in r.getMessage() for r in caplog.records)
    assert all(r.resampled for r in report.rows)
    assert [r.dsc for r in report.rows] == [1.0, 1.0]
    assert report.mean_dsc_agg == 1.0


# ---------------------------------------------------------------- (g) matching
def test_case_id_from_filename():
    assert case_id_from_filename("81_midRT_mask.nii.gz") == "81"
    assert case_id_from_filename("81_preRT_mask_registered.nii.gz") == "81"
    assert case_id_from_filename("case3.nii.gz") == "case3"
    assert case_id_from_filename("12.mha") == "12"


def test_matching_by_leading_id_and_missing_prediction(tmp_path, caplog):
    gt, pr = tmp_path / "gt", tmp_path / "pr"
    for cid in ("81", "9"):
        write_mask(gt / f"{cid}_midRT_mask.nii.gz", put(blank(), 1, 3))
    write_mask(pr / "81_preRT_mask_registered.nii.gz", put(blank(), 1, 3))
    write_mask(pr / "9_whatever.mha", put(blank(), 1, 3))
    write_mask(pr / "100_extra.nii.gz", put(blank(), 1, 3))
    with caplog.at_level(logging.WARNING, logger="hnseg.evaluation"):
        pairs = match_folders(gt, pr)
    assert [(p.case_id, p.gt.name, p.pred.name) for p in pairs] == [
        ("9", "9_midRT_mask.nii.gz", "9_whatever.mha"),
        ("81", "81_midRT_mask.nii.gz", "81_preRT_mask_registered.nii.gz"),
    ]
    assert any("100_extra.nii.gz" in r.getMessage() for r in caplog.records)

    (pr / "9_whatever.mha").unlink()
    with pytest.raises(CaseMatchingError, match="9_midRT_mask.nii.gz"):
        match_folders(gt, pr)

    write_mask(pr / "9_a.nii.gz", put(blank(), 1, 3))
    write_mask(pr / "9_b.nii.gz", put(blank(), 1, 3))
    with pytest.raises(CaseMatchingError, match="duplicate") as exc:
        match_folders(gt, pr)
    assert "9_a.nii.gz" in str(exc.value) and "9_b.nii.gz" in str(exc.value)


def test_grand_challenge_case_folder_layout(tmp_path):
    gt, pr = tmp_path / "gt", tmp_path / "pr"
    for cid in ("1", "2"):
        write_mask(gt / f"{cid}_midRT_mask.nii.gz", put(blank(), 1, 3))
        write_mask(pr / cid / "images" / "mri-head-neck-segmentation" / "output.mha", put(blank(), 1, 3))
    report = evaluate_folders(gt, pr, LABELS, progress=False)
    assert report.case_ids == ["1", "2"] and report.dsc_agg("GTVp") == 1.0
    write_mask(pr / "2" / "images" / "other" / "second.mha", put(blank(), 1, 3))
    with pytest.raises(CaseMatchingError, match="exactly one image"):
        match_folders(gt, pr)


def test_evaluate_pairs_api(tmp_path):
    gt, pr = two_case_dirs(tmp_path)
    pairs = [
        ("1", gt / "1_midRT_mask.nii.gz", pr / "1_preRT_mask_registered.nii.gz"),
        CasePair("2", gt / "2_midRT_mask.nii.gz", pr / "2_preRT_mask_registered.nii.gz"),
    ]
    report = evaluate_pairs(pairs, LABELS, progress=False)
    assert isinstance(report, EvaluationReport) and report.dsc_agg("GTVp") == 5 / 9
    with pytest.raises(CaseMatchingError, match="twice"):
        evaluate_pairs([pairs[0], pairs[0]], LABELS, progress=False)


# ---------------------------------------------------------------- (h) CLI
def test_cli_writes_json_and_csv(tmp_path, capsys):
    gt, pr = two_case_dirs(tmp_path)
    parser = eval_cli.configure_parser(argparse.ArgumentParser())
    out_json, out_csv = tmp_path / "out" / "r.json", tmp_path / "out" / "r.csv"
    args = parser.parse_args(
        ["--gt", str(gt), "--pred", str(pr), "--labels", "GTVp=1,GTVn=2",
         "--json", str(out_json), "--csv", str(out_csv), "--no-progress"]
    )
    assert eval_cli.run(args) == 0
    data = json.loads(out_json.read_text())
    assert data["n_cases"] == 2 and data["structures"][0]["dsc_agg"] == 5 / 9
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 4 and {r["structure"] for r in rows} == {"GTVp", "GTVn"}
    assert next(r for r in rows if r["case_id"] == "2" and r["structure"] == "GTVn")["dsc"] == ""
    out = capsys.readouterr().out
    assert "DSCagg" in out and "0.5556" in out and "mean DSCagg" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["--gt", "a", "--pred", "b", "--labels", "GTVp=x"])


# ---------------------------------------------------------------- (i) real HNTS-MRG masks
def test_real_registered_pre_rt_masks_vs_mid_rt(hntsmrg_real):
    t0 = time.perf_counter()
    report = evaluate_folders(
        hntsmrg_real / "groundtruth_masks", hntsmrg_real / "prediction_masks", LABELS, progress=False
    )
    elapsed = time.perf_counter() - t0
    assert report.n_cases == 15
    p, n = report.dsc_agg("GTVp"), report.dsc_agg("GTVn")
    assert 0 < p < 1 and 0 < n < 1
    assert round(p, 4) == 0.2252
    assert round(n, 4) == 0.7249
    assert round(report.mean_dsc_agg, 4) == 0.4751
    # voxel counting instead of physical volumes gives different numbers on these mixed spacings
    rows = [r for r in report.rows if r.structure == "GTVp"]
    by_voxels = 2 * sum(r.tp_voxels for r in rows) / sum(r.gt_voxels + r.pred_voxels for r in rows)
    assert round(by_voxels, 4) == 0.2432
    assert not any(r.resampled for r in report.rows)
    assert elapsed < 30
