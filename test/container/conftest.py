"""Container suite: needs a Docker engine and the built image (``HNSEG_TEST_IMAGE``, default
hnseg:latest). Not collected by the default ``pytest`` run (marker ``container``); CI runs it with
``pytest -m container test/container`` after ``test.sh`` built the image. A missing engine or image
fails these tests; nothing is skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from container_helpers import docker


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.container)


@pytest.fixture(scope="session")
def image() -> str:
    name = os.environ.get("HNSEG_TEST_IMAGE", "hnseg:latest")
    r = docker("image", "inspect", "--format", "{{.Id}}", name)
    assert r.returncode == 0, f"image {name} not found (build it with ./build.sh): {r.stderr.strip()}"
    return name
