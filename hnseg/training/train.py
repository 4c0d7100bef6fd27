"""Train one fold with an nnU-Net trainer class (chosen by name), epochs and iterations as options."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

log = logging.getLogger(__name__)


def train_fold(
    dataset_id: int,
    plans_id: str,
    configuration: str,
    fold: int,
    trainer: str = "nnUNetTrainer",
    device: str = "cpu",
    epochs: int | None = None,
    iterations: int | None = None,
    val_iterations: int | None = None,
    seed: int = 0,
) -> Path:
    """Returns the fold's output folder (holding checkpoint_final.pth)."""
    import os

    import numpy as np
    import torch
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.run.run_training import get_trainer_from_args

    from hnseg.training.trainers import make_trainers_findable
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    if device == "cpu":
        # augmentation in process: worker pools only cost on 2 cores (the planner needs this unset)
        os.environ.setdefault("nnUNet_n_proc_DA", "0")
    # nnU-Net seeds nothing; seed the global generators so a demo run is repeatable.
    random.seed(seed + fold)
    np.random.seed(seed + fold)
    torch.manual_seed(seed + fold)
    make_trainers_findable()
    t = get_trainer_from_args(str(dataset_id), configuration, fold, trainer, plans_id,
                              device=torch.device(device))
    if epochs is not None:
        t.num_epochs = epochs
    if iterations is not None:
        t.num_iterations_per_epoch = iterations
    if val_iterations is not None:
        t.num_val_iterations_per_epoch = val_iterations
    t.save_every = max(t.num_epochs + 1, 50)  # only the final checkpoint
    ds = convert_id_to_dataset_name(dataset_id)
    log.info("training %s fold %d: %s, %s epochs × %s iterations on %s", ds, fold, trainer,
             t.num_epochs, t.num_iterations_per_epoch, device)
    t.run_training()
    out = Path(t.output_folder)
    (out / "hnseg_training.json").write_text(json.dumps({
        "trainer": trainer, "epochs": t.num_epochs, "iterations_per_epoch": t.num_iterations_per_epoch,
        "val_iterations_per_epoch": t.num_val_iterations_per_epoch, "batch_size": t.batch_size,
        "device": device, "seed": seed + fold,
        "preprocessed": str(Path(nnUNet_preprocessed) / ds),
    }, indent=2))
    return out
