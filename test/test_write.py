"""Atomic writers: complete file or nothing, readable by others (the container runs as uid 10001)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.errors import OutputLocationError, OutputWriteError
from hnseg.io.write import check_output_folder, write_image_atomic, write_json_atomic


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
    with pytest.raises(OutputWriteError, match="output.unknown-format"):  # the temp file exists when
        write_image_atomic(img, tmp_path / "output.unknown-format")      # SimpleITK finds no writer for it
    assert list(tmp_path.iterdir()) == []


FULL_DISK_CHILD = """
import resource, sys
import numpy as np, SimpleITK as sitk
from hnseg.errors import OutputWriteError
from hnseg.errors import OutputLocationError, OutputWriteError
from hnseg.io.write import check_output_folder, write_image_atomic, write_json_atomic
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # python ignores SIGXFSZ: writes fail with EFBIG
rng = np.random.default_rng(0)
img = sitk.GetImageFromArray(rng.integers(0, 255, (20, 40, 40)).astype(np.uint8))  # 32 kB, incompressible
for write, value, name in ((write_image_atomic, img, "output.mha"), (write_json_atomic, ["x" * 9000], "out.json")):
    try:
        write(value, sys.argv[1] + "/" + name)
    except OutputWriteError as exc:
        print("OutputWriteError:", exc)
"""


def test_full_disk_is_a_named_error_and_leaves_no_file(tmp_path):
    """A write that the file system cuts short (EFBIG under RLIMIT_FSIZE, as ENOSPC on a full disk):
    OutputWriteError naming the target, and not even a 0-byte or temporary file left."""
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("OutputWriteError")]
    assert len(lines) == 2 and "output.mha" in lines[0] and "out.json" in lines[1], r.stdout
    assert all("disk full or file size limit" in ln for ln in lines), r.stdout
    assert list(out.iterdir()) == []


def test_check_output_folder_refuses_input_overlap_and_blocked_paths(tmp_path):
    inp = tmp_path / "in"
    (inp / "images").mkdir(parents=True)
    for out, relation in ((inp, "is"), (inp / "out", "lies inside"), (tmp_path, "contains")):
        with pytest.raises(OutputLocationError, match=f"found it {relation} it"):
            check_output_folder(out, inp)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(OutputWriteError, match=f"{blocker} is a file"):
            check_output_folder(out, inp)
    ok = check_output_folder(tmp_path / "fresh" / "out", inp)
    assert ok.is_dir() and list(ok.iterdir()) == []  # the write probe left nothing


def test_a_folder_where_the_file_goes_is_a_named_error(tmp_path):
    (tmp_path / "output.mha").mkdir()
    with pytest.raises(OutputWriteError, match="a folder stands where the file must go"):
        write_image_atomic(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8)), tmp_path / "output.mha")
    assert [p.name for p in tmp_path.iterdir()] == ["output.mha"]


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
