"""Class 5, input escapes (UnsafePathError; InputsJsonError for inputs.json paths): inputs that lead
out of the input folder, or to something that is not a regular file.

Whatever lies outside is a valid image (``outside/secret.*``): only the escape itself may be refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import SimpleITK as sitk

from hostile.kit import (
    PRE_T2, Setup, batch_args, batch_folder, gc_case, inputs_json, mri, mri_array, predict_args, socket_dir,
    write_mha_header,
)


def _outside(root: Path) -> Path:
    d = root / "outside"
    d.mkdir(exist_ok=True)
    sitk.WriteImage(mri(), str(d / "secret.mha"))
    return d


def _raw_outside(root: Path) -> Path:
    """The phantom's voxels as a raw float32 file outside the input folder."""
    d = root / "outside"
    d.mkdir(exist_ok=True)
    raw = d / "secret.raw"
    raw.write_bytes(mri_array().astype("<f4").tobytes())
    return raw


def _predict(root: Path, in_dir: Path, **kw) -> Setup:
    out = root / "out"
    return Setup(predict_args(in_dir, out), out=out, **kw)


def symlink_in_socket(root: Path) -> Setup:
    secret = _outside(root) / "secret.mha"
    in_dir = root / "in"
    (socket_dir(in_dir, PRE_T2) / "x.mha").symlink_to(secret)
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.mha",))


def socket_folder_symlink(root: Path) -> Setup:
    outside = _outside(root)
    in_dir = root / "in"
    (in_dir / "images").mkdir(parents=True)
    (in_dir / "images" / PRE_T2).symlink_to(outside, target_is_directory=True)
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir)


def images_folder_symlink(root: Path) -> Setup:
    outside = root / "outside"
    gc_case(outside, {PRE_T2: mri()})
    in_dir = root / "in"
    in_dir.mkdir()
    (in_dir / "images").symlink_to(outside / "images", target_is_directory=True)
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("images",))


def mha_datafile_absolute(root: Path) -> Setup:
    raw = _raw_outside(root)
    in_dir = root / "in"
    write_mha_header(socket_dir(in_dir, PRE_T2) / "x.mha", str(raw))
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.mha", "secret.raw"))


def mha_datafile_dotdot(root: Path) -> Setup:
    _raw_outside(root)
    in_dir = root / "in"
    # in/images/<slug>/x.mha → ../../../outside/secret.raw = root/outside/secret.raw
    write_mha_header(socket_dir(in_dir, PRE_T2) / "x.mha", "../../../outside/secret.raw")
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.mha", "secret.raw"))


def mhd_list_outside(root: Path) -> Setup:
    """``ElementDataFile = LIST``: one file per slice, every one of them outside the input folder."""
    d = root / "outside"
    d.mkdir()
    vol = mri_array().astype("<f4")
    slices = []
    for z in range(vol.shape[0]):
        p = d / f"slice{z:02d}.raw"
        p.write_bytes(vol[z].tobytes())
        slices.append(str(p))
    in_dir = root / "in"
    header = write_mha_header(socket_dir(in_dir, PRE_T2) / "x.mhd", "LIST 2D")
    header.write_text(header.read_text() + "\n".join(slices) + "\n")
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.mhd", "slice00.raw"))


def fifo_socket_file(root: Path) -> Setup:
    in_dir = root / "in"
    os.mkfifo(socket_dir(in_dir, PRE_T2) / "x.mha")
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.mha",))


def symlink_to_dev_zero(root: Path) -> Setup:
    in_dir = root / "in"
    (socket_dir(in_dir, PRE_T2) / "x.mha").symlink_to("/dev/zero")
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.mha",))


def batch_case_symlink_out(root: Path) -> Setup:
    secret = _outside(root) / "secret.mha"
    in_dir = root / "in"
    batch_folder(in_dir / "p1")
    (in_dir / "p2").mkdir()
    (in_dir / "p2" / f"{PRE_T2}.mha").symlink_to(secret)
    out = root / "out"
    return Setup(batch_args(out, in_dir=in_dir), out=out, batch_ok=("p1",), batch_failed=("p2",),
                 mention=(f"{PRE_T2}.mha",))


def _relative_path_case(root: Path, relative_path: str) -> Setup:
    _outside(root)
    in_dir = root / "in"
    socket_dir(in_dir, PRE_T2)
    (in_dir / "inputs.json").write_text(json.dumps([
        {"socket": {"slug": PRE_T2, "relative_path": relative_path, "kind": "Image", "super_kind": "Image"},
         "value": None}]))
    return _predict(root, in_dir, mention=(relative_path,))


def relative_path_dotdot(root: Path) -> Setup:
    return _relative_path_case(root, "../outside")


def relative_path_absolute(root: Path) -> Setup:
    return _relative_path_case(root, str(root / "outside"))



def symlink_loop(root: Path) -> Setup:
    in_dir = root / "in"
    folder = socket_dir(in_dir, PRE_T2)
    (folder / "x.mha").symlink_to("y.mha")
    (folder / "y.mha").symlink_to("x.mha")
    inputs_json(in_dir, [PRE_T2])
    return _predict(root, in_dir, mention=("x.mha",))


def batch_dicom_folder_fifo(root: Path) -> Setup:
    """Case p2 is a DICOM series folder whose slices include a FIFO (reading it would block forever)."""
    from hnseg.phantoms.dicom import write_dicom_series

    in_dir = root / "in"
    batch_folder(in_dir / "p1")
    series = in_dir / "p2" / PRE_T2
    write_dicom_series(sitk.Cast(sitk.Round(mri()), sitk.sitkInt16), series, "MR", uids={"seed": "hostile-fifo"})
    os.mkfifo(series / "slice_9999.dcm")
    out = root / "out"
    return Setup(batch_args(out, in_dir=in_dir), out=out, batch_ok=("p1",), batch_failed=("p2",),
                 mention=("slice_9999.dcm",))


def manifest_path_dev_zero(root: Path) -> Setup:
    """Manifest inputs may lie anywhere, but not on a device."""
    batch_folder(root / "src" / "p1")
    manifest = root / "cases.csv"
    manifest.write_text(f"case_id,{PRE_T2}\np1,src/p1/{PRE_T2}.mha\np2,/dev/zero\n")
    out = root / "out"
    return Setup(batch_args(out, manifest=manifest), out=out, batch_ok=("p1",), batch_failed=("p2",),
                 mention=("/dev/zero",))
