"""Overlapping structure masks → a partition into pieces (training side of ``tasks.encoding``).

Each voxel's membership set (which structures hold it) is a bit code; every code seen in the
training set becomes a piece, except rare ones (a few boundary voxels where two unrelated organs'
contours overlap), which are merged into the largest kept piece they contain.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np

from hnseg.tasks.encoding import Piece, StructureEncoding

log = logging.getLogger(__name__)

MAX_STRUCTURES = 63


def membership_codes(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Bit code per voxel: bit i set ⇔ voxel in ``masks[i]``."""
    if len(masks) > MAX_STRUCTURES:
        raise ValueError(f"at most {MAX_STRUCTURES} structures, found {len(masks)}")
    codes = np.zeros(masks[0].shape, dtype=np.uint64)
    for i, m in enumerate(masks):
        codes[np.asarray(m) > 0] |= np.uint64(1 << i)
    return codes


def count_codes(codes: np.ndarray) -> Counter:
    values, counts = np.unique(codes, return_counts=True)
    return Counter({int(v): int(c) for v, c in zip(values, counts) if v})


def _members(code: int, structures: Sequence[str]) -> tuple[str, ...]:
    return tuple(s for i, s in enumerate(structures) if code >> i & 1)


def build_encoding(
    counts: Counter, structures: Sequence[str], mode: str, min_fraction: float = 0.01
) -> tuple[StructureEncoding, dict[int, int]]:
    """Piece table from code counts over the training set, and the map code → piece value (0 = dropped).

    A multi-structure code is kept when it holds at least ``min_fraction`` of the voxels of its
    smallest member structure; single-structure codes are always kept.
    """
    totals = Counter()
    for code, n in counts.items():
        for i in range(len(structures)):
            if code >> i & 1:
                totals[i] += n
    kept, rare = [], []
    for code, n in counts.items():
        bits = [i for i in range(len(structures)) if code >> i & 1]
        smallest = min(totals[i] for i in bits)
        (kept if len(bits) == 1 or n >= min_fraction * smallest else rare).append(code)
    # deterministic order: by the structures' order, containers before their contents
    kept.sort(key=lambda c: [i for i in range(len(structures)) if c >> i & 1])
    value = {code: v + 1 for v, code in enumerate(kept)}
    if len(value) > 255:
        raise ValueError(f"{len(value)} pieces do not fit a uint8 label map")
    for code in rare:
        subsets = [k for k in kept if k & code == k]
        if not subsets:
            log.warning("membership %s (%d voxels) has no kept sub-piece: left as background",
                        "+".join(_members(code, structures)), counts[code])
            value[code] = 0
            continue
        # largest subset; ties → the one whose highest structure comes later in the order
        best = max(subsets, key=lambda k: (bin(k).count("1"), k.bit_length(), k))
        value[code] = value[best]
        log.info("rare overlap %s (%d voxels) → piece %s", "+".join(_members(code, structures)),
                 counts[code], "+".join(_members(best, structures)))
    encoding = StructureEncoding(
        mode=mode, structures=tuple(structures),
        pieces=tuple(Piece(value=value[c], members=_members(c, structures)) for c in kept),
    )
    return encoding, value


def encode(codes: np.ndarray, code_to_value: dict[int, int]) -> np.ndarray:
    """Bit codes → uint8 piece label map; unknown codes (not in the table) raise."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    lut = np.zeros(len(uniq), dtype=np.uint8)
    for j, c in enumerate(uniq.tolist()):
        if c == 0:
            continue
        if c not in code_to_value:
            raise ValueError(f"membership code {c} not in the piece table")
        lut[j] = code_to_value[c]
    return lut[inverse].reshape(codes.shape)
