"""Class 6, resource bombs: inputs and settings that would need implausible memory or time, refused
from the header or the flag before anything is allocated (ResourceLimitError, UnsafePathError,
SettingsError, InputsJsonError). The child's RLIMIT_DATA (2 GiB) and the 30 s limit make an
unrefused bomb fail the case instead of the machine.
"""

from __future__ import annotations

import gzip
import json
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hostile.kit import (
    PRE_T2, Setup, batch_args, batch_folder, inputs_json, mri, predict_args, socket_dir, task1_case,
    write_mha_header,
)

BOMB_GB = 8  # what the gzip bomb inflates to


def _predict(root: Path, in_dir: Path, *extra: str, **kw) -> Setup:
    out = root / "out"
    return Setup(predict_args(in_dir, out, *extra), out=out, **kw)


def _header_case(root: Path, data_file: str, **header) -> Path:
    in_dir = root / "in"
    write_mha_header(socket_dir(in_dir, PRE_T2) / "x.mha", data_file, **header)
    inputs_json(in_dir, [PRE_T2])
    return in_dir


def mha_datafile_dev_zero(root: Path) -> Setup:
    return _predict(root, _header_case(root, "/dev/zero"), mention=("x.mha", "/dev/zero"))


def mha_dimsize_huge(root: Path) -> Setup:
    in_dir = _header_case(root, "x.raw", dims=(4000, 4000, 4000), element_type="MET_UCHAR",
                          spacing=(0.1, 0.1, 0.1))
    (socket_dir(in_dir, PRE_T2) / "x.raw").write_bytes(b"\0" * 1024)
    return _predict(root, in_dir, mention=("x.mha",))


@lru_cache(maxsize=1)
def _zeros_member() -> bytes:
    """One gzip member inflating to 64 MiB of zeros (~64 KiB)."""
    return gzip.compress(b"\0" * (64 << 20), compresslevel=9)


def _gzip_bomb(path: Path) -> None:
    """A valid .nii.gz of the phantom (a small image) followed by members inflating to BOMB_GB GiB."""
    sitk.WriteImage(mri(), str(path), True)
    with open(path, "ab") as f:
        member = _zeros_member()
        for _ in range(BOMB_GB * 16):
            f.write(member)


def nii_gz_bomb(root: Path) -> Setup:
    in_dir = root / "in"
    _gzip_bomb(socket_dir(in_dir, PRE_T2) / "x.nii.gz")
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.nii.gz",))


def batch_nii_gz_bomb(root: Path) -> Setup:
    in_dir = root / "in"
    batch_folder(in_dir / "p1")
    (in_dir / "p2").mkdir()
    _gzip_bomb(in_dir / "p2" / f"{PRE_T2}.nii.gz")
    out = root / "out"
    return Setup(batch_args(out, in_dir=in_dir), out=out, batch_ok=("p1",), batch_failed=("p2",),
                 mention=(f"{PRE_T2}.nii.gz",))


def nii_header_huge(root: Path) -> Setup:
    """A .nii header claiming 4000×4000×4000 int16 voxels (128 GB), followed by 1 KiB."""
    import nibabel

    hdr = nibabel.Nifti1Header()
    hdr.set_data_shape((4000, 4000, 4000))
    hdr.set_data_dtype(np.int16)
    hdr.set_zooms((0.1, 0.1, 0.1))
    hdr.set_qform(np.diag([0.1, 0.1, 0.1, 1.0]), code=1)
    hdr["vox_offset"] = 352
    in_dir = root / "in"
    path = socket_dir(in_dir, PRE_T2) / "x.nii"
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 1024)
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.nii",))


@lru_cache(maxsize=1)
def _zlib_zeros() -> bytes:
    return zlib.compress(b"\0" * (64 << 20), 9)


def mha_compressed_bomb(root: Path) -> Setup:
    """CompressedData = True: 64 KiB of zlib stream under a header of 2048×2048×1024 voxels (4 GiB)."""
    in_dir = root / "in"
    folder = socket_dir(in_dir, PRE_T2)
    data = _zlib_zeros()
    (folder / "x.zraw").write_bytes(data)
    write_mha_header(folder / "x.mha", "x.zraw", dims=(2048, 2048, 1024), element_type="MET_UCHAR",
                     spacing=(0.1, 0.1, 0.2),
                     extra=f"CompressedData = True\nCompressedDataSize = {len(data)}\n")
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.mha",))


def _uniform(size, spacing) -> sitk.Image:
    rng = np.random.default_rng(1)
    img = sitk.GetImageFromArray(rng.uniform(50.0, 400.0, size[::-1]).astype(np.float32))
    img.SetSpacing(spacing)
    return img


def spacing_50mm(root: Path) -> Setup:
    """64³ voxels at 50 mm: 3.2 m across, no head and neck; the network would tile it for minutes."""
    return _predict(root, task1_case(root / "in", _uniform((64, 64, 64), (50.0, 50.0, 50.0))),
                    mention=("x.mha",))


def spacing_tiny(root: Path) -> Setup:
    """1e-4 mm voxels: resampled to the model's 2.5 mm the image is smaller than one voxel (or, read the
    other way, a real extent would need 10^12 voxels)."""
    return _predict(root, task1_case(root / "in", mri(spacing=(1e-4, 1e-4, 1e-4))), mention=("x.mha",))


def tile_step_tiny(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in"), "--tile-step", "1e-9")


def tile_step_zero(root: Path) -> Setup:
    return _predict(root, task1_case(root / "in"), "--tile-step", "0")


def tile_step_env_nan(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    out = root / "out"
    return Setup(predict_args(in_dir, out), out=out, env={"HNSEG_TILE_STEP": "nan"})


def batch_tile_step_tiny(root: Path) -> Setup:
    in_dir = root / "in"
    batch_folder(in_dir / "p1")
    out = root / "out"
    return Setup(batch_args(out, "--tile-step", "1e-9", in_dir=in_dir), out=out)


def inputs_json_huge(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    entries = json.loads((in_dir / "inputs.json").read_text())
    entries[0]["value"] = "x" * (2 << 20)  # valid JSON, 2 MiB
    (in_dir / "inputs.json").write_text(json.dumps(entries))
    return _predict(root, in_dir)


def inputs_json_deep(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    (in_dir / "inputs.json").write_text("[" * 100_000 + "]" * 100_000)
    return _predict(root, in_dir)
