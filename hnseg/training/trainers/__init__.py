"""hnseg's nnU-Net trainer subclasses, found by nnU-Net through the ``nnUNet_extTrainer`` variable.

nnU-Net looks a trainer up by class name, first in its own package and then in every folder listed
in ``nnUNet_extTrainer`` (``os.pathsep``-separated), importing the modules of such a folder relative
to it -- so the modules in this package use absolute ``hnseg.…`` imports only. Training and
inference both call :func:`make_trainers_findable` before nnU-Net resolves a trainer name.

* ``nnUNetTrainerDiceFocal`` (``dice_focal.py``): soft Dice + focal loss (γ = 2), nnU-Net's network.
* ``nnUNetTrainerHnsegMultiTask`` (``multitask.py``): region-based training with one loss per task,
  hierarchical gradient surgery and a T-stage head (``stage_head.py``: ``StagedNetwork``,
  ``predict_t_stage``).
* ``nnUNetTrainerDiceFocalAdam``, ``nnUNetTrainerHnsegMultiTaskAdam`` (``adamw.py``): the same with
  AdamW instead of SGD, for short schedules (the CPU-trained demo weights).

This module is imported cheaply (no torch, no nnU-Net).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["TRAINERS_DIR", "make_trainers_findable"]

TRAINERS_DIR: Path = Path(__file__).resolve().parent

_ENV = "nnUNet_extTrainer"


def make_trainers_findable(environ: MutableMapping[str, str] = os.environ) -> None:
    """Append :data:`TRAINERS_DIR` to ``nnUNet_extTrainer`` unless it is already listed."""
    current = environ.get(_ENV, "")
    entries = [e for e in current.split(os.pathsep) if e.strip()]
    if any(_same_dir(e, TRAINERS_DIR) for e in entries):
        return
    environ[_ENV] = os.pathsep.join([*entries, str(TRAINERS_DIR)])


def _same_dir(entry: str, target: Path) -> bool:
    try:
        return Path(entry).resolve() == target
    except OSError:
        return False
