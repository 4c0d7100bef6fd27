"""Inputs that would escape the input folder, exhaust memory or give a silently wrong segmentation are
refused before any compute, each with its named error (issue 13). In-process and fast; the hostile
catalogue (test/test_hostile_catalogue.py) runs the same classes through real subprocesses with a
memory cap.

Each expected value here is known by construction (the file a link points to, the size a header
declares, the voxel planted) — not read back from the code under test.
"""

from __future__ import annotations

import gzip
import os
import struct

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.errors import (
    DirectionMatrixError, ImageDimensionError, InputsJsonError, IntensityRangeError, NonFiniteImageError,
    PixelTypeError, ResourceLimitError, UnsafePathError,
)
from hnseg.interfaces.grand_challenge import discover_inputs
from hnseg.io.read import read_image
from hnseg.load.case import load_case
from hnseg.tasks import get_task

T1 = get_task("hntsmrg-task1")
SEGRAP = get_task("segrap-task1")
PRE = "pre-rt-t2w-head-neck"


def t2_array(shape=(8, 16, 16), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(300.0, 50.0, shape).clip(0).astype(np.float32)


def ct_array(shape=(8, 16, 16), seed=0) -> np.ndarray:
    a = np.random.default_rng(seed).normal(40.0, 20.0, shape).astype(np.float32)
    a[:, :3, :] = -1000.0  # air in front of the face
    return a


def image(values: np.ndarray, spacing=(0.5, 0.5, 2.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(values)
    img.SetSpacing(spacing)
    if direction is not None:
        img.SetDirection(direction)
    return img


def gc_case(root, slug, writer) -> dict:
    folder = root / "images" / slug
    folder.mkdir(parents=True, exist_ok=True)
    writer(folder)
    return discover_inputs(root)


def load_t1(root, name="x.mha", img=None, **kw):
    files = gc_case(root, PRE, lambda f: sitk.WriteImage(img if img is not None else image(t2_array()), str(f / name)))
    return load_case(T1, files, root=root, **kw)


# --- escapes -------------------------------------------------------------------------------------
def test_symlinked_image_pointing_outside_the_input_folder(tmp_path):
    outside = tmp_path / "elsewhere.mha"
    sitk.WriteImage(image(t2_array()), str(outside))
    root = tmp_path / "in"
    with pytest.raises(UnsafePathError, match=f"through a symbolic link to {outside}"):
        gc_case(root, PRE, lambda f: os.symlink(outside, f / "x.mha"))


def test_symlinked_socket_folder_pointing_outside(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    sitk.WriteImage(image(t2_array()), str(outside / "x.mha"))
    (tmp_path / "in" / "images").mkdir(parents=True)
    os.symlink(outside, tmp_path / "in" / "images" / PRE)
    with pytest.raises(UnsafePathError, match=f"socket '{PRE}'.*inside the input folder"):
        discover_inputs(tmp_path / "in")


def test_symlink_inside_the_input_folder_is_followed(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    sitk.WriteImage(image(t2_array()), str(root / "scan.mha"))
    files = gc_case(root, PRE, lambda f: os.symlink(root / "scan.mha", f / "x.mha"))
    assert load_case(T1, files, root=root).reference.GetSize() == (16, 16, 8)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_files_are_refused_without_blocking(tmp_path, kind):
    root = tmp_path / "in"

    def make(folder):
        if kind == "fifo":
            os.mkfifo(folder / "x.mha")
        else:
            os.symlink("/dev/zero", folder / "x.mha")

    expected = "a FIFO" if kind == "fifo" else "inside the input folder"  # /dev/zero is outside it, too
    with pytest.raises(UnsafePathError, match=expected):
        gc_case(root, PRE, make)


def _mha_header(data_file: str, dims=(16, 16, 8), extra: str = "") -> str:
    return ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"{extra}ElementSpacing = 0.5 0.5 2\nDimSize = {' '.join(map(str, dims))}\n"
            f"ElementType = MET_FLOAT\nElementDataFile = {data_file}\n")


@pytest.mark.parametrize("data_file, why", [
    ("/dev/zero", "inside the input folder"),
    ("OUTSIDE", "inside the input folder"),
    ("../../../secret.raw", "inside the input folder"),
])
def test_mha_data_file_must_stay_inside(tmp_path, data_file, why):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(t2_array().tobytes())
    root = tmp_path / "in"
    name = str(secret) if data_file == "OUTSIDE" else data_file
    with pytest.raises(UnsafePathError, match=f"data file '{name}' named in its header.*{why}"):
        load_t1_raw(root, _mha_header(name))


def load_t1_raw(root, header: str, suffix=".mhd", data: bytes | None = None):
    files = gc_case(root, PRE, lambda f: (f / f"x{suffix}").write_bytes(header.encode() + (data or b"")))
    return load_case(T1, files, root=root)


def test_mha_list_of_data_files_outside(tmp_path):
    (tmp_path / "a.raw").write_bytes(b"\0" * 1024)
    header = _mha_header("LIST") + "\n".join([str(tmp_path / "a.raw")] * 8) + "\n"
    with pytest.raises(UnsafePathError, match="a.raw"):
        load_t1_raw(tmp_path / "in", header)


# --- resource bombs ------------------------------------------------------------------------------
def test_huge_dims_are_refused_from_the_header(tmp_path):
    header = _mha_header("x.raw", dims=(4000, 4000, 4000))
    (tmp_path / "in" / "images" / PRE).mkdir(parents=True)
    (tmp_path / "in" / "images" / PRE / "x.raw").write_bytes(b"\0" * 64)
    with pytest.raises(ResourceLimitError, match="64,000,000,000 voxels.*before reading its voxels"):
        load_t1_raw(tmp_path / "in", header, suffix=".mhd")


def test_absurd_spacing_and_extent(tmp_path):
    with pytest.raises(ResourceLimitError, match=r"spacing \(50, 50, 50\).*extent \(3200, 3200, 3200\)"):
        load_t1(tmp_path / "a", img=image(t2_array((64, 64, 64)), spacing=(50.0, 50.0, 50.0)))
    with pytest.raises(ResourceLimitError, match="spacing"):
        load_t1(tmp_path / "b", img=image(t2_array(), spacing=(1e-4, 1e-4, 1e-4)))


def test_gzip_bomb_nifti(tmp_path):
    """A valid header for a 16×16×8 float image (8 kB of voxels), then 64 MB of zeros in the stream."""
    nii = nibabel.Nifti1Image(t2_array().transpose(2, 1, 0), np.diag([0.5, 0.5, 2.0, 1.0]))
    raw = nii.to_bytes() + b"\0" * (64 << 20)
    root = tmp_path / "in"
    gc_case(root, PRE, lambda f: (f / "x.nii.gz").write_bytes(gzip.compress(raw, 1)))
    with pytest.raises(ResourceLimitError, match="inflating beyond"):
        load_case(T1, discover_inputs(root), root=root)


def test_compressed_mha_bomb(tmp_path):
    import zlib

    header = _mha_header("LOCAL", extra="CompressedData = True\nCompressedDataSize = 0\n")
    with pytest.raises(ResourceLimitError, match="8,192 bytes its header declares"):
        load_t1_raw(tmp_path / "in", header, suffix=".mha", data=zlib.compress(b"\0" * (32 << 20)))


def test_inputs_json_size_and_depth(tmp_path):
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "inputs.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputsJsonError, match="nested at most 32 levels"):
        discover_inputs(deep)
    big = tmp_path / "big"
    big.mkdir()
    (big / "inputs.json").write_text(" " * (2 << 20) + "[]")
    with pytest.raises(InputsJsonError, match="at most 1,048,576 bytes"):
        discover_inputs(big)


# --- silently wrong ------------------------------------------------------------------------------
def test_complex_and_vector_pixels(tmp_path):
    cplx = sitk.RealAndImaginaryToComplex(image(t2_array()), image(t2_array(seed=1)))
    with pytest.raises(PixelTypeError, match="found complex of 32-bit float"):  # NIfTI stores complex
        load_t1(tmp_path / "a", name="x.nii.gz", img=cplx)
    with pytest.raises(ImageDimensionError, match="2 component"):  # MetaImage: two channels
        load_t1(tmp_path / "c", img=cplx)
    rgb = sitk.Compose(*(sitk.Cast(image(t2_array()), sitk.sitkUInt8),) * 3)
    with pytest.raises(ImageDimensionError, match="3 component"):
        load_t1(tmp_path / "b", img=rgb)


@pytest.mark.parametrize("direction", [
    (1, 0.3, 0, 0, 1, 0, 0, 0, 1),  # sheared
    (2, 0, 0, 0, 1, 0, 0, 0, 1),  # scaled
])
def test_non_orthonormal_direction(tmp_path, direction):
    with pytest.raises(DirectionMatrixError, match="orthonormal"):
        load_t1(tmp_path, img=image(t2_array(), direction=direction))


def test_oblique_orthonormal_direction_is_accepted(tmp_path):
    c, s = np.cos(0.3), np.sin(0.3)
    case = load_t1(tmp_path, img=image(t2_array(), direction=(c, -s, 0, s, c, 0, 0, 0, 1)))
    assert case.reference.GetSize() == (16, 16, 8)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_voxels_in_nifti(tmp_path, value, dtype):
    """ITK's NIfTI reader turns NaN/Inf into 0 silently; the raw bytes are checked instead."""
    a = t2_array().astype(dtype)
    a[3, 4, 5] = value
    with pytest.raises(NonFiniteImageError, match="1 NaN/Inf voxel"):
        load_t1(tmp_path, name="x.nii.gz", img=image(a))


def test_non_finite_nifti_scaling(tmp_path):
    nii = nibabel.Nifti1Image(np.full((16, 16, 8), 5, np.int16), np.eye(4))
    raw = bytearray(nii.to_bytes())
    struct.pack_into("<ff", raw, 112, 2.0, float("nan"))  # scl_slope 2, scl_inter NaN
    root = tmp_path / "in"
    gc_case(root, PRE, lambda f: (f / "x.nii").write_bytes(bytes(raw)))
    with pytest.raises(NonFiniteImageError, match="scl_inter nan"):
        load_case(T1, discover_inputs(root), root=root)


@pytest.mark.parametrize("values, dtype, found", [
    ((-1e300, 1e300), np.float64, r"beyond ±1e\+07"),
    ((-3e38, 3e38), np.float32, r"beyond ±1e\+07"),
])
def test_floating_garbage_in_mri(tmp_path, values, dtype, found):
    a = t2_array().astype(dtype)
    a[0, 0, 0], a[1, 1, 1] = values
    with pytest.raises(IntensityRangeError, match=found):
        load_t1(tmp_path, img=image(a))


def test_ct_in_an_mri_socket_and_constant_image(tmp_path):
    with pytest.raises(IntensityRangeError, match="not this negative"):
        load_t1(tmp_path / "a", img=image(ct_array()))
    with pytest.raises(IntensityRangeError, match="constant image"):
        load_t1(tmp_path / "b", img=image(np.zeros((8, 16, 16), np.float32)))


def segrap_files(root, ct: np.ndarray) -> dict:
    for slug in ("head-neck-ct", "head-neck-contrast-enhanced-ct"):
        gc_case(root, slug, lambda f: sitk.WriteImage(image(ct, spacing=(1.0, 1.0, 3.0)), str(f / "x.mha")))
    return discover_inputs(root)


def test_mri_in_ct_sockets_and_force(tmp_path, caplog):
    root = tmp_path / "in"
    files = segrap_files(root, t2_array())
    with pytest.raises(IntensityRangeError, match="0.00% of voxels in the air range.*not a CT"):
        load_case(SEGRAP, files, root=root)
    case = load_case(SEGRAP, files, root=root, force=True)  # --force: accepted, with a warning
    assert case.reference.GetSize() == (16, 16, 8)
    assert "implausible intensities accepted by --force" in caplog.text


def test_plausible_ct_with_scanner_padding_is_accepted(tmp_path):
    ct = ct_array()
    ct[:, :, :2] = -3024.0  # outside the reconstruction circle
    root = tmp_path / "in"
    assert load_case(SEGRAP, segrap_files(root, ct), root=root).reference.GetSize() == (16, 16, 8)


def test_read_image_default_rule_for_data_files_is_the_header_folder(tmp_path):
    """Outside a case (evaluation, training), a header may still only name data files beside it."""
    (tmp_path / "a").mkdir()
    (tmp_path / "x.raw").write_bytes(t2_array().tobytes())
    (tmp_path / "a" / "x.mhd").write_text(_mha_header("../x.raw"))
    with pytest.raises(UnsafePathError, match=r"inside the input folder .*/a"):
        read_image(tmp_path / "a" / "x.mhd")


# --- batch: the same checks per case --------------------------------------------------------------
def test_batch_escape_fails_that_case_and_force_is_recorded_in_the_report(tmp_path):
    """In batch mode an unsafe or implausible case fails alone (exit 1, the others finish); with --force
    the implausible one is segmented and its report.json carries the warning."""
    import csv
    import json
    import subprocess
    import sys
    from pathlib import Path

    from hnseg.phantoms import make_mri_case

    repo = Path(__file__).resolve().parents[1]
    fast = ["--task", "hntsmrg-task1", "--weights", str(repo / "weights" / "hntsmrg-task1"), "--device", "cpu",
            "--tta", "off", "--folds", "0", "--no-qa"]
    inp = tmp_path / "in"
    good = sitk.Cast(make_mri_case(7, "good", size=(64, 64, 24), spacing=(2.5, 2.5, 4.0)).pre_t2, sitk.sitkFloat32)
    for case_id in ("good", "escape", "negative"):
        (inp / case_id).mkdir(parents=True)
    sitk.WriteImage(good, str(inp / "good" / f"{PRE}.nii.gz"))
    sitk.WriteImage(good, str(tmp_path / "outside.nii.gz"))
    os.symlink(tmp_path / "outside.nii.gz", inp / "escape" / f"{PRE}.nii.gz")
    sitk.WriteImage(good - 5000.0, str(inp / "negative" / f"{PRE}.nii.gz"))  # every voxel strongly negative

    def run(out, *extra):
        r = subprocess.run([sys.executable, "-m", "hnseg", "batch", "-i", str(inp), "-o", str(out), *fast, *extra],
                           capture_output=True, text=True, timeout=600)
        with open(out / "batch_summary.csv", newline="") as f:
            return r, {row["case"]: row for row in csv.DictReader(f)}

    r, rows = run(tmp_path / "out")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert rows["good"]["status"] == "ok"
    assert rows["escape"]["status"] == "failed" and rows["escape"]["error_class"] == "UnsafePathError"
    assert str(tmp_path / "outside.nii.gz") in rows["escape"]["error_message"]
    assert rows["negative"]["error_class"] == "IntensityRangeError"
    assert not (tmp_path / "out" / "escape").exists() and not (tmp_path / "out" / "negative").exists()

    r, rows = run(tmp_path / "forced", "--force")
    assert rows["negative"]["status"] == "ok" and rows["escape"]["error_class"] == "UnsafePathError"
    report = json.loads((tmp_path / "forced" / "negative" / "report.json").read_text())
    assert any("implausible intensities accepted by --force" in w for w in report["warnings"]), report["warnings"]
