"""Nested targets (GTV ⊂ CTV70 ⊂ CTV63): make the containment hold voxel-wise in the output.

Rule: the outer structure grows to cover the inner one (a CTV must cover its GTV; shrinking the GTV
would drop tumour). Applied to a fixed point, so chains (GTV → CTV70 → CTV63) close in one call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)


def enforce_nesting(stack: np.ndarray, structures: Sequence[str],
                    nested: Sequence[tuple[str, str]]) -> dict[str, int]:
    """In place on ``stack`` (S, z, y, x); returns voxels added per outer structure."""
    index = {s: i for i, s in enumerate(structures)}
    added: dict[str, int] = {}
    for _ in range(len(nested) + 1):
        changed = False
        for inner, outer in nested:
            missing = (stack[index[inner]] > 0) & ~(stack[index[outer]] > 0)
            n = int(missing.sum())
            if n:
                stack[index[outer]][missing] = 1
                added[outer] = added.get(outer, 0) + n
                changed = True
        if not changed:
            break
    for outer, n in added.items():
        log.info("nesting: %d voxel(s) added to %s to cover its inner structures", n, outer)
    return added
