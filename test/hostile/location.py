"""Class 1, data loss: output folders that are, contain or lie inside the input (OutputLocationError).

Refused before anything is read or loaded (``kit.tripwire_weights``: a run that gets as far as the
model ends in WeightsError). Every input file must be byte-identical afterwards (the runner's snapshot
hashes every file under the case's folder before and after the run). ``work/in`` holds two valid
batch cases (p1, p2).
"""

from __future__ import annotations

from pathlib import Path

from hostile.kit import PRE_T2, Setup, batch_args, batch_folder, mri, predict_args, task1_case, tripwire_weights


def _batch_input(root: Path) -> Path:
    in_dir = root / "work" / "in"
    for c in ("p1", "p2"):
        batch_folder(in_dir / c)
    return in_dir


def batch_out_parent_of_in(root: Path) -> Setup:
    in_dir = _batch_input(root)
    out = in_dir.parent
    return Setup(batch_args(out, in_dir=in_dir, weights=tripwire_weights(root)), out=out, mention=(str(out),))


def batch_out_is_in(root: Path) -> Setup:
    in_dir = _batch_input(root)
    return Setup(batch_args(in_dir, in_dir=in_dir, weights=tripwire_weights(root)), out=in_dir, mention=(str(in_dir),))


def batch_out_inside_in(root: Path) -> Setup:
    in_dir = _batch_input(root)
    out = in_dir / ".results"  # hidden: not taken for a case folder
    return Setup(batch_args(out, in_dir=in_dir, weights=tripwire_weights(root)), out=out, mention=(str(out),))


def batch_out_symlink_into_in(root: Path) -> Setup:
    in_dir = _batch_input(root)
    (in_dir / ".results").mkdir()
    link = root / "work" / "results"
    link.symlink_to(in_dir / ".results")
    return Setup(batch_args(link, in_dir=in_dir, weights=tripwire_weights(root)), out=link, mention=(str(link),))


def _manifest(root: Path) -> tuple[Path, Path]:
    src = root / "work" / "src"
    batch_folder(src / "p1")
    batch_folder(src / "p2")
    manifest = root / "work" / "cases.csv"
    manifest.write_text(f"case_id,{PRE_T2}\np1,src/p1/{PRE_T2}.mha\np2,src/p2/{PRE_T2}.mha\n")
    return manifest, src


def manifest_out_inside_case_source(root: Path) -> Setup:
    """Case p2's source is a DICOM series folder; -o lies inside it."""
    import SimpleITK as sitk

    from hnseg.phantoms.dicom import write_dicom_series

    manifest, src = _manifest(root)
    series = src / "p2-series"
    write_dicom_series(sitk.Cast(sitk.Round(mri()), sitk.sitkInt16), series, "MR", uids={"seed": "hostile-p2"})
    manifest.write_text(f"case_id,{PRE_T2}\np1,src/p1/{PRE_T2}.mha\np2,src/p2-series\n")
    out = series / "out"
    return Setup(batch_args(out, manifest=manifest, weights=tripwire_weights(root)), out=out,
                 mention=(str(out), "p2-series"))


def manifest_out_contains_case_source(root: Path) -> Setup:
    manifest, src = _manifest(root)
    return Setup(batch_args(src, manifest=manifest, weights=tripwire_weights(root)), out=src, mention=(str(src),))


def predict_out_is_in(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    return Setup(predict_args(in_dir, in_dir, weights=tripwire_weights(root)), out=in_dir, mention=(str(in_dir),))


def predict_out_inside_in(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    out = in_dir / "images"  # /output/images/<slug>/ would land among the input sockets
    return Setup(predict_args(in_dir, out, weights=tripwire_weights(root)), out=out, mention=(str(out),))


def manifest_case_id_is_a_path(root: Path) -> Setup:
    """A manifest case id ``../escaped``: ``OUT/<case_id>`` would be a folder beside the output folder."""
    manifest, src = _manifest(root)
    manifest.write_text(f"case_id,{PRE_T2}\n../escaped,src/p1/{PRE_T2}.mha\n")
    out = root / "work" / "out"
    return Setup(batch_args(out, manifest=manifest, weights=tripwire_weights(root)), out=out, mention=(str(manifest),))
