"""K-fold splits grouped by patient: a patient's samples always land in one fold."""

from __future__ import annotations

import numpy as np

from hnseg.training.releases.sample import Sample


def grouped_kfold(samples: list[Sample], n_folds: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """nnU-Net ``splits_final.json`` content. Training-only samples never enter a validation fold."""
    patients = sorted({s.patient for s in samples}, key=lambda p: (len(p), p))
    if len(patients) < n_folds:
        raise ValueError(f"{len(patients)} patients cannot make {n_folds} folds")
    order = np.random.default_rng(seed).permutation(len(patients))
    fold_of = {patients[i]: k % n_folds for k, i in enumerate(order)}
    splits = []
    for k in range(n_folds):
        val = [s.name for s in samples if fold_of[s.patient] == k and not s.train_only]
        train = [s.name for s in samples if fold_of[s.patient] != k]
        splits.append({"train": sorted(train), "val": sorted(val)})
    return splits
