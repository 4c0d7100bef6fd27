"""Build the network's input channels for a case, as the task profile and the weights say.

The same function serves inference and the training converter, so a model always sees its inputs
built the way it was trained (training passes a seeded generator for the prior's random margins).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hnseg.load.case import Case
from hnseg.preprocess.priors import PriorSpec, compute_prior_array
from hnseg.tasks import ChannelSpec


def channels_for(task_channels: Sequence[ChannelSpec], prior: PriorSpec | None) -> tuple[ChannelSpec, ...]:
    """The profile's channels, without the prior channel when the weights use no prior."""
    if prior is None or prior.kind == "none":
        return tuple(c for c in task_channels if c.source != "prior")
    return tuple(task_channels)


def build_channels(
    case: Case,
    channels: Sequence[ChannelSpec],
    prior: PriorSpec | None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Stack the channels as float32 (c, z, y, x) on the reference grid."""
    spacing_zyx = tuple(reversed(case.reference.GetSpacing()))
    out = []
    for ch in channels:
        image = case.array(ch.socket).astype(np.float32, copy=False)
        if ch.source == "image":
            out.append(image)
        else:
            if prior is None or prior.kind == "none":
                raise ValueError(f"channel {ch.name!r} is a prior but the weights define none")
            out.append(compute_prior_array(image, case.array(ch.mask_socket), spacing_zyx, prior, rng))
    return np.stack(out)
