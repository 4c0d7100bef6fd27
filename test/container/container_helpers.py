"""Helpers for the container suite: the repository root, docker and test.sh runners."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def docker(*args: str, check: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def run_test_sh(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "test.sh"), *args], capture_output=True, text=True, timeout=timeout)
