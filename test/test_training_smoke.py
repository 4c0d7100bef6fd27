"""Training smoke test: a 4-patient phantom release → nnU-Net raw dataset (nnU-Net's own integrity
check) → plan + preprocess → one fold, a few CPU iterations → export → inference.py runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.phantoms import make_mri_case, write_gc_case, write_hntsmrg_release

REPO = Path(__file__).resolve().parents[1]


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


def test_convert_train_export_infer(tmp_path):
    release = tmp_path / "release"
    cases = [make_mri_case(100 + i, str(200 + i), size=(64, 64, 24), spacing=(3.0, 3.0, 4.0)) for i in range(4)]
    write_hntsmrg_release(cases, release)
    work, out = tmp_path / "work", tmp_path / "weights" / "hntsmrg-task2"
    env = dict(os.environ)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env.pop(k, None)
    _run([sys.executable, "-m", "hnseg.cli", "train", "--task", "hntsmrg-task2", "--release", str(release),
          "--work", str(work), "--out", str(out), "--prior", "box", "--tiny", "--tiny-patch", "16,32,32",
          "--tiny-features", "4,8,16", "--epochs", "1", "--iterations", "3", "--val-iterations", "1",
          "--folds", "0", "--n-folds", "2", "--device", "cpu"], env=env)

    raw = work / "nnUNet_raw" / "Dataset802_hntsmrgtask2"
    ds = json.loads((raw / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "T2", "1": "prior"}
    assert ds["labels"] == {"background": 0, "GTVp": 1, "GTVn": 2}
    assert ds["numTraining"] == 8  # 4 mid-RT + 4 pre-RT training-only samples
    # nnU-Net's own integrity check on the converted dataset
    check = ("from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity;"
             f"verify_dataset_integrity({str(raw)!r}, 1); print('INTEGRITY OK')")
    assert "INTEGRITY OK" in _run([sys.executable, "-c", check], env=env).stdout
    # grouped split: a patient's samples in one fold; pre-RT samples never validate
    splits = json.loads((work / "nnUNet_preprocessed" / raw.name / "splits_final.json").read_text())
    assert len(splits) == 2
    for s in splits:
        assert all(n.endswith("_mid") for n in s["val"])
        val_patients = {n.split("_")[0] for n in s["val"]}
        assert not val_patients & {n.split("_")[0] for n in s["train"]}

    meta = json.loads((out / "hnseg_weights.json").read_text())
    assert meta["prior"]["kind"] == "box" and meta["nnunet"]["folds"] == [0]
    assert meta["nnunet"]["configuration"] == "3d_tiny"
    assert meta["orientation"] == "LPS"  # the conversion's canonical orientation, recorded for inference

    case_dir, out_dir = tmp_path / "case", tmp_path / "out"
    write_gc_case(cases[0], case_dir, "hntsmrg-task2")
    _run([sys.executable, str(REPO / "inference.py"), "--input", str(case_dir), "--output", str(out_dir),
          "--weights", str(out.parent), "--device", "cpu", "--tta", "off"])
    mask = sitk.ReadImage(str(out_dir / "images/mri-head-neck-segmentation/output.mha"))
    ref = cases[0].mid_t2
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == ref.GetSize() and mask.GetSpacing() == ref.GetSpacing()
    assert set(np.unique(sitk.GetArrayFromImage(mask)).tolist()) <= {0, 1, 2}
