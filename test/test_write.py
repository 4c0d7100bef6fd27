"""Atomic writers: complete file or nothing, readable by others (the container runs as uid 10001)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.io.write import write_image_atomic, write_json_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask_022):
    img = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8))
    paths = [write_image_atomic(img, tmp_path / "a" / "output.mha"), write_json_atomic({"x": 1}, tmp_path / "r.json")]
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert json.loads(paths[1].read_text()) == {"x": 1}
    assert sorted(q.name for q in tmp_path.rglob("*") if q.is_file()) == ["output.mha", "r.json"]


def test_failed_write_leaves_nothing(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(RuntimeError):  # the temp file exists when SimpleITK finds no writer for it
        write_image_atomic(img, tmp_path / "output.unknown-format")
    assert list(tmp_path.iterdir()) == []


def test_temp_folder_gets_the_mode_mkdir_would_give(tmp_path):
    """Published folders (case folders, exported weights) are renamed temp folders: not mkdtemp's
    0o700, which hid exported weights from the container's user (PermissionError when mounted)."""
    from hnseg.io.write import temp_folder

    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(temp_folder(tmp_path, ".a.").stat().st_mode) == 0o755
        os.umask(0o027)
        assert stat.S_IMODE(temp_folder(tmp_path, ".b.").stat().st_mode) == 0o750
    finally:
        os.umask(old)
