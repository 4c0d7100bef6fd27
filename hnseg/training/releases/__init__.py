"""Training release layouts → samples, by task."""

from __future__ import annotations

from pathlib import Path

from hnseg.training.releases.sample import Sample


def release_samples(root: Path, task: str) -> list[Sample]:
    if task.startswith("hntsmrg-"):
        from hnseg.training.releases.hntsmrg import samples
    else:
        from hnseg.training.releases.segrap import samples
    return samples(root, task)


__all__ = ["Sample", "release_samples"]
