"""AdamW variants of hnseg's trainers, for short schedules (the phantom demo weights trained on a CPU).

nnU-Net's SGD (lr 0.01, Nesterov momentum 0.99, poly decay) is tuned for 1000 epochs × 250
iterations. With a few thousand iterations it barely starts on many-label tasks: measured on the
SegRap task-1 phantoms (45 OARs, CPU, one fold), SGD after ≈ 1000 iterations had a pseudo Dice above 0
for Brain alone, while AdamW (lr 3e-3, weight decay 3e-5, AMSGrad, the same poly decay) after ≈ 600
iterations had 17 OARs above 0.7. Only the optimizer changes; loss, network, augmentation and the
rest are the parent trainer's. (Named ``…Adam`` for brevity; the optimizer is ``torch.optim.AdamW``.)
"""

from __future__ import annotations

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from hnseg.training.trainers.dice_focal import nnUNetTrainerDiceFocal
from hnseg.training.trainers.multitask import nnUNetTrainerHnsegMultiTask

__all__ = ["AdamWMixin", "nnUNetTrainerDiceFocalAdam", "nnUNetTrainerHnsegMultiTaskAdam"]


class AdamWMixin:
    """``configure_optimizers``: AdamW + nnU-Net's poly schedule over ``num_epochs``."""

    adam_lr: float = 3e-3
    adam_weight_decay: float = 3e-5

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.network.parameters(), lr=self.adam_lr, weight_decay=self.adam_weight_decay,
                                amsgrad=True)
        return opt, PolyLRScheduler(opt, self.adam_lr, self.num_epochs)


class nnUNetTrainerDiceFocalAdam(AdamWMixin, nnUNetTrainerDiceFocal):
    """Soft Dice + focal loss (``nnUNetTrainerDiceFocal``) trained with AdamW."""


class nnUNetTrainerHnsegMultiTaskAdam(AdamWMixin, nnUNetTrainerHnsegMultiTask):
    """The NPC multi-task trainer (gradient surgery, T-stage head) trained with AdamW."""
