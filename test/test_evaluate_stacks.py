"""SegRap-style evaluation of 4D binary stacks (hnseg.evaluation.stacks) and ``hnseg evaluate --task``.

Hand geometry for NSD: see test_surface_dice.py. Dual-grid surface cells of a box of A×B×C voxels
(z, y, x) at spacing (sz, 1, 1): corner cells ⅛√(1 + 2sz²) each, x/y edge cells √(1 + sz²)/2, z edge
cells sz·√2/2, z-face cells 1, y/x-face cells sz.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.errors import (
    CaseMatchingError,
    GridMismatchError,
    ImageDimensionError,
    MaskLabelError,
    SettingsError,
    SpacingMismatchError,
)
from hnseg.evaluation import StackReport, evaluate_stack_arrays, evaluate_stack_folders
from hnseg.evaluation import cli as eval_cli
from hnseg.tasks import get_task
from hnseg.tasks.npc import NPC_STRUCTURES, TStageOutput
from hnseg.tasks.segrap import SEGRAP_OARS

# ---------------------------------------------------------------- hand values
# 4×4×4 cube, prediction shifted by 2 voxels along z, spacing (3, 1, 1) (z, y, x).
# Layers of dual-grid cells z = 0..4: L0 = L4 = √19/2 + 6√10 + 9 (4 corners, 12 edges, 9 faces),
# L1..L3 = 6√2 + 36 (4 z-edges of 1.5√2, 12 side faces of 3). GT distances to the prediction surface:
#   layer 0 → 6 mm (prediction bottom two slices up); layer 1 → 3 mm; layers 2, 3 → 0 (shared sides);
#   layer 4: boundary ring (√19/2 + 6√10) → 0, 8 interior faces → 1 mm (side cells one voxel away),
#   centre face → 2 mm. The prediction mirrors this.
_L0 = math.sqrt(19) / 2 + 6 * math.sqrt(10) + 9
_LM = 6 * math.sqrt(2) + 36
_S = 2 * _L0 + 3 * _LM
_RING = math.sqrt(19) / 2 + 6 * math.sqrt(10)
NSD_SHIFT2 = {
    0.0: (2 * _LM + _RING) / _S,
    1.0: (2 * _LM + _RING + 8) / _S,
    2.0: (2 * _LM + _RING + 9) / _S,
    3.0: (3 * _LM + _RING + 9) / _S,
    6.0: 1.0,
}
# Dice: 64 + 64 voxels, 2 slices × 16 overlap → 2·32/128
DICE_SHIFT2 = 0.5


def cube_pair(shape=(10, 8, 8)):
    g = np.zeros(shape, np.uint8)
    g[1:5, 2:6, 2:6] = 1
    p = np.zeros(shape, np.uint8)
    p[3:7, 2:6, 2:6] = 1
    return g, p


def test_hand_values_sum_to_the_box_area():
    # S = √19 + 12√10 + 18√2 + 126 (8 corners, 24 x/y edges, 12 z edges, 18 z faces, 36 side faces)
    assert _S == pytest.approx(math.sqrt(19) + 12 * math.sqrt(10) + 18 * math.sqrt(2) + 126, rel=1e-12)
    assert NSD_SHIFT2[1.0] == pytest.approx(0.60964, abs=1e-5)


# ---------------------------------------------------------------- array level
def test_identical_stacks_give_one():
    g, _ = cube_pair()
    stack = np.stack([g, np.roll(g, 1, axis=2), np.zeros_like(g)])
    res = evaluate_stack_arrays(stack, stack.copy(), (3.0, 1.0, 1.0), ["GTVp", "Larynx", "OralCavity"])
    assert [(r["structure"], r["dice"], r["nsd"]) for r in res] == [
        ("GTVp", 1.0, 1.0), ("Larynx", 1.0, 1.0), ("OralCavity", 1.0, 1.0)
    ]
    assert [r["gt_voxels"] for r in res] == [64, 64, 0]


def test_two_voxel_z_shift_dice_and_nsd_per_structure_tolerance():
    g, p = cube_pair()
    names = ["GTVp", "Larynx", "OralCavity", "Larynx_Glottic"]
    gt = np.stack([g] * 4)
    pred = np.stack([p] * 4)
    res = {r["structure"]: r for r in evaluate_stack_arrays(gt, pred, (3.0, 1.0, 1.0), names)}
    assert {n: r["tolerance_mm"] for n, r in res.items()} == {
        "GTVp": 1.0, "Larynx": 2.0, "OralCavity": 3.0, "Larynx_Glottic": 1.0
    }
    assert all(r["dice"] == DICE_SHIFT2 for r in res.values())
    assert (res["GTVp"]["gt_voxels"], res["GTVp"]["pred_voxels"], res["GTVp"]["tp_voxels"]) == (64, 64, 32)
    assert res["GTVp"]["nsd"] == pytest.approx(NSD_SHIFT2[1.0], abs=1e-12)
    assert res["Larynx_Glottic"]["nsd"] == pytest.approx(NSD_SHIFT2[1.0], abs=1e-12)
    assert res["Larynx"]["nsd"] == pytest.approx(NSD_SHIFT2[2.0], abs=1e-12)
    assert res["OralCavity"]["nsd"] == pytest.approx(NSD_SHIFT2[3.0], abs=1e-12)
    assert NSD_SHIFT2[1.0] < NSD_SHIFT2[2.0] < NSD_SHIFT2[3.0] < 1.0
    # explicit overrides: one number for all, or a mapping
    for tol in (0.0, 6.0):
        r = evaluate_stack_arrays(gt[:1], pred[:1], (3.0, 1.0, 1.0), ["GTVp"], tolerances=tol)[0]
        assert r["nsd"] == pytest.approx(NSD_SHIFT2[tol], abs=1e-12) and r["tolerance_mm"] == tol
    r = evaluate_stack_arrays(gt[:2], pred[:2], (3.0, 1.0, 1.0), names[:2], tolerances={"GTVp": 3.0})
    assert r[0]["nsd"] == pytest.approx(NSD_SHIFT2[3.0]) and r[1]["tolerance_mm"] == 2.0


def test_one_voxel_x_shift_at_1mm_is_within_tolerance():
    g, _ = cube_pair()
    p = np.roll(g, 1, axis=2)
    res = evaluate_stack_arrays(g[None], p[None], (1.0, 1.0, 1.0), ["GTVp"])[0]
    # 48 of 64 voxels overlap; every surface cell is 0 or 1 mm from the other surface
    assert (res["dice"], res["nsd"]) == (2 * 48 / 128, 1.0)
    # the same shift along x measured as 3 mm (spacing in array axis order) drops NSD below 1
    res3 = evaluate_stack_arrays(g[None], p[None], (1.0, 1.0, 3.0), ["GTVp"])[0]
    assert res3["dice"] == 0.75 and res3["nsd"] < 1.0


def test_empty_rules():
    g, _ = cube_pair()
    e = np.zeros_like(g)
    res = evaluate_stack_arrays(
        np.stack([e, g, e]), np.stack([e, e, g]), (3.0, 1.0, 1.0), ["GTVp", "GTVnd", "Larynx"]
    )
    assert [(r["dice"], r["nsd"]) for r in res] == [(1.0, 1.0), (0.0, 0.0), (0.0, 0.0)]
    assert [(r["gt_voxels"], r["pred_voxels"]) for r in res] == [(0, 0), (64, 0), (0, 64)]


def test_array_validation():
    g, p = cube_pair()
    with pytest.raises(ValueError, match="4D"):
        evaluate_stack_arrays(g, p, (1, 1, 1), ["GTVp"])
    with pytest.raises(ValueError, match="2 volumes for 1 structures"):
        evaluate_stack_arrays(np.stack([g, g]), np.stack([p, p]), (1, 1, 1), ["GTVp"])
    with pytest.raises(ValueError, match="only 0 and 1"):
        evaluate_stack_arrays((g * 2)[None], p[None], (1, 1, 1), ["GTVp"])


def test_45_structures_on_128x128x64_is_fast():
    rng = np.random.default_rng(0)
    shape = (64, 128, 128)
    gt = np.zeros((45,) + shape, np.uint8)
    pred = np.zeros_like(gt)
    for s in range(45):
        c = rng.integers([8, 16, 16], [56, 112, 112])
        r = rng.integers(2, 8, size=3)
        lo, hi = c - r, c + r
        gt[s, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
        sh = rng.integers(-1, 2, size=3)
        pred[s, lo[0] + sh[0]:hi[0] + sh[0], lo[1] + sh[1]:hi[1] + sh[1], lo[2]:hi[2]] = 1
    gt[0, 4:60, 10:120, 10:120] = 1  # one big structure (Brain-like)
    pred[0, 5:60, 10:118, 12:120] = 1
    t0 = time.perf_counter()
    res = evaluate_stack_arrays(gt, pred, (3.0, 1.0, 1.0), list(SEGRAP_OARS))
    elapsed = time.perf_counter() - t0
    assert len(res) == 45 and all(0 < r["dice"] <= 1 and 0 < r["nsd"] <= 1 for r in res)
    assert elapsed < 5.0, elapsed


# ---------------------------------------------------------------- files
def write_stack(path: Path, stack: np.ndarray, spacing_xyz=(1.0, 1.0, 3.0), origin=(0.0, 0.0, 0.0),
                dtype=np.uint8) -> Path:
    """``stack`` is (S, z, y, x); spacing/origin are SimpleITK (x, y, z)."""
    img = sitk.GetImageFromArray(stack.astype(dtype), isVector=False)
    img.SetSpacing(tuple(spacing_xyz) + (1.0,))
    img.SetOrigin(tuple(origin) + (0.0,))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def segrap2_cases():
    """(case id, GT stack, pred stack) for segrap-task2 (GTVp, GTVnd), spacing (3, 1, 1) zyx:
    a: GTVp identical (1, 1), GTVnd both empty (1, 1)
    b: GTVp shifted 2 slices (0.5, NSD_SHIFT2[1]), GTVnd GT only (0, 0)
    c: GTVp prediction only (0, 0), GTVnd identical (1, 1)."""
    g, p = cube_pair()
    e = np.zeros_like(g)
    return [
        ("a", np.stack([g, e]), np.stack([g, e])),
        ("b", np.stack([g, g]), np.stack([p, e])),
        ("c", np.stack([e, g]), np.stack([g, g])),
    ]


GTVP_DICE = (1 + 0.5 + 0) / 3
GTVP_NSD = (1 + NSD_SHIFT2[1.0] + 0) / 3
GTVND_DICE = GTVND_NSD = 2 / 3


def write_segrap2(tmp_path: Path, layout: str) -> tuple[Path, Path]:
    gt, pr = tmp_path / "gt", tmp_path / "pred"
    for cid, g, p in segrap2_cases():
        write_stack(gt / f"{cid}.mha", g)
        if layout == "flat":
            write_stack(pr / f"{cid}.mha", p)
        else:
            write_stack(pr / cid / "images" / "gross-tumor-volume-segmentation" / "output.mha", p)
    return gt, pr


@pytest.mark.parametrize("layout", ["flat", "gc"])
def test_folder_means_by_hand(tmp_path, layout):
    gt, pr = write_segrap2(tmp_path, layout)
    report = evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    assert isinstance(report, StackReport)
    assert report.case_ids == ["a", "b", "c"] and report.structures == ["GTVp", "GTVnd"]
    p, n = report.structure("GTVp"), report.structure("GTVnd")
    assert p.mean_dice == pytest.approx(GTVP_DICE, abs=1e-12)
    assert p.mean_nsd == pytest.approx(GTVP_NSD, abs=1e-12)
    assert (n.mean_dice, n.mean_nsd) == pytest.approx((GTVND_DICE, GTVND_NSD), abs=1e-12)
    assert (p.cases_with_gt, p.cases_with_pred, n.cases_with_gt, n.cases_with_pred) == (2, 3, 2, 1)
    assert report.mean_dice == pytest.approx((GTVP_DICE + GTVND_DICE) / 2, abs=1e-12)
    assert report.mean_nsd == pytest.approx((GTVP_NSD + GTVND_NSD) / 2, abs=1e-12)
    assert report.score == pytest.approx((report.mean_dice + report.mean_nsd) / 2, abs=1e-12)
    assert report.groups == [] and report.t_stage is None
    assert [(c.case_id, c.mean_dice) for c in report.per_case] == [("a", 1.0), ("b", 0.25), ("c", 0.5)]
    b = next(r for r in report.rows if r.case_id == "b" and r.structure == "GTVp")
    assert (b.dice, b.index, b.tolerance_mm) == (0.5, 0, 1.0)
    assert b.nsd == pytest.approx(NSD_SHIFT2[1.0], abs=1e-12)

    out_csv, out_json = tmp_path / "o" / "r.csv", tmp_path / "o" / "r.json"
    report.write_csv(out_csv)
    report.write_json(out_json)
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 3 * 2 and {r["structure"] for r in rows} == {"GTVp", "GTVnd"}
    data = json.loads(out_json.read_text())
    assert data["mean_dice"] == report.mean_dice and "NaN" not in out_json.read_text()
    table = report.to_table()
    assert "GTVnd" in table and f"{report.score:.4f}" in table and "mean NSD" in table


def test_missing_and_extra_prediction_cases(tmp_path):
    gt, pr = write_segrap2(tmp_path, "flat")
    (pr / "b.mha").unlink()
    with pytest.raises(CaseMatchingError, match="no prediction") as exc:
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    assert "b (b.mha)" in str(exc.value) and str(pr) in str(exc.value) and str(gt) in str(exc.value)
    write_stack(pr / "b.mha", segrap2_cases()[1][2])
    write_stack(pr / "zz.mha", segrap2_cases()[1][2])
    with pytest.raises(CaseMatchingError, match="no ground truth") as exc:
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    assert "zz" in str(exc.value)


def test_case_ids_with_underscores_and_leading_id_fallback(tmp_path):
    gt, pr, pr2 = tmp_path / "gt", tmp_path / "pred", tmp_path / "pred2"
    cases = segrap2_cases()
    for (cid, g, p), name in zip(cases, ["segrap_0001", "segrap_0002", "segrap_0010"]):
        write_stack(gt / f"{name}.mha", g)
        write_stack(pr / name / "images" / "gross-tumor-volume-segmentation" / "output.mha", p)
    report = evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    assert report.case_ids == ["segrap_0001", "segrap_0002", "segrap_0010"]
    assert report.structure("GTVp").mean_dice == pytest.approx(GTVP_DICE, abs=1e-12)
    (pr / "segrap_0002" / "images" / "gross-tumor-volume-segmentation" / "output.mha").unlink()
    with pytest.raises(CaseMatchingError, match="segrap_0002"):
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    # flat files with a suffix after the id pair by the leading id, as for label maps
    for cid, g, p in cases:
        write_stack(pr2 / f"{cid}_pred.mha", p)
    gt2 = tmp_path / "gt2"
    for cid, g, p in cases:
        write_stack(gt2 / f"{cid}.mha", g)
    report = evaluate_stack_folders(gt2, pr2, "segrap-task2", progress=False)
    assert report.case_ids == ["a", "b", "c"] and report.rows[0].pred_file.endswith("a_pred.mha")


def test_format_errors(tmp_path):
    gt, pr = write_segrap2(tmp_path, "flat")
    g, p = cube_pair()
    # wrong number of volumes
    write_stack(pr / "a.mha", np.stack([g, g, g]))
    with pytest.raises(ImageDimensionError, match="expected 2 volumes") as exc:
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    assert "GTVp, GTVnd" in str(exc.value) and "found 3" in str(exc.value)
    # a 3D image
    img = sitk.GetImageFromArray(g)
    sitk.WriteImage(img, str(pr / "a.mha"))
    with pytest.raises(ImageDimensionError, match="4D"):
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    # non-binary values
    write_stack(pr / "a.mha", np.stack([g * 2, g]))
    with pytest.raises(MaskLabelError, match="only 0 and 1") as exc:
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    assert "0, 1, 2" in str(exc.value) and "a.mha" in str(exc.value)
    # spacing mismatch
    write_stack(pr / "a.mha", np.stack([g, g]), spacing_xyz=(1.0, 1.0, 2.5))
    with pytest.raises(SpacingMismatchError, match="case a") as exc:
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    assert "(1.0, 1.0, 2.5)" in str(exc.value) and "(1.0, 1.0, 3.0)" in str(exc.value)
    # origin / size mismatch: refused, not resampled
    write_stack(pr / "a.mha", np.stack([g, g]), origin=(0.0, 0.0, 3.0))
    with pytest.raises(GridMismatchError, match="origin"):
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    write_stack(pr / "a.mha", np.stack([g[:-1], g[:-1]]))
    with pytest.raises(GridMismatchError, match="size"):
        evaluate_stack_folders(gt, pr, "segrap-task2", progress=False)
    # float stacks holding only 0/1 are accepted
    write_stack(pr / "a.mha", segrap2_cases()[0][2], dtype=np.float32)
    assert evaluate_stack_folders(gt, pr, "segrap-task2", progress=False).n_cases == 3


# ---------------------------------------------------------------- npc-targets: groups + T stage
def t_json(probs: list[float]) -> str:
    return TStageOutput.from_probabilities(probs).model_dump_json()


def write_npc(tmp_path: Path) -> tuple[Path, Path]:
    """Two cases, all 19 structures empty in both except: GTVp in GT only (case 1) → 0 for GTVp in
    case 1; CTV70 identical (case 2). Group means: oar 1, gtv (0.5 + 1)/2 = 0.75, ctv 1."""
    gt, pr = tmp_path / "gt", tmp_path / "pred"
    g, _ = cube_pair()
    n = len(NPC_STRUCTURES)
    i_gtvp, i_ctv70 = NPC_STRUCTURES.index("GTVp"), NPC_STRUCTURES.index("CTV70")
    g1 = np.zeros((n,) + g.shape, np.uint8)
    g1[i_gtvp] = g
    g2 = np.zeros_like(g1)
    g2[i_ctv70] = g
    write_stack(gt / "1.mha", g1)
    write_stack(gt / "2.mha", g2)
    write_stack(pr / "1" / "images" / "npc-target-segmentation" / "output.mha", np.zeros_like(g1))
    write_stack(pr / "2" / "images" / "npc-target-segmentation" / "output.mha", g2)
    (gt / "1_t-stage.json").write_text(t_json([0, 1, 0, 0]))
    (gt / "2_t-stage.json").write_text(t_json([0, 0, 1, 0]))
    (pr / "1" / "t-stage.json").write_text(t_json([0.1, 0.6, 0.2, 0.1]))  # T2, correct
    (pr / "2" / "t-stage.json").write_text(t_json([0.1, 0.5, 0.3, 0.1]))  # T2, wrong (T3)
    return gt, pr


def test_npc_groups_and_t_stage(tmp_path):
    gt, pr = write_npc(tmp_path)
    report = evaluate_stack_folders(gt, pr, get_task("npc-targets"), progress=False)
    assert [(g.group, g.mean_dice, g.mean_nsd) for g in report.groups] == [
        ("oar", 1.0, 1.0), ("gtv", 0.75, 0.75), ("ctv", 1.0, 1.0)
    ]
    assert report.group("gtv").score == 0.75
    assert report.structure("GTVp").mean_dice == 0.5
    assert report.mean_dice == pytest.approx((18 + 0.5) / 19, abs=1e-12)
    t = report.t_stage
    assert t is not None and (t.n, t.accuracy) == (2, 0.5)
    # T2: positive case 1 (0.6) vs negative case 2 (0.5) → 1; T3: positive 0.3 vs 0.2 → 1
    assert t.per_class_auc == {"T1": None, "T2": 1.0, "T3": 1.0, "T4": None}
    assert t.macro_auc == 1.0
    assert t.confusion_matrix == [[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert [c.pred_file for c in t.cases] == [str(pr / "1" / "t-stage.json"), str(pr / "2" / "t-stage.json")]
    table = report.to_table()
    assert "group gtv" in table and "T stage: 2 cases" in table

    # a GT case with T stage but the prediction lacks it
    (pr / "2" / "t-stage.json").unlink()
    with pytest.raises(CaseMatchingError, match=r"no prediction.*\['2'\]"):
        evaluate_stack_folders(gt, pr, "npc-targets", progress=False)
    # no GT T stage at all: segmentation only
    (gt / "1_t-stage.json").unlink()
    (gt / "2_t-stage.json").unlink()
    assert evaluate_stack_folders(gt, pr, "npc-targets", progress=False).t_stage is None


# ---------------------------------------------------------------- CLI
def test_cli_segrap_task2(tmp_path, capsys):
    gt, pr = write_segrap2(tmp_path, "gc")
    out_json, out_csv = tmp_path / "out" / "r.json", tmp_path / "out" / "r.csv"
    rc = eval_cli.main(["--task", "segrap-task2", "--gt", str(gt), "--pred", str(pr),
                        "--json", str(out_json), "--csv", str(out_csv), "--no-progress"])
    assert rc == 0
    data = json.loads(out_json.read_text())
    assert data["task"] == "segrap-task2" and data["n_cases"] == 3
    s = {x["structure"]: x for x in data["per_structure"]}
    assert s["GTVp"]["mean_dice"] == pytest.approx(GTVP_DICE, abs=1e-12)
    assert s["GTVp"]["mean_nsd"] == pytest.approx(GTVP_NSD, abs=1e-12)
    assert s["GTVnd"]["mean_nsd"] == pytest.approx(GTVND_NSD, abs=1e-12)
    assert data["mean_dice"] == pytest.approx(7 / 12, abs=1e-12)
    assert data["score"] == pytest.approx((data["mean_dice"] + data["mean_nsd"]) / 2, abs=1e-12)
    assert len(list(csv.DictReader(out_csv.open()))) == 6
    out = capsys.readouterr().out
    assert "segrap-task2" in out and f"{data['score']:.4f}" in out


def test_cli_npc_and_errors(tmp_path, capsys):
    gt, pr = write_npc(tmp_path)
    out_json = tmp_path / "r.json"
    assert eval_cli.main(["--task", "npc-targets", "--gt", str(gt), "--pred", str(pr),
                          "--json", str(out_json), "--no-progress"]) == 0
    data = json.loads(out_json.read_text())
    assert data["t_stage"]["accuracy"] == 0.5 and data["t_stage"]["macro_auc"] == 1.0
    assert {g["group"]: g["mean_dice"] for g in data["groups"]} == {"oar": 1.0, "gtv": 0.75, "ctv": 1.0}
    capsys.readouterr()
    # user errors become one line and exit code 2
    (pr / "1" / "t-stage.json").write_text("{not json")
    assert eval_cli.main(["--task", "npc-targets", "--gt", str(gt), "--pred", str(pr), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("OutputFormatError:") and "t-stage.json" in err
    with pytest.raises(SettingsError, match="--labels"):
        eval_cli.run(eval_cli.configure_parser(__import__("argparse").ArgumentParser()).parse_args(
            ["--task", "segrap-task2", "--gt", str(gt), "--pred", str(pr), "--labels", "GTVp=1"]))
