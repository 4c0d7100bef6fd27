"""Choose the torch device: CUDA when present (auto), else CPU."""

from __future__ import annotations

import logging

import torch

from hnseg.errors import SettingsError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("device 'cuda': expected a visible CUDA GPU, found none (use --device cpu)")
    log.info("device: %s", name)
    return torch.device(name)
