"""Train one fold with an nnU-Net trainer class (chosen by name), epochs and iterations as options."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

log = logging.getLogger(__name__)


def fit_iterations_to_deadline(trainer, deadline: float, min_iterations: int = 10) -> None:
    """Re-fit ``num_iterations_per_epoch`` after every epoch so that the remaining epochs end by
    ``deadline`` (``time.time()`` seconds), at the speed of the epoch just finished. The number of
    epochs (hence nnU-Net's poly learning-rate schedule) stays as planned; only epoch length moves.
    Iterations actually run are counted in ``trainer.hnseg_iterations_done``."""
    original = trainer.on_epoch_end
    trainer.hnseg_iterations_done = 0
    started = {"t": time.time()}
    warned: list[bool] = []
    start_epoch = trainer.on_epoch_start

    def on_epoch_start():
        started["t"] = time.time()
        start_epoch()

    def on_epoch_end():
        done = trainer.num_iterations_per_epoch
        trainer.hnseg_iterations_done += done
        seconds_per_iteration = (time.time() - started["t"]) / max(done, 1)
        original()  # advances current_epoch
        epochs_left = trainer.num_epochs - trainer.current_epoch
        if epochs_left > 0:
            budget = max(deadline - time.time(), 0.0) / epochs_left
            fitted = int(budget / seconds_per_iteration)
            if fitted < min_iterations and not warned:
                warned.append(True)
                log.warning("epoch %d: %d epochs of at least %d iterations at %.2f s each end %.0f s after "
                            "the deadline; fewer --epochs would keep it", trainer.current_epoch, epochs_left,
                            min_iterations, seconds_per_iteration,
                            epochs_left * min_iterations * seconds_per_iteration - max(deadline - time.time(), 0.0))
            trainer.num_iterations_per_epoch = max(min_iterations, fitted)

    trainer.on_epoch_start = on_epoch_start
    trainer.on_epoch_end = on_epoch_end


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
    minutes: float | None = None,
    pretrained: Path | None = None,
) -> Path:
    """Returns the fold's output folder (holding checkpoint_final.pth). With ``minutes``, the fold
    runs its epochs within that wall-clock budget (see :func:`fit_iterations_to_deadline`);
    ``iterations`` is then the first epoch's length. ``pretrained``: a checkpoint to start from
    (:func:`hnseg.training.pretrained.load_pretrained`), recorded in ``hnseg_training.json``."""
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
    transfer = None
    if pretrained is not None:
        from hnseg.training.pretrained import load_pretrained

        t.initialize()
        transfer = load_pretrained(t.network, Path(pretrained))
        t.print_to_log_file(f"initialised from {pretrained}: {transfer}")
    if minutes is not None:
        fit_iterations_to_deadline(t, time.time() + 60.0 * minutes)
    ds = convert_id_to_dataset_name(dataset_id)
    log.info("training %s fold %d: %s, %s epochs × %s iterations on %s%s", ds, fold, trainer,
             t.num_epochs, t.num_iterations_per_epoch, device,
             f" within {minutes} min" if minutes is not None else "")
    iterations_per_epoch = t.num_iterations_per_epoch
    t.run_training()
    total = getattr(t, "hnseg_iterations_done", t.num_epochs * iterations_per_epoch)
    out = Path(t.output_folder)
    (out / "hnseg_training.json").write_text(json.dumps({
        "trainer": trainer, "epochs": t.num_epochs,
        "iterations_per_epoch": round(total / max(t.num_epochs, 1)), "iterations_total": total,
        "minutes_budget": minutes,
        "val_iterations_per_epoch": t.num_val_iterations_per_epoch, "batch_size": t.batch_size,
        "device": device, "seed": seed + fold, "pretrained": transfer,
        "preprocessed": str(Path(nnUNet_preprocessed) / ds),
    }, indent=2))
    return out
