"""CT tasks end to end on the real nnU-Net code: phantom release (SegRap / NPC layout) → convert
(piece table) → plan → a few CPU iterations with the task's trainer → export → inference.py on a
grand-challenge case → 4D stacks on the exact CT grid, nesting, t-stage JSON, evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.evaluation import evaluate_stack_folders
from hnseg.phantoms.ct_anatomy import make_ct_case
from hnseg.phantoms.ct_layouts import write_gc_case, write_npc_release, write_segrap_release
from hnseg.predict.weights import read_metadata
from hnseg.tasks import get_task
from hnseg.tasks.npc import TStageOutput

REPO = Path(__file__).resolve().parents[1]
SIZE, SPACING = (48, 48, 24), (4.0, 4.0, 8.0)  # the phantom's ~192 mm field of view, coarsely


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


@pytest.fixture(scope="module")
def cases():
    return [make_ct_case(300 + i, f"{i:04d}", size=SIZE, spacing=SPACING) for i in range(4)]


def _train(tmp_path: Path, task: str, release: Path, *extra: str) -> Path:
    out = tmp_path / "weights" / task
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env["OMP_NUM_THREADS"] = "1"
    _run([sys.executable, "-m", "hnseg.cli", "train", "--task", task, "--release", str(release),
          "--work", str(tmp_path / "work"), "--out", str(out), "--tiny", "--tiny-patch", "16,32,32",
          "--tiny-features", "4,8,16", "--epochs", "1", "--iterations", "2", "--val-iterations", "1",
          "--folds", "0", "--n-folds", "2", "--device", "cpu", *extra], env=env)
    return out


def _infer(tmp_path: Path, case, task: str, weights: Path) -> Path:
    case_dir, out_dir, gt = tmp_path / "case", tmp_path / "pred" / case.case_id, tmp_path / "gt"
    write_gc_case(case, case_dir, task, ground_truth_dir=gt)
    _run([sys.executable, str(REPO / "inference.py"), "--input", str(case_dir), "--output", str(out_dir),
          "--weights", str(weights.parent), "--device", "cpu", "--tta", "off", "--task", task])
    return out_dir


def _check_stack(path: Path, reference: sitk.Image, n: int) -> np.ndarray:
    img = sitk.ReadImage(str(path))
    assert img.GetDimension() == 4 and img.GetPixelID() == sitk.sitkUInt8
    assert img.GetSize() == reference.GetSize() + (n,)
    assert img.GetSpacing()[:3] == reference.GetSpacing() and img.GetOrigin()[:3] == reference.GetOrigin()
    assert tuple(np.reshape(img.GetDirection(), (4, 4))[:3, :3].ravel()) == reference.GetDirection()
    arr = sitk.GetArrayFromImage(img)
    assert set(np.unique(arr).tolist()) <= {0, 1}
    return arr


def test_segrap_task2_train_export_infer(tmp_path, cases):
    release = write_segrap_release(cases, tmp_path / "release")
    weights = _train(tmp_path, "segrap-task2", release, "--weights-dtype", "float16",
                     "--minutes-per-fold", "5")
    meta = read_metadata(weights)
    assert meta.nnunet.trainer == "nnUNetTrainerDiceFocal"
    assert meta.training["weights_dtype"] == "float16"
    # float16 on disk, and nnU-Net's aliases (conv / all_modules, the decoder's encoder) still share
    # one tensor, so the file holds each weight once
    import torch

    w = torch.load(weights / "model/fold_0/checkpoint_final.pth", weights_only=True)["network_weights"]
    assert {v.dtype for v in w.values() if v.is_floating_point()} == {torch.float16}
    assert len({v.data_ptr() for v in w.values()}) <= len(w) / 2, "aliases were split by the cast"
    assert meta.encoding.mode == "pieces" and meta.encoding.structures == ("GTVp", "GTVnd")
    ds = json.loads((weights / "model/dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT", "1": "CT"}
    out = _infer(tmp_path, cases[0], "segrap-task2", weights)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "images/gross-tumor-volume-segmentation/output.mha"]
    _check_stack(out / "images/gross-tumor-volume-segmentation/output.mha", cases[0].ct, 2)


@pytest.mark.parametrize("encoding", ["pieces", "regions"])  # pieces: the default, and the demo weights'
def test_npc_targets_multitask_train_export_infer(tmp_path, cases, encoding):
    release = write_npc_release(cases, tmp_path / "release")
    weights = _train(tmp_path, "npc-targets", release, *(["--encoding", encoding] if encoding == "regions" else []))
    meta = read_metadata(weights)
    task = get_task("npc-targets")
    assert meta.nnunet.trainer == "nnUNetTrainerHnsegMultiTask"
    assert meta.encoding.mode == encoding and meta.encoding.structures == task.structures
    ds = json.loads((weights / "model/dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT", "1": "MRI"}
    if encoding == "regions":
        assert ds["labels"]["CTV63"] and set(ds["labels"]["CTV70"]) <= set(ds["labels"]["CTV63"])
    else:  # piece names list their members; every piece inside CTV70 is inside CTV63
        members = [n.split("+") for n in ds["labels"] if n != "background"]
        assert {m for ms in members for m in ms} == set(task.structures)
        assert all("CTV63" in ms for ms in members if "CTV70" in ms)
    out = _infer(tmp_path, cases[1], "npc-targets", weights)
    stack = _check_stack(out / "images/npc-target-segmentation/output.mha", cases[1].ct, 19)
    idx = {s: i for i, s in enumerate(task.structures)}
    for inner, outer in task.nested:  # holds voxel-wise, whatever the (barely trained) model says
        assert np.all(stack[idx[outer]] >= stack[idx[inner]]), (inner, outer)
    stage = TStageOutput.model_validate_json((out / "t-stage.json").read_text())
    assert set(stage.probabilities) == {"T1", "T2", "T3", "T4"}
    report = evaluate_stack_folders(tmp_path / "gt", tmp_path / "pred", task, progress=False)
    assert report.structures == list(task.structures) and report.n_cases == 1
    assert all(0.0 <= s.mean_dice <= 1.0 for s in report.per_structure)
    assert report.t_stage.n == 1
