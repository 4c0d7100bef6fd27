"""Start a training from another model's weights (transfer learning), nnU-Net's way plus hnseg's wrapper.

nnU-Net's ``load_pretrained_weights`` copies every parameter except the 1×1 output layers
(``.seg_layers.``) and needs the key names to match. hnseg's multi-task trainer wraps the network
(:class:`~hnseg.training.trainers.stage_head.StagedNetwork`: keys ``seg.*`` + ``stage_head.*``), so
keys are matched with or without the ``seg.`` prefix, and the T-stage head (absent from plain nnU-Net
checkpoints) keeps its initialisation. Everything else must exist with the same shape: a checkpoint
of another architecture is refused, naming the first key that does not fit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from hnseg.predict.weights import sha256_file

log = logging.getLogger(__name__)

__all__ = ["PretrainedWeightsError", "load_pretrained"]

_KEEP_OWN = (".seg_layers.", "stage_head.")  # output layers / T-stage head: never transferred


class PretrainedWeightsError(ValueError):
    """The checkpoint does not fit the network."""


def _candidates(key: str) -> list[str]:
    bare = key[len("seg."):] if key.startswith("seg.") else key
    return [key, bare, "seg." + bare]


def _load_without_code(checkpoint: Path) -> object:
    """``torch.load(weights_only=True)``, plus the numpy scalar and dtype globals that nnU-Net's full
    training checkpoints hold in their logs: a checkpoint someone else made runs no code here either."""
    import pickle

    import numpy as np

    scalar_types = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)]
    allowed = [np.dtype, np._core.multiarray.scalar, *scalar_types]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).split("\n")[0][:300]
        raise PretrainedWeightsError(f"{checkpoint}: expected a checkpoint loadable without running code "
                                     f"(torch.load weights_only=True), found: {reason}") from None


def load_pretrained(network: nn.Module, checkpoint: Path) -> dict:
    """Copy the checkpoint's ``network_weights`` into ``network`` (in place, cast to the network's
    dtypes). Returns a record: path, sha256, transferred / kept-own key counts."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise PretrainedWeightsError(f"pretrained checkpoint {checkpoint} not found")
    saved = _load_without_code(checkpoint)
    weights = saved.get("network_weights") if isinstance(saved, dict) else None
    if not isinstance(weights, dict):
        raise PretrainedWeightsError(f"{checkpoint} has no 'network_weights' (not an nnU-Net checkpoint)")
    module = getattr(network, "_orig_mod", network)
    own = module.state_dict()
    transferred, kept = 0, 0
    with torch.no_grad():
        for key, tensor in own.items():
            if any(s in key for s in _KEEP_OWN):
                kept += 1
                continue
            source = next((c for c in _candidates(key) if c in weights), None)
            if source is None:
                raise PretrainedWeightsError(f"{checkpoint}: no weights for {key!r} (the checkpoint holds e.g. "
                                             f"{list(weights)[:3]}): another architecture")
            if tuple(weights[source].shape) != tuple(tensor.shape):
                raise PretrainedWeightsError(f"{checkpoint}: {source!r} has shape {tuple(weights[source].shape)}, "
                                             f"the network's {key!r} has {tuple(tensor.shape)}")
            tensor.copy_(weights[source].to(tensor.dtype))
            transferred += 1
    digest = sha256_file(checkpoint)
    log.info("initialised %d tensors from %s (%d output / head tensors keep their initialisation)",
             transferred, checkpoint, kept)
    return {"path": str(checkpoint), "sha256": digest, "transferred": transferred, "kept_own": kept}
