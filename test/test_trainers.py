"""hnseg's nnU-Net trainers: focal loss hand values, Dice+focal and multi-task (gradient surgery +
T-stage head) short CPU runs on a tiny synthetic dataset, and the T-stage inference helper.

The nnU-Net runs happen in this process, in one work folder per test module: nnU-Net 2.8.1 reads its
folder variables lazily, so the module fixture points them at its own folder (and puts the previous
values back afterwards) -- ``set_nnunet_dirs`` refuses a second folder once nnunetv2 is imported,
hence ``nnUNet_raw`` is set before calling it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from hnseg.training.trainers import TRAINERS_DIR, make_trainers_findable
from hnseg.training.trainers.dice_focal import FocalLoss
from hnseg.training.trainers.multitask import PieceRegionLoss, T_STAGE_TASK, left_right_patch_axis, task_layout
from hnseg.training.trainers.stage_head import (
    N_STAGE_CLASSES, StagedNetwork, map_to_preprocessed, predict_t_stage, tumor_output_channels, window_start,
)

LN = math.log

# --- discovery -----------------------------------------------------------------------------------


def test_make_trainers_findable_appends_once():
    env: dict[str, str] = {}
    make_trainers_findable(env)
    assert env["nnUNet_extTrainer"] == str(TRAINERS_DIR)
    make_trainers_findable(env)
    assert env["nnUNet_extTrainer"] == str(TRAINERS_DIR)
    env = {"nnUNet_extTrainer": "/somewhere/else"}
    make_trainers_findable(env)
    assert env["nnUNet_extTrainer"].split(os.pathsep) == ["/somewhere/else", str(TRAINERS_DIR)]


# --- focal loss: hand values ---------------------------------------------------------------------
# Two voxels, two classes, target class 0 in both:
#   voxel a logits (0, 0)    -> p_t = 1/2: focal(γ=2) = -(1/2)^2 ln(1/2) = 0.25 ln 2
#   voxel b logits (ln 3, 0) -> p_t = 3/4: focal(γ=2) = -(1/4)^2 ln(3/4) = ln(4/3) / 16
LOGITS = torch.tensor([[[0.0, LN(3)], [0.0, 0.0]]])  # (B=1, C=2, 2 voxels)
TARGET = torch.tensor([[[0, 0]]])  # (B=1, 1, 2 voxels)


def test_focal_softmax_hand_values():
    expected = (0.25 * LN(2) + LN(4 / 3) / 16) / 2
    assert float(FocalLoss(2.0)(LOGITS, TARGET)) == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx(0.0956334, abs=1e-6)
    # target given as (B, *spatial) works the same
    assert float(FocalLoss(2.0)(LOGITS, TARGET[:, 0])) == pytest.approx(expected, abs=1e-7)


def test_focal_gamma_zero_is_cross_entropy():
    ce = (LN(2) + LN(4 / 3)) / 2
    assert float(FocalLoss(0.0)(LOGITS, TARGET)) == pytest.approx(ce, abs=1e-7)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 5, 6, generator=gen)
    y = torch.randint(0, 4, (2, 1, 3, 5, 6), generator=gen)
    assert float(FocalLoss(0.0)(x, y)) == pytest.approx(float(F.cross_entropy(x, y[:, 0])), abs=1e-6)
    bx = torch.randn(2, 3, 4, 4, generator=gen)
    by = torch.rand(2, 3, 4, 4, generator=gen) > 0.5
    assert float(FocalLoss(0.0, mode="sigmoid")(bx, by)) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(bx, by.float())), abs=1e-6)


def test_focal_sigmoid_hand_values():
    # channel logits 0 with target 1 -> p_t = 1/2; logit ln 3 with target 0 -> p_t = 1 - 3/4 = 1/4
    x = torch.tensor([[[0.0, LN(3)]]])  # (B=1, C=1, 2 voxels)
    y = torch.tensor([[[1, 0]]], dtype=torch.bool)
    expected = (0.25 * LN(2) + (0.75 ** 2) * LN(4)) / 2
    assert float(FocalLoss(2.0, mode="sigmoid")(x, y)) == pytest.approx(expected, abs=1e-7)


def test_focal_masks_and_ignore_index():
    # only voxel b counts
    only_b = LN(4 / 3) / 16
    mask = torch.tensor([[[False, True]]])
    assert float(FocalLoss(2.0)(LOGITS, TARGET, loss_mask=mask)) == pytest.approx(only_b, abs=1e-7)
    tgt = torch.tensor([[[7, 0]]])  # 7 = ignore label at voxel a
    assert float(FocalLoss(2.0, ignore_index=7)(LOGITS, tgt)) == pytest.approx(only_b, abs=1e-7)
    # nothing annotated: 0, not NaN
    assert float(FocalLoss(2.0, ignore_index=0)(LOGITS, TARGET)) == 0.0
    with pytest.raises(ValueError):
        FocalLoss(-1.0)


def test_dice_focal_ignores_ignore_label_voxels():
    """Like nnU-Net: logits at ignore-label voxels do not change the loss (label maps and regions)."""
    from hnseg.training.trainers.dice_focal import DiceFocalLoss

    gen = torch.Generator().manual_seed(5)
    kw = {"batch_dice": False, "smooth": 1e-5, "ddp": False}
    x = torch.randn(2, 3, 4, 6, 6, generator=gen)
    y = torch.randint(0, 3, (2, 1, 4, 6, 6), generator=gen)
    ignore = torch.rand(2, 1, 4, 6, 6, generator=gen) < 0.3
    y = torch.where(ignore, torch.full_like(y, 3), y)  # 3 = ignore label
    x2 = torch.where(ignore, x + 5 * torch.randn(x.shape, generator=gen), x)
    lm = DiceFocalLoss(dict(kw, do_bg=False), ignore_label=3)
    assert float(lm(x, y)) == pytest.approx(float(lm(x2, y)), abs=1e-6)
    assert float(lm(x, y)) != pytest.approx(float(DiceFocalLoss(dict(kw, do_bg=False))(x, torch.where(ignore, 0, y))))

    regions = torch.rand(2, 2, 4, 6, 6, generator=gen) > 0.5
    target = torch.cat([regions, ignore], 1)  # nnU-Net appends the ignore region as the last channel
    xr = torch.randn(2, 2, 4, 6, 6, generator=gen)
    xr2 = torch.where(ignore, xr - 4, xr)
    rl = DiceFocalLoss(dict(kw, do_bg=True), regions=True, ignore_label=3)
    assert float(rl(xr, target)) == pytest.approx(float(rl(xr2, target)), abs=1e-6)
    assert float(rl(xr, target)) != pytest.approx(float(rl(xr2, torch.cat([regions, torch.zeros_like(ignore)], 1))))


# --- task layout, mirroring axis, coordinate mapping ---------------------------------------------

REGION_LABELS = {"background": 0, "CTV63": [1, 2, 3, 4], "CTV70": [2, 3, 4], "GTVp": [3], "GTVn": [4],
                 "BrainStem": [5]}
HNSEG_KEY = {"task_groups": {"oar": ["BrainStem"], "gtv": ["GTVp", "GTVn"], "ctv": ["CTV70", "CTV63"]},
             "t_stage": {"classes": ["T1", "T2", "T3", "T4"], "tumor": "GTVp"}, "task_granularity": "group"}


def test_task_layout_group_and_structure():
    ds = {"labels": REGION_LABELS, "hnseg": HNSEG_KEY}
    lay = task_layout(ds)
    assert lay.regions == ["CTV63", "CTV70", "GTVp", "GTVn", "BrainStem"]
    assert lay.tasks == {"oar": [4], "gtv": [2, 3], "ctv": [1, 0]}
    assert lay.groups == {"oar": ["oar"], "gtv": ["gtv", T_STAGE_TASK], "ctv": ["ctv"]}
    assert lay.tumor_channel == 2 and lay.stage_classes == ["T1", "T2", "T3", "T4"]

    lay = task_layout({"labels": REGION_LABELS, "hnseg": dict(HNSEG_KEY, task_granularity="structure")})
    assert lay.tasks == {"BrainStem": [4], "GTVp": [2], "GTVn": [3], "CTV70": [1], "CTV63": [0]}
    assert lay.groups == {"oar": ["BrainStem"], "gtv": ["GTVp", "GTVn", T_STAGE_TASK], "ctv": ["CTV70", "CTV63"]}

    no_stage = {k: v for k, v in HNSEG_KEY.items() if k != "t_stage"}
    lay = task_layout({"labels": REGION_LABELS, "hnseg": no_stage})
    assert lay.stage_classes is None and T_STAGE_TASK not in lay.groups["gtv"]


# the same label maps as pieces: softmax classes named by their members (hnseg.tasks.encoding)
PIECE_LABELS = {"background": 0, "CTV63": 1, "CTV70+CTV63": 2, "GTVp+CTV70+CTV63": 3, "GTVn+CTV70+CTV63": 4,
                "BrainStem": 5}


def test_task_layout_pieces():
    lay = task_layout({"labels": PIECE_LABELS, "hnseg": HNSEG_KEY})
    assert lay.regions == ["CTV63", "CTV70", "GTVp", "GTVn", "BrainStem"]
    assert lay.structure_pieces == [[1, 2, 3, 4], [2, 3, 4], [3], [4], [5]]
    assert lay.tasks == {"oar": [4], "gtv": [2, 3], "ctv": [1, 0]}
    assert lay.tumor_channel == 2 and lay.groups["gtv"] == ["gtv", T_STAGE_TASK]
    assert task_layout({"labels": REGION_LABELS, "hnseg": HNSEG_KEY}).structure_pieces is None
    with pytest.raises(ValueError, match="not a piece member"):
        task_layout({"labels": {k: v for k, v in PIECE_LABELS.items() if k != "BrainStem"}, "hnseg": HNSEG_KEY})

    class LM:
        has_regions = False
    assert tumor_output_channels({"labels": PIECE_LABELS}, LM, "GTVp") == [3]
    assert tumor_output_channels({"labels": PIECE_LABELS}, LM, "CTV70") == [2, 3, 4]
    LM.has_regions = True
    assert tumor_output_channels({"labels": REGION_LABELS}, LM, "GTVp") == [2]
    with pytest.raises(KeyError, match="GTVx"):
        tumor_output_channels({"labels": REGION_LABELS}, LM, "GTVx")


def test_piece_region_loss_hand_values():
    """Equal logits over C = 6 classes: p_s = k_s / 6 for a structure of k_s pieces. Target: one
    sample of 4 voxels labelled 0, 1, 3, 5; structures CTV63 (pieces 1-4) and BrainStem (5)."""
    loss = PieceRegionLoss([[1, 2, 3, 4], [5]], 6, batch_dice=False)
    logits = torch.zeros(1, 6, 1, 1, 4)
    target = torch.tensor([0.0, 1, 3, 5]).view(1, 1, 1, 1, 4)
    y = np.array([[0, 1, 1, 0], [0, 0, 0, 1]], float)
    p = np.array([4 / 6, 1 / 6])
    bce = np.sum([-(y[s] * LN(p[s]) + (1 - y[s]) * LN(1 - p[s])).mean() for s in range(2)])
    dice = np.mean([(2 * (y[s] * p[s]).sum() + 1e-5) / (y[s].sum() + 4 * p[s] + 1e-5) for s in range(2)])
    assert float(loss(logits, target)) == pytest.approx(bce - dice, rel=1e-6)

    # random logits: the probabilities equal the exact logsumexp form; ignore-label voxels do not count
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 3, 4, 5, generator=gen) * 4
    t = torch.randint(0, 6, (2, 1, 3, 4, 5), generator=gen).float()
    pieces = [[1, 2, 3, 4], [2, 3], [5]]
    ref_terms = []
    for v in pieces:
        inside = torch.zeros(6, dtype=torch.bool)
        inside[v] = True
        lp = torch.logsumexp(x[:, inside], 1) - torch.logsumexp(x, 1)
        lq = torch.logsumexp(x[:, ~inside], 1) - torch.logsumexp(x, 1)
        yy = inside[t[:, 0].long()]
        ref_terms.append((lp.exp(), yy, -torch.where(yy, lp, lq).mean()))
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    ref_dice = MemoryEfficientSoftDiceLoss(batch_dice=True, do_bg=True, smooth=1e-5, ddp=False)(
        torch.stack([r[0] for r in ref_terms], 1), torch.stack([r[1] for r in ref_terms], 1))
    ref = ref_dice + torch.stack([r[2] for r in ref_terms]).sum()
    assert float(PieceRegionLoss(pieces, 6, batch_dice=True)(x, t)) == pytest.approx(float(ref), rel=1e-5)
    ignored = t.clone()
    ignored[:, :, 0] = 6  # ignore label
    x2 = x.clone()
    x2[:, :, 0] = torch.randn(2, 6, 4, 5, generator=gen) * 10
    with_ignore = PieceRegionLoss(pieces, 6, batch_dice=True, ignore_label=6)
    assert float(with_ignore(x, ignored)) == pytest.approx(float(with_ignore(x2, ignored)), rel=1e-6)
    assert float(with_ignore(x, ignored)) != pytest.approx(float(with_ignore(x, t)), rel=1e-3)
    with pytest.raises(ValueError):
        PieceRegionLoss([[0, 1]], 6, batch_dice=True)
    with pytest.raises(ValueError, match="outside the 6 output channels"):
        PieceRegionLoss([[1, 6]], 6, batch_dice=True)


@pytest.mark.parametrize("change, message", [
    ({"task_groups": {"oar": ["BrainStem"], "gtv": ["GTVp", "GTVn"], "ctv": ["CTV70"]}}, "in no"),
    ({"task_groups": {"oar": ["BrainStem", "Eye_L"], "gtv": ["GTVp", "GTVn"], "ctv": ["CTV70", "CTV63"]}}, "Eye_L"),
    ({"task_groups": {"oar": ["BrainStem", "GTVp"], "gtv": ["GTVp", "GTVn"], "ctv": ["CTV70", "CTV63"]}}, "GTVp"),
    ({"task_granularity": "voxel"}, "task_granularity"),
    ({"t_stage": {"classes": ["T1", "T2"], "tumor": "GTVx"}}, "GTVx"),
])
def test_task_layout_rejects_bad_contracts(change, message):
    with pytest.raises(ValueError, match=message):
        task_layout({"labels": REGION_LABELS, "hnseg": dict(HNSEG_KEY, **change)})
    with pytest.raises(ValueError, match="hnseg"):
        task_layout({"labels": REGION_LABELS})


def test_left_right_axis():
    assert left_right_patch_axis([0, 1, 2], 3) == 2
    assert left_right_patch_axis([2, 0, 1], 3) == 0  # input x moved first
    assert left_right_patch_axis([0, 1, 2], 2) == 1  # 2D patch = volume axes 1, 2
    assert left_right_patch_axis([2, 0, 1], 2) is None  # slicing along x: no LR axis in the patch


def test_map_to_preprocessed_and_window_hand_values():
    # crop starts at (2, 5, 0); resampling 10 -> 20 along z (voxel centres: (i+0.5)*2-0.5), y, x unchanged
    p = map_to_preprocessed((6.0, 9.0, 3.0), [0, 1, 2], [[2, 12], [5, 30], [0, 40]], (10, 25, 40), (20, 25, 40))
    assert p.tolist() == pytest.approx([(4 + 0.5) * 2 - 0.5, 4.0, 3.0])
    # transpose (2, 0, 1): output axes are input (x, z, y)
    p = map_to_preprocessed((6.0, 9.0, 3.0), [2, 0, 1], [[0, 40], [0, 10], [0, 25]], (40, 10, 25), (40, 10, 25))
    assert p.tolist() == pytest.approx([3.0, 6.0, 9.0])
    # start = round-half-up(centre - (patch - 1) / 2), clamped into the axis
    assert window_start(10.0, 40, 7) == 7  # voxels 7..13, centre 10
    assert window_start(10.0, 40, 8) == 7  # 6.5 rounds up: voxels 7..14, centre 10.5
    assert window_start(9.9, 40, 8) == 6
    assert window_start(1.0, 40, 8) == 0
    assert window_start(39.0, 40, 8) == 32
    assert window_start(7.5, 16, 16) == 0
    with pytest.raises(ValueError):
        window_start(3.0, 4, 8)


# --- StagedNetwork without a dataset -------------------------------------------------------------

def _tiny_unet(deep_supervision=True):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    torch.manual_seed(0)
    return PlainConvUNet(2, 3, [4, 8, 16], torch.nn.Conv3d, [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                         [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [1, 1, 1], 5, [1, 1], conv_bias=True,
                         norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True},
                         deep_supervision=deep_supervision)


def test_staged_network_forward_is_seg_and_features_captured():
    seg = _tiny_unet()
    net = StagedNetwork(seg)
    x = torch.randn(2, 2, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    net.eval()
    with torch.no_grad():
        out, ref = net(x), seg(x)
    assert isinstance(out, list) and len(out) == len(ref) == 2
    for a, b in zip(out, ref):
        assert torch.equal(a, b)
    assert net.last_features.shape == (2, 4, 8, 16, 16)
    # the captured features are what the final 1x1 conv reads
    with torch.no_grad():
        assert torch.allclose(seg.decoder.seg_layers[-1](net.last_features), ref[0], atol=1e-6)
    # nnU-Net toggles deep supervision through network.decoder
    net.decoder.deep_supervision = False
    with torch.no_grad():
        assert torch.equal(net(x), ref[0])
    assert net.encoder is seg.encoder
    keys = list(net.state_dict())
    assert all(k.startswith(("seg.", "stage_head.")) for k in keys)
    assert {"stage_head.weight", "stage_head.bias"} <= set(keys)
    assert net.stage_head.in_features == 4 + 1 and net.stage_head.out_features == N_STAGE_CLASSES


def test_stage_logits_pooling_hand_values():
    net = StagedNetwork(_tiny_unet())
    with torch.no_grad():
        net.stage_head.weight.zero_()
        net.stage_head.bias.zero_()
        for c in range(4):  # logit c = pooled feature c; size feature on no logit
            net.stage_head.weight[c, c] = 1.0
    feats = torch.zeros(1, 4, 1, 2, 2)
    feats[0, :, 0, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    feats[0, :, 0, 1, 1] = torch.tensor([3.0, 0.0, 1.0, 8.0])
    w = torch.zeros(1, 1, 1, 2, 2)
    w[0, 0, 0, 0, 0], w[0, 0, 0, 1, 1] = 1.0, 3.0  # weighted mean = (f_a + 3 f_b) / 4
    logits = net.stage_logits(feats, w)
    assert logits[0].tolist() == pytest.approx([2.5, 0.5, 1.5, 7.0])
    with torch.no_grad():
        net.stage_head.weight.zero_()
        net.stage_head.weight[0, 4] = 1.0  # logit 0 = log1p(total weight) / 10
    assert float(net.stage_logits(feats, w)[0, 0].detach()) == pytest.approx(math.log1p(4.0) / 10)
    assert torch.isfinite(net.stage_logits(feats, torch.zeros_like(w))).all()


# --- tiny synthetic nnU-Net datasets -------------------------------------------------------------

SHAPE = (24, 40, 40)  # z, y, x
SPACING_ZYX = (2.0, 1.0, 1.0)
N_CASES = 6
STAGES = ["T1", "T2", "T3", "T4", "T2", "T3"]
STAGE_FILE_CASES = {f"case{i:02d}": (s if i != 5 else None) for i, s in enumerate(STAGES)}  # case05: unknown
TINY = {"patch_size": [16, 32, 32], "features": [4, 8, 16, 32], "batch_size": 2}
LABELMAP_LABELS = {"background": 0, "CTV63ring": 1, "CTV70ring": 2, "GTVp": 3, "GTVn": 4, "BrainStem": 5}
INTENSITY = np.array([[100.0, 220, 340, 460, 580, 700], [50.0, 60, 300, 150, 250, 400]])  # channel x piece


def _case(i: int) -> tuple[np.ndarray, np.ndarray]:
    """(channels (2, z, y, x) float32, piece label map (z, y, x) uint8): GTVp sphere of a stage-dependent
    radius inside CTV70/CTV63 shells, a GTVn sphere inside CTV70's outer shell, a BrainStem box."""
    rng = np.random.default_rng(100 + i)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    mm = lambda c: np.sqrt(((zz - c[0]) * SPACING_ZYX[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)  # noqa: E731
    r = 3.0 + int(STAGES[i][1]) * 1.2
    c = (12 + rng.integers(-2, 3), 18 + rng.integers(-3, 4), 16 + rng.integers(-3, 4))
    d = mm(c)
    lab = np.zeros(SHAPE, np.uint8)
    lab[d <= r + 9] = 1
    lab[d <= r + 4] = 2
    lab[d <= r] = 3
    lab[mm((c[0], c[1] + 2, c[2] + r + 2.5)) <= 2.5] = 4
    lab[2:10, 30:36, 28:34] = 5
    img = INTENSITY[:, lab] + rng.normal(0, 15, (2, *SHAPE))
    return img.astype(np.float32), lab


def _write(arr: np.ndarray, path: Path) -> None:
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(tuple(float(s) for s in SPACING_ZYX[::-1]))
    sitk.WriteImage(im, str(path))


def _write_raw(raw: Path, dataset: str, labels: dict, extra: dict) -> Path:
    d = raw / dataset
    (d / "imagesTr").mkdir(parents=True)
    (d / "labelsTr").mkdir()
    for i in range(N_CASES):
        img, lab = _case(i)
        for c in range(2):
            _write(img[c], d / "imagesTr" / f"case{i:02d}_{c:04d}.nii.gz")
        _write(lab, d / "labelsTr" / f"case{i:02d}.nii.gz")
    ds = {"channel_names": {"0": "CT", "1": "MRI"}, "labels": labels, "numTraining": N_CASES,
          "file_ending": ".nii.gz", **extra}
    (d / "dataset.json").write_text(json.dumps(ds, indent=2))
    # fixed split: 5 training cases, 1 validation case (fold 0)
    ids = [f"case{i:02d}" for i in range(N_CASES)]
    (d / "splits_final.json").write_text(json.dumps([{"train": ids[1:], "val": ids[:1]}]))
    return d


LABELMAP_ID, REGION_ID, PIECE_ID = 911, 912, 913


@pytest.fixture(scope="module")
def nnunet_work(tmp_path_factory):
    """nnU-Net folders with a label-map dataset (911), a region dataset with the hnseg key (912) and
    the same structures as pieces (913), all planned + preprocessed with the tiny configuration."""
    from hnseg.training.nnunet_env import set_nnunet_dirs

    names = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_n_proc_DA")
    saved = {k: os.environ.get(k) for k in names}
    work = tmp_path_factory.mktemp("nnunet")
    os.environ["nnUNet_raw"] = str((work / "nnUNet_raw").resolve())  # see the module docstring
    os.environ.pop("nnUNet_n_proc_DA", None)  # the planner needs it unset (train.py sets it for CPU)
    dirs = set_nnunet_dirs(work)
    make_trainers_findable()
    try:
        from hnseg.training.plans import plan_and_preprocess

        _write_raw(dirs["nnUNet_raw"], f"Dataset{LABELMAP_ID}_TinyLabels", LABELMAP_LABELS, {})
        _write_raw(dirs["nnUNet_raw"], f"Dataset{REGION_ID}_TinyRegions", REGION_LABELS,
                   {"regions_class_order": [1, 2, 3, 4, 5], "hnseg": HNSEG_KEY})
        _write_raw(dirs["nnUNet_raw"], f"Dataset{PIECE_ID}_TinyPieces", PIECE_LABELS, {"hnseg": HNSEG_KEY})
        out = {"dirs": dirs}
        for ds_id in (LABELMAP_ID, REGION_ID, PIECE_ID):
            os.environ.pop("nnUNet_n_proc_DA", None)
            out[ds_id] = plan_and_preprocess(ds_id, tiny=TINY, num_processes=1)
        for name in (f"Dataset{REGION_ID}_TinyRegions", f"Dataset{PIECE_ID}_TinyPieces"):
            stage_file = dirs["nnUNet_preprocessed"] / name / "hnseg_t_stage.json"
            stage_file.write_text(json.dumps({"classes": ["T1", "T2", "T3", "T4"], "cases": STAGE_FILE_CASES}))
        yield out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _train(ds_id: int, plans: tuple[str, str], trainer: str, epochs: int, iterations: int) -> Path:
    from hnseg.training.train import train_fold

    return train_fold(ds_id, plans[0], plans[1], 0, trainer=trainer, epochs=epochs, iterations=iterations,
                      val_iterations=1)


def _checkpoint(fold_dir: Path) -> dict:
    return torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def dice_focal_run(nnunet_work):
    return _train(LABELMAP_ID, nnunet_work[LABELMAP_ID], "nnUNetTrainerDiceFocal", epochs=3, iterations=6)


@pytest.fixture(scope="module")
def multitask_run(nnunet_work):
    return _train(REGION_ID, nnunet_work[REGION_ID], "nnUNetTrainerHnsegMultiTask", epochs=4, iterations=6)


@pytest.fixture(scope="module")
def multitask_pieces_run(nnunet_work):
    return _train(PIECE_ID, nnunet_work[PIECE_ID], "nnUNetTrainerHnsegMultiTask", epochs=4, iterations=6)


# --- DiceFocal -----------------------------------------------------------------------------------

def test_dice_focal_trains_and_loss_decreases(dice_focal_run):
    ck = _checkpoint(dice_focal_run)
    assert ck["trainer_name"] == "nnUNetTrainerDiceFocal"
    losses = [float(v) for v in ck["logging"]["train_losses"]]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    # mirroring left as nnU-Net's default
    assert tuple(ck["inference_allowed_mirroring_axes"]) == (0, 1, 2)
    # same network as nnU-Net: exported checkpoints name the base trainer
    from hnseg.training.export import _inference_trainer_name

    assert _inference_trainer_name("nnUNetTrainerDiceFocal") == "nnUNetTrainer"


def test_dice_focal_loss_matches_nnunet_structure(nnunet_work, dice_focal_run):
    """Same deep-supervision weights and Dice settings as nnU-Net's _build_loss; loss = Dice + focal."""
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    plans_id, config = nnunet_work[LABELMAP_ID]
    t = get_trainer_from_args(str(LABELMAP_ID), config, 1, "nnUNetTrainerDiceFocal", plans_id,
                              device=torch.device("cpu"))
    t.initialize()
    ref = super(type(t), t)._build_loss()  # nnU-Net's own loss
    assert isinstance(t.loss, DeepSupervisionWrapper)
    assert t.loss.weight_factors == pytest.approx(ref.weight_factors)
    assert t.loss.weight_factors[-1] == 0 and sum(t.loss.weight_factors) == pytest.approx(1.0)
    dc, ref_dc = t.loss.loss.dc, ref.loss.dc
    assert (dc.batch_dice, dc.do_bg, dc.smooth, dc.ddp) == (ref_dc.batch_dice, False, 1e-5, False)
    assert t.loss.loss.focal.gamma == 2.0 and t.loss.loss.focal.mode == "softmax"
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 4, 8, 8, generator=gen)
    y = torch.randint(0, 6, (2, 1, 4, 8, 8), generator=gen)
    expected = float(ref_dc(x, y)) + float(FocalLoss(2.0)(x, y))
    assert float(t.loss.loss(x, y)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("ds, trainer, parent", [
    (LABELMAP_ID, "nnUNetTrainerDiceFocalAdam", "nnUNetTrainerDiceFocal"),
    (REGION_ID, "nnUNetTrainerHnsegMultiTaskAdam", "nnUNetTrainerHnsegMultiTask"),
])
def test_adamw_variants_change_only_the_optimizer(nnunet_work, ds, trainer, parent):
    """AdamW (lr 3e-3, wd 3e-5, AMSGrad) with nnU-Net's poly decay; the loss is the parent's."""
    from nnunetv2.run.run_training import get_trainer_from_args

    plans_id, config = nnunet_work[ds]
    t = get_trainer_from_args(str(ds), config, 1, trainer, plans_id, device=torch.device("cpu"))
    t.initialize()
    assert type(t).__mro__[2].__name__ == parent
    opt = t.optimizer
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["amsgrad"]) == (3e-3, 3e-5, True)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(
        p.numel() for p in t.network.parameters())
    t.lr_scheduler.step(t.num_epochs // 2)
    assert group["lr"] == pytest.approx(3e-3 * 0.5 ** 0.9)
    ref = get_trainer_from_args(str(ds), config, 1, parent, plans_id, device=torch.device("cpu"))
    ref.initialize()
    assert type(t.loss) is type(ref.loss) and isinstance(ref.optimizer, torch.optim.SGD)


# --- multi-task ----------------------------------------------------------------------------------

def test_multitask_trains_with_surgery(multitask_run):
    ck = _checkpoint(multitask_run)
    assert ck["trainer_name"] == "nnUNetTrainerHnsegMultiTask"
    losses = [float(v) for v in ck["logging"]["train_losses"]]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    keys = set(ck["network_weights"])
    assert {"stage_head.weight", "stage_head.bias"} <= keys
    assert all(k.startswith(("seg.", "stage_head.")) for k in keys)
    assert ck["network_weights"]["stage_head.weight"].shape == (N_STAGE_CLASSES, 4 + 1)
    # no left-right (x, last axis) mirroring, neither in training nor in the stored TTA axes
    assert tuple(ck["inference_allowed_mirroring_axes"]) == (0, 1)
    logs = list(multitask_run.glob("training_log_*.txt"))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert "mirror axes without left-right axis 2: (0, 1)" in log
    assert "gradient surgery: conflicts within" in log

    slog = json.loads((multitask_run / "hnseg_surgery_log.json").read_text())
    assert [e["epoch"] for e in slog] == [0, 1, 2, 3]
    for e in slog:
        assert e["tasks"] == ["oar", "gtv", "ctv", T_STAGE_TASK]
        assert e["groups"] == {"oar": ["oar"], "gtv": ["gtv", T_STAGE_TASK], "ctv": ["ctv"]}
        assert e["iterations"] == 6 and e["skipped_steps"] == 0
        assert set(e["cosine_across_mean"]) == {"oar/gtv", "oar/ctv", "gtv/ctv"}
        assert all(-1.0 <= c <= 1.0 for c in e["cosine_across_mean"].values())
        assert 0 <= e["conflicts_within_mean"] <= 1 and 0 <= e["conflicts_across_mean"] <= 3
        assert e["grad_norm_mean"] > 0
        assert set(e["task_loss_mean"]) == {"oar", "gtv", "ctv", T_STAGE_TASK}
    # the GTVp patch is almost always sampled: the T-stage task trained
    assert sum(e["stage_batches"] for e in slog) > 0
    assert slog[-1]["task_loss_mean"]["gtv"] < slog[0]["task_loss_mean"]["gtv"]


def test_multitask_network_round_trip(multitask_run):
    from nnunetv2.run.run_training import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    base = multitask_run.parent
    plans = PlansManager(json.loads((base / "plans.json").read_text()))
    ds = json.loads((base / "dataset.json").read_text())
    cm = plans.get_configuration("3d_tiny")
    cls = recursive_find_trainer_class_by_name("nnUNetTrainerHnsegMultiTask")
    n_in = determine_num_input_channels(plans, cm, ds)
    n_out = plans.get_label_manager(ds).num_segmentation_heads
    assert n_out == 5
    a = cls.build_network_architecture(plans, cm, n_in, n_out, enable_deep_supervision=False)
    b = cls.build_network_architecture(plans, cm, n_in, n_out, enable_deep_supervision=False)
    weights = _checkpoint(multitask_run)["network_weights"]
    a.load_state_dict(weights)
    b.load_state_dict(a.state_dict())
    assert a.state_dict().keys() == weights.keys()
    for k, v in b.state_dict().items():
        assert torch.equal(v, weights[k]), k
    x = torch.randn(1, n_in, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    a.eval(), b.eval()
    with torch.no_grad():
        ya, yb = a(x), b(x)
        assert torch.equal(ya, yb) and torch.equal(ya, a.seg(x))
    assert a.last_features.shape[1] == 4


def test_multitask_train_step_is_hierarchical_surgery(nnunet_work, multitask_run, monkeypatch):
    """One train_step on a real batch: the shared gradients are hierarchical_surgery of the per-task
    gradients (tasks and losses rebuilt here from nnU-Net's own region loss), the heads get the
    gradient of the summed loss, and the returned loss is the sum of the task losses."""
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from hnseg.training.gradient_surgery import hierarchical_surgery

    plans_id, config = nnunet_work[REGION_ID]
    t = get_trainer_from_args(str(REGION_ID), config, 1, "nnUNetTrainerHnsegMultiTask", plans_id,
                              device=torch.device("cpu"))
    np.random.seed(0)  # the data loader draws cases and patches from the global generators
    torch.manual_seed(0)
    t.on_train_start()
    t.on_train_epoch_start()
    batch = next(t.dataloader_train)
    net = t.network
    named = dict(net.named_parameters())
    heads = [n for n in named if n.startswith(("seg.decoder.seg_layers.", "stage_head."))]
    shared = [n for n in named if n not in heads]
    assert len(heads) == 2 * 3 + 2 and len(shared) > 10

    out = net(batch["data"])
    target = batch["target"]
    ref = nnUNetTrainer._build_loss(t)  # nnU-Net's deep-supervised Dice + BCE for regions
    losses = {name: ref([o[:, ch] for o in out], [y[:, ch] for y in target])
              for name, ch in {"oar": [4], "gtv": [2, 3], "ctv": [1, 0]}.items()}
    w = target[0][:, 2:3].float()  # ground-truth GTVp, full resolution
    known = torch.tensor([STAGE_FILE_CASES[k] is not None for k in batch["keys"]])
    has = (w.flatten(1).sum(1) > 0) & known
    labels = torch.tensor([["T1", "T2", "T3", "T4"].index(STAGE_FILE_CASES[k])
                           for k, h in zip(batch["keys"], has) if h])
    losses[T_STAGE_TASK] = (F.cross_entropy(net.stage_logits(net.last_features[has], w[has]), labels)
                            if has.any() else torch.zeros(()))

    def flat_grad(loss, names):
        if not loss.requires_grad:
            return torch.zeros(sum(named[n].numel() for n in names))
        gs = torch.autograd.grad(loss, [named[n] for n in names], retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(named[n]) if g is None else g).reshape(-1) for n, g in zip(names, gs)])

    task_grads = {k: flat_grad(v, shared) for k, v in losses.items()}
    groups = {"oar": ["oar"], "gtv": ["gtv", T_STAGE_TASK], "ctv": ["ctv"]}
    expected_shared = hierarchical_surgery(task_grads, groups, generator=torch.Generator().manual_seed(7))
    expected_heads = flat_grad(sum(losses.values()), heads)
    expected_loss = float(sum(losses.values()).detach())
    # the surgery changes the plain summed gradient on this batch
    assert not torch.allclose(expected_shared, sum(task_grads.values()), atol=1e-6)

    captured = {}

    def fake_clip(params, max_norm, *args, **kwargs):
        assert max_norm == 12
        captured.update({n: p.grad.detach().clone() for n, p in named.items() if p.grad is not None})
        return torch.tensor(0.0)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", fake_clip)
    t._surgery_generator = torch.Generator().manual_seed(7)
    before = {n: p.detach().clone() for n, p in named.items()}
    res = t.train_step(batch)
    got_shared = torch.cat([captured[n].reshape(-1) for n in shared])
    got_heads = torch.cat([captured.get(n, torch.zeros_like(named[n])).reshape(-1) for n in heads])
    assert torch.allclose(got_shared, expected_shared, atol=1e-6, rtol=1e-4)
    assert torch.allclose(got_heads, expected_heads, atol=1e-6, rtol=1e-4)
    assert float(res["loss"]) == pytest.approx(expected_loss, rel=1e-5)
    assert any(not torch.equal(before[n], p.detach()) for n, p in named.items())  # the optimizer stepped
    rec = t._epoch_diag[-1]
    assert set(rec["losses"]) == set(losses) and rec["stage_samples"] == int(has.sum())
    t.on_train_end()


def test_predict_t_stage(multitask_run):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    make_trainers_findable()
    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(multitask_run.parent), use_folds=(0,))
    img, lab = _case(0)
    tumor = lab == 3
    p1 = predict_t_stage(predictor, img, SPACING_ZYX, tumor)
    p2 = predict_t_stage(predictor, img, SPACING_ZYX, tumor)
    assert p1.shape == (4,) and np.isfinite(p1).all() and (p1 >= 0).all()
    assert abs(p1.sum() - 1) < 1e-6
    assert np.array_equal(p1, p2)

    # coarser input grid (resampled by the preprocessor), a volume smaller than the patch in z,
    # and an empty mask (window centred on the volume)
    small = img[:, ::2]  # 12 slices at 4 mm -> 24 preprocessed slices
    p3 = predict_t_stage(predictor, small, (4.0, 1.0, 1.0), tumor[::2])
    p4 = predict_t_stage(predictor, img[:, 8:20], SPACING_ZYX, np.zeros_like(tumor[8:20]))
    for p in (p3, p4):
        assert p.shape == (4,) and np.isfinite(p).all() and abs(p.sum() - 1) < 1e-6

    # fold ensemble = mean of the per-fold probabilities
    w = predictor.list_of_parameters[0]
    w2 = {k: v.clone() for k, v in w.items()}
    w2["stage_head.bias"] = w2["stage_head.bias"] + torch.tensor([3.0, 0.0, 0.0, 0.0])
    predictor.list_of_parameters = [w2]
    q = predict_t_stage(predictor, img, SPACING_ZYX, tumor)
    assert q[0] > p1[0]
    predictor.list_of_parameters = [w, w2]
    both = predict_t_stage(predictor, img, SPACING_ZYX, tumor)
    assert both == pytest.approx((p1 + q) / 2, abs=1e-6)

    # a compiled-style wrapper (``_orig_mod``) is unwrapped
    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

    predictor.list_of_parameters = [w]
    predictor.network = Wrapped(predictor.network)
    assert np.array_equal(predict_t_stage(predictor, img, SPACING_ZYX, tumor), p1)


def test_multitask_pieces_trains_and_predicts_t_stage(nnunet_work, multitask_pieces_run):
    """The pieces encoding: softmax over the 5 pieces (+ background), per-task losses from summed
    piece probabilities, the T-stage head pooled over the GTVp pieces at inference."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    ck = _checkpoint(multitask_pieces_run)
    losses = [float(v) for v in ck["logging"]["train_losses"]]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert ck["network_weights"]["seg.decoder.seg_layers.0.weight"].shape[0] == 6  # background + 5 pieces
    slog = json.loads((multitask_pieces_run / "hnseg_surgery_log.json").read_text())
    assert all(e["tasks"] == ["oar", "gtv", "ctv", T_STAGE_TASK] and e["skipped_steps"] == 0 for e in slog)
    assert sum(e["stage_batches"] for e in slog) > 0
    for task in ("oar", "gtv", "ctv"):
        assert slog[-1]["task_loss_mean"][task] < slog[0]["task_loss_mean"][task], task

    make_trainers_findable()
    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(multitask_pieces_run.parent), use_folds=(0,))
    img, lab = _case(0)
    p = predict_t_stage(predictor, img, SPACING_ZYX, lab == 3)
    assert p.shape == (4,) and np.isfinite(p).all() and abs(p.sum() - 1) < 1e-6
    assert np.array_equal(p, predict_t_stage(predictor, img, SPACING_ZYX, lab == 3))


def test_pretrained_start_transfers_all_but_outputs(nnunet_work, dice_focal_run):
    """A multi-task pieces run started from the label-map Dice+focal checkpoint (same architecture):
    every encoder/decoder tensor equals the checkpoint's; the output layers (6 pieces vs 6 labels: same
    shape, still not copied) and the T-stage head keep their own; the start is recorded; another
    architecture is refused by key name."""
    from hnseg.training.pretrained import PretrainedWeightsError, load_pretrained
    from hnseg.training.train import train_fold

    source = _checkpoint(dice_focal_run)["network_weights"]
    ckpt = dice_focal_run / "checkpoint_final.pth"
    plans_id, config = nnunet_work[PIECE_ID]
    out = train_fold(PIECE_ID, plans_id, config, 0, trainer="nnUNetTrainerHnsegMultiTaskAdam", epochs=1,
                     iterations=1, val_iterations=1, pretrained=ckpt)
    record = json.loads((out / "hnseg_training.json").read_text())["pretrained"]
    # output layers (weight + bias per deep-supervision scale) and the T-stage head (weight + bias)
    assert record["path"] == str(ckpt) and record["kept_own"] == 2 + sum(1 for k in source if ".seg_layers." in k)
    assert record["transferred"] == sum(1 for k in source if ".seg_layers." not in k) > 20

    seg = _tiny_unet()
    net = StagedNetwork(seg)
    with pytest.raises(PretrainedWeightsError, match="shape|no weights"):
        load_pretrained(net, ckpt)

    # on a fresh network of the right architecture: values copied, outputs / head untouched
    from nnunetv2.run.run_training import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    base = dice_focal_run.parent
    plans = PlansManager(json.loads((base / "plans.json").read_text()))
    cls = recursive_find_trainer_class_by_name("nnUNetTrainerHnsegMultiTask")
    fresh = cls.build_network_architecture(plans, plans.get_configuration("3d_tiny"), 2, 6)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    load_pretrained(fresh, ckpt)
    for k, v in fresh.state_dict().items():
        if k.startswith("stage_head.") or ".seg_layers." in k:
            assert torch.equal(v, before[k]), k
        elif v.is_floating_point():
            assert torch.equal(v, source[k[len("seg."):]].to(v.dtype)), k
    with pytest.raises(PretrainedWeightsError, match="not found"):
        load_pretrained(fresh, base / "nothing.pth")


def test_multitask_refuses_missing_t_stage_file(nnunet_work, multitask_run):
    from nnunetv2.run.run_training import get_trainer_from_args

    plans_id, config = nnunet_work[REGION_ID]
    stage_file = nnunet_work["dirs"]["nnUNet_preprocessed"] / f"Dataset{REGION_ID}_TinyRegions" / "hnseg_t_stage.json"
    content = stage_file.read_text()
    t = get_trainer_from_args(str(REGION_ID), config, 1, "nnUNetTrainerHnsegMultiTask", plans_id,
                              device=torch.device("cpu"))
    stage_file.unlink()
    try:
        with pytest.raises(FileNotFoundError, match="hnseg_t_stage.json"):
            t.initialize()
        # a training case without an entry: refused when the split is loaded
        stage_file.write_text(json.dumps({"classes": ["T1", "T2", "T3", "T4"], "cases": {"case00": "T1"}}))
        t = get_trainer_from_args(str(REGION_ID), config, 1, "nnUNetTrainerHnsegMultiTask", plans_id,
                                  device=torch.device("cpu"))
        with pytest.raises(KeyError, match="hnseg_t_stage.json has no T stage for training cases"):
            t.on_train_start()
        stage_file.write_text(json.dumps({"classes": ["T1", "T2", "T3", "T4"], "cases": {"case00": "T9"}}))
        t = get_trainer_from_args(str(REGION_ID), config, 1, "nnUNetTrainerHnsegMultiTask", plans_id,
                                  device=torch.device("cpu"))
        with pytest.raises(ValueError, match="unknown T stages"):
            t.initialize()
    finally:
        stage_file.write_text(content)


def test_seed_trainers_resample_labels_nearest():
    """Spatial augmentation resamples the label map with one nearest-neighbour grid_sample (cost
    independent of the 46 SegRap pieces), labels stay labels, and nnU-Net's own trainer is untouched."""
    import numpy as np
    import torch
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from hnseg.training.trainers.dice_focal import nnUNetTrainerDiceFocal
    from hnseg.training.trainers.multitask import nnUNetTrainerHnsegMultiTask

    def spatial(tr):
        return [t for t in tr.transforms if isinstance(t, SpatialTransform)]

    kw = dict(patch_size=[16, 32, 32], rotation_for_DA=(-0.5, 0.5),
              deep_supervision_scales=[[1, 1, 1], [0.5, 0.5, 0.5]], mirror_axes=(0, 1),
              do_dummy_2d_data_aug=False, use_mask_for_norm=[False], is_cascaded=False,
              foreground_labels=list(range(1, 46)), regions=None, ignore_label=None)
    assert [t.mode_seg for t in spatial(nnUNetTrainer.get_training_transforms(**kw))] == ["bilinear"]
    for cls in (nnUNetTrainerDiceFocal, nnUNetTrainerHnsegMultiTask):
        tr = cls.get_training_transforms(**kw)
        assert [t.mode_seg for t in spatial(tr)] == ["nearest"], cls.__name__
    torch.manual_seed(0)
    np.random.seed(0)
    seg = torch.randint(0, 46, (1, 24, 48, 48)).to(torch.int16)
    out = tr(image=torch.randn(1, 24, 48, 48), segmentation=seg)
    got = torch.unique(out["segmentation"][0])
    assert set(got.tolist()) <= set(range(46)) and len(got) > 30
