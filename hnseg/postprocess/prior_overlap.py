"""Task-2 winner's post-processing rule: keep only predicted components that touch the prior.

HNTS-MRG 2024 task 2 winner (UW LAIR): every predicted connected component of class k that does not
overlap the registered pre-RT mask of class k (not even one voxel) is removed. A tumour does not
appear at mid-RT where there was none of that class before treatment, so such components are false
positives. Connectivity is face connectivity (``scipy.ndimage.label`` default structure).
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)


def drop_components_without_prior(
    pred: np.ndarray, prior_mask: np.ndarray, labels: Iterable[int] = (1, 2)
) -> np.ndarray:
    """Return a copy of ``pred`` with every class-k component not overlapping ``prior_mask == k`` set to 0."""
    if pred.shape != prior_mask.shape:
        raise ValueError(
            f"prediction shape {pred.shape} and registered pre-RT mask shape {prior_mask.shape} differ"
        )
    out = pred.copy()
    for k in labels:
        lab, n = ndimage.label(pred == k)
        if n == 0:
            log.info("class %d: no predicted component", k)
            continue
        touching = np.unique(lab[(prior_mask == k) & (lab > 0)])
        keep = np.zeros(n + 1, dtype=bool)
        keep[touching] = True
        keep[0] = True  # background is not a component
        drop = ~keep[lab]
        out[drop] = 0
        n_drop = n - int(touching.size)
        log.info(
            "class %d: dropped %d of %d predicted component(s) without overlap with the prior",
            k, n_drop, n,
        )
    return out
