"""The pipeline on the bundled task-2 case with the demo weights: the prior the weights were trained
with is the prior inference builds (also what ``hnseg prior`` writes), an empty registered mask still
predicts, the winner's overlap rule holds, TTA modes run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hnseg.interfaces.grand_challenge import discover_inputs
from hnseg.pipeline import Segmenter
from hnseg.preprocess.channels import build_channels
from hnseg.settings import PredictSettings
from hnseg.tasks import get_task
from hnseg.tasks.hntsmrg import MID_T2, REG_MASK

REPO = Path(__file__).resolve().parents[1]
CASE = REPO / "test" / "input" / "hntsmrg-task2-5100"
WEIGHTS = REPO / "weights" / "hntsmrg-task2"
TASK = get_task("hntsmrg-task2")
FAST = PredictSettings(device="cpu", folds=(0,), tta="off")


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(TASK, WEIGHTS, FAST)


@pytest.fixture(scope="module")
def case(segmenter):
    return segmenter.load(discover_inputs(CASE))


def _labels(out) -> np.ndarray:
    return sitk.GetArrayFromImage(out["mri-head-neck-segmentation"])


def test_inference_uses_the_weights_prior(segmenter, tmp_path, case):
    assert segmenter.prior == segmenter.engine.meta.prior
    # the same weights with the metadata saying "band" → inference builds the band prior instead
    band = tmp_path / "band"
    shutil.copytree(WEIGHTS, band)
    meta = json.loads((band / "hnseg_weights.json").read_text())
    meta["prior"]["kind"] = "band"
    (band / "hnseg_weights.json").write_text(json.dumps(meta))
    seg_band = Segmenter(TASK, band, FAST)
    assert seg_band.prior.kind == "band"
    box_ch = build_channels(case, segmenter.engine.meta.channels, segmenter.prior)
    band_ch = build_channels(case, seg_band.engine.meta.channels, seg_band.prior)
    assert not np.array_equal(box_ch[1], band_ch[1])
    assert np.array_equal(box_ch[0], band_ch[0])


def test_hnseg_prior_cli_writes_the_inference_channel(segmenter, case, tmp_path):
    files = discover_inputs(CASE)
    out = tmp_path / "prior.nii.gz"
    m = segmenter.prior.margin
    r = subprocess.run([sys.executable, "-m", "hnseg.cli", "prior", "--image", str(files[MID_T2]), "--mask",
                        str(files[REG_MASK]), "--kind", segmenter.prior.kind, "--margin", f"{m[0]},{m[1]},{m[2]}",
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    written = sitk.ReadImage(str(out))
    expected = build_channels(case, segmenter.engine.meta.channels, segmenter.prior)[1]
    assert np.array_equal(sitk.GetArrayFromImage(written), expected)
    assert written.GetOrigin() == case.reference.GetOrigin() and written.GetSpacing() == case.reference.GetSpacing()


def test_empty_registered_mask_gives_zero_prior_and_still_predicts(segmenter, tmp_path):
    files = discover_inputs(CASE)
    empty_dir = tmp_path / "case"
    shutil.copytree(CASE, empty_dir)
    mask_file = discover_inputs(empty_dir)[REG_MASK]
    m = sitk.ReadImage(str(mask_file))
    z = sitk.Image(m.GetSize(), m.GetPixelID())
    z.CopyInformation(m)
    sitk.WriteImage(z, str(mask_file))
    case = segmenter.load(discover_inputs(empty_dir))
    ch = build_channels(case, segmenter.engine.meta.channels, segmenter.prior)
    assert not ch[1].any()
    out = segmenter.segment(case)
    img = out["mri-head-neck-segmentation"]
    assert img.GetSize() == case.reference.GetSize() and img.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(img)).tolist()) <= {0, 1, 2}
    assert files  # the original case is untouched


def test_overlap_rule_keeps_only_components_touching_their_prior(case):
    seg = Segmenter(TASK, WEIGHTS, PredictSettings(device="cpu", folds=(0,), tta="off", prior_overlap_rule=True))
    labels = _labels(seg.segment(case))
    prior = case.array(REG_MASK)
    for k in (1, 2):
        comps, n = ndimage.label(labels == k)
        for i in range(1, n + 1):
            assert (prior[comps == i] == k).any(), f"class {k} component {i} does not touch the prior"


@pytest.mark.parametrize("tta", ["lr", "default"])
def test_tta_modes_run_and_agree_mostly(case, segmenter, tta):
    base = _labels(segmenter.segment(case))
    other = _labels(Segmenter(TASK, WEIGHTS, PredictSettings(device="cpu", folds=(0,), tta=tta)).segment(case))
    assert other.shape == base.shape
    fg = (base > 0) | (other > 0)
    assert fg.any() and (base[fg] == other[fg]).mean() > 0.8
