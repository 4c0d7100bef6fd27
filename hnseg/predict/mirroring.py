"""Which axes test-time mirroring flips, in nnU-Net's (transposed) network axis order."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)


def left_right_array_axis(reference: sitk.Image) -> int:
    """Numpy (z, y, x) axis of ``reference`` that runs most nearly along the patient's left-right.

    The direction matrix's column i is index axis i in LPS space; its first row is the L-R component.
    """
    d = np.array(reference.GetDirection()).reshape(3, 3)
    index_axis = int(np.argmax(np.abs(d[0, :])))
    return 2 - index_axis


def mirror_axes(
    mode: str, default_axes: Sequence[int] | None, transpose_forward: Sequence[int], reference: sitk.Image
) -> tuple[int, ...] | None:
    """Axes for nnU-Net's ``allowed_mirroring_axes`` (None = no mirroring)."""
    if mode == "off" or not default_axes:
        return None
    if mode == "default":
        return tuple(default_axes)
    lr = list(transpose_forward).index(left_right_array_axis(reference))
    if lr not in default_axes:
        log.warning("left-right axis %d is not among the checkpoint's mirror axes %s: no mirroring",
                    lr, tuple(default_axes))
        return None
    return (lr,)
