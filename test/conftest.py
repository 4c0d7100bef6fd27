"""Shared fixtures. The real HNTS-MRG masks live in ../shared beside the repository (never skipped:
a missing folder is a broken checkout and fails loudly)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_hntsmrg_dir() -> Path:
    root = Path(os.environ.get("HNSEG_SHARED", REPO.parent / "shared"))
    d = root / "data" / "hntsmrg2024"
    if not d.is_dir():
        raise FileNotFoundError(f"real HNTS-MRG masks not found at {d} (set HNSEG_SHARED)")
    return d


@pytest.fixture(scope="session")
def hntsmrg_real() -> Path:
    return shared_hntsmrg_dir()
