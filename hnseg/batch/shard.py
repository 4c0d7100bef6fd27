"""Deterministic sharding: cases sorted by id, case k (0-based) goes to shard (k mod N) + 1."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from hnseg.errors import SettingsError

T = TypeVar("T")

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` → ``(2, 3)``; 1-based index, 1 ≤ i ≤ N."""
    m = _SHARD_RE.match(str(text))
    if not m:
        raise SettingsError(f"--shard {text!r}: expected i/N with whole numbers (e.g. 2/3), found {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise SettingsError(f"--shard {text!r}: expected 1 <= i <= N and N >= 1, found i={i}, N={n}")
    return i, n


def select_shard(items: Sequence[T], index: int, count: int, key: Callable[[T], str] = str) -> list[T]:
    """The items of shard ``index`` of ``count`` (1-based): disjoint, covering, independent of input order."""
    if count < 1 or not 1 <= index <= count:
        raise SettingsError(f"shard {index}/{count}: expected 1 <= i <= N")
    ordered = sorted(items, key=key)
    return [item for k, item in enumerate(ordered) if k % count + 1 == index]
