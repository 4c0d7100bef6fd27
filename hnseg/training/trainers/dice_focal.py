"""``nnUNetTrainerDiceFocal``: nnU-Net with soft Dice + focal loss (γ = 2), the SegRap seed poster's loss.

Only the loss changes (``_build_loss``) — plus no left-right mirroring for lateralised labels, which
mirroring would swap (Parotid_L ↔ Parotid_R); network, augmentation and everything else are
nnU-Net's, so ``hnseg.training.export._inference_trainer_name`` stores plain ``nnUNetTrainer`` in
exported checkpoints.

Loss per deep-supervision output = soft Dice + focal, equal weights (1 and 1):

* soft Dice: ``MemoryEfficientSoftDiceLoss`` exactly as nnU-Net's ``_build_loss`` configures it
  (``batch_dice`` from the configuration, ``smooth=1e-5``, ``ddp=self.is_ddp`` -- False on one
  device; ``do_bg=False`` with softmax over labels, ``do_bg=True`` for region-based datasets, which
  have no background channel -- nnU-Net's own choice);
* focal (:class:`FocalLoss`): multi-class softmax focal ``mean over voxels of -(1 - p_t)^γ log p_t``
  for label-map datasets; for region-based datasets (``label_manager.has_regions``) the binary
  (sigmoid) focal loss per region channel, averaged over channels and voxels.

Deep supervision: nnU-Net's ``DeepSupervisionWrapper`` with nnU-Net's weights (``1/2^i``, the
lowest resolution set to 0 -- 1e-6 under DDP without compile, as nnU-Net does -- normalised to sum 1).

Ignore label: handled as nnU-Net handles it. Label maps: the ignore voxels are masked out of the
Dice (``loss_mask``) and out of the focal mean (and set to label 0 before the gather); a batch with
no annotated voxel contributes a focal term of 0. Regions: the ignore label arrives as the last
target channel (nnU-Net's region transform); it becomes the loss mask of both terms and is removed
from the targets.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import softmax_helper_dim1

from hnseg.training.trainers.label_resampling import NearestLabelResamplingMixin
from hnseg.training.trainers.lateral import NoLeftRightMirroringMixin

__all__ = ["FocalLoss", "DiceFocalLoss", "nnUNetTrainerDiceFocal", "deep_supervision_weights"]


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) on logits, mean over the (unmasked) elements.

    ``mode="softmax"``: ``logits`` (B, C, *spatial), ``target`` integer labels (B, 1, *spatial) or
    (B, *spatial); loss = mean over voxels of ``-(1 - p_t)^γ · log p_t`` with ``p_t`` the softmax
    probability of the true class. γ = 0 gives cross-entropy.

    ``mode="sigmoid"``: ``target`` binary (B, C, *spatial), same shape as ``logits``; every channel
    is its own binary problem, ``p_t = σ(z)`` where the target is 1 and ``1 - σ(z)`` where it is 0;
    loss = mean over channels and voxels. γ = 0 gives binary cross-entropy with logits.

    ``loss_mask`` (optional, broadcastable to (B, 1, *spatial), 1 = keep) restricts the mean to the
    kept voxels; with no kept voxel the loss is 0. ``ignore_index`` (softmax only) masks the voxels
    with that label.
    """

    def __init__(self, gamma: float = 2.0, mode: str = "softmax", ignore_index: int | None = None):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if mode not in ("softmax", "sigmoid"):
            raise ValueError(f"mode must be 'softmax' or 'sigmoid', got {mode!r}")
        if ignore_index is not None and mode != "softmax":
            raise ValueError("ignore_index is only supported with mode='softmax' (use loss_mask)")
        self.gamma = float(gamma)
        self.mode = mode
        self.ignore_index = ignore_index

    def _modulate(self, logpt: torch.Tensor) -> torch.Tensor:
        if self.gamma == 0:
            return -logpt
        pt = logpt.exp()
        return -((1 - pt).clamp_min(0) ** self.gamma) * logpt

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                loss_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        if self.mode == "softmax":
            if target.ndim == logits.ndim:
                if target.shape[1] != 1:
                    raise ValueError(f"softmax focal needs integer labels (B, 1, ...), got {tuple(target.shape)}")
                target = target[:, 0]
            target = target.long()
            mask = None if loss_mask is None else loss_mask.reshape(target.shape[0], *target.shape[1:]).bool()
            if self.ignore_index is not None:
                keep = target != self.ignore_index
                mask = keep if mask is None else mask & keep
                target = torch.where(keep, target, torch.zeros_like(target))
            logpt = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
            per_voxel = self._modulate(logpt)
        else:
            if target.shape != logits.shape:
                raise ValueError(f"sigmoid focal needs a target of the logits' shape {tuple(logits.shape)}, "
                                 f"got {tuple(target.shape)}")
            t = target.float()
            logpt = -F.binary_cross_entropy_with_logits(logits, t, reduction="none")
            per_voxel = self._modulate(logpt)
            mask = None if loss_mask is None else loss_mask.bool().expand_as(per_voxel)
        if mask is None:
            return per_voxel.mean()
        mask = mask.to(per_voxel.dtype)
        return (per_voxel * mask).sum() / mask.sum().clamp_min(1.0)


class DiceFocalLoss(nn.Module):
    """Soft Dice + focal, one deep-supervision level; nnU-Net's target conventions (see module doc)."""

    def __init__(self, dice_kwargs: dict, gamma: float = 2.0, regions: bool = False,
                 ignore_label: int | None = None, weight_dice: float = 1.0, weight_focal: float = 1.0):
        super().__init__()
        self.regions = regions
        self.ignore_label = ignore_label
        self.weight_dice = weight_dice
        self.weight_focal = weight_focal
        nonlin = torch.sigmoid if regions else softmax_helper_dim1
        self.dc = MemoryEfficientSoftDiceLoss(apply_nonlin=nonlin, **dice_kwargs)
        self.focal = FocalLoss(gamma, mode="sigmoid" if regions else "softmax")

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask = None
        if self.regions:
            if self.ignore_label is not None:  # nnU-Net puts the ignore region in the last channel
                last = target[:, -1:]
                mask = ~last if last.dtype == torch.bool else (1 - last).bool()
                target = target[:, :-1]
            target_dice = target
        else:
            if self.ignore_label is not None:
                mask = target != self.ignore_label
                target = torch.where(mask, target, torch.zeros_like(target))
            target_dice = target
        dc = self.dc(net_output, target_dice, loss_mask=mask)
        fl = self.focal(net_output, target, loss_mask=mask)
        return self.weight_dice * dc + self.weight_focal * fl


def deep_supervision_weights(trainer: nnUNetTrainer) -> np.ndarray:
    """nnU-Net's deep-supervision loss weights (``nnUNetTrainer._build_loss``), reproduced for reuse."""
    scales = trainer._get_deep_supervision_scales()
    weights = np.array([1 / (2 ** i) for i in range(len(scales))])
    if trainer.is_ddp and not trainer._do_i_compile():
        weights[-1] = 1e-6
    else:
        weights[-1] = 0
    return weights / weights.sum()


class nnUNetTrainerDiceFocal(NearestLabelResamplingMixin, NoLeftRightMirroringMixin, nnUNetTrainer):
    """nnU-Net trainer whose loss is soft Dice + focal (γ = 2); overrides ``_build_loss``, and drops
    left-right mirroring when the dataset has lateralised labels (``_L`` / ``_R``: SegRap OARs)."""

    exclude_left_right_mirroring = None  # decided by the labels

    focal_gamma: float = 2.0

    def _build_loss(self):
        lm = self.label_manager
        dice_kwargs = {"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5,
                       "do_bg": bool(lm.has_regions), "ddp": self.is_ddp}
        loss = DiceFocalLoss(dice_kwargs, gamma=self.focal_gamma, regions=lm.has_regions,
                             ignore_label=lm.ignore_label)
        if self._do_i_compile():
            loss.dc = torch.compile(loss.dc)
        if self.enable_deep_supervision:
            loss = DeepSupervisionWrapper(loss, deep_supervision_weights(self))
        return loss
