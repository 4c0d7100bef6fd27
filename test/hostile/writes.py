"""Class 2, output writes (OutputWriteError): a file where a folder must be, a read-only folder, a full
disk. No 0-byte, partial or ``.part`` file may remain (the runner's snapshot checks every new path).

What can be seen before compute must be refused before it: those cases run with
``kit.tripwire_weights``, so a run that reaches the model ends in WeightsError instead.
A read-only folder stops root only when the child lacks CAP_DAC_OVERRIDE (``launch.py --drop-dac``);
a full disk is RLIMIT_FSIZE (writes past it fail with EFBIG).
"""

from __future__ import annotations

from pathlib import Path

from hostile.kit import OUT_SLUG, Setup, batch_args, batch_folder, predict_args, task1_case, tripwire_weights

FULL_DISK = 256  # bytes: the MHA header alone is longer, so output.mha cannot be written


def predict_output_is_file(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    out = root / "out"
    out.write_text("a file, not a folder\n")
    return Setup(predict_args(in_dir, out, weights=tripwire_weights(root)), mention=(str(out),))


def predict_output_parent_is_file(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    (root / "results").write_text("a file, not a folder\n")
    out = root / "results" / "out"
    return Setup(predict_args(in_dir, out, weights=tripwire_weights(root)), mention=(str(root / "results"),))


def predict_output_slug_is_file(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    out = root / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / OUT_SLUG).write_text("a file where the socket folder must be\n")
    return Setup(predict_args(in_dir, out, weights=tripwire_weights(root)), out=out, mention=(OUT_SLUG,))


def predict_output_read_only(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    out = root / "out"
    out.mkdir()
    return Setup(predict_args(in_dir, out, weights=tripwire_weights(root)), out=out, read_only=(out,),
                 mention=(str(out),))


def predict_full_disk(root: Path) -> Setup:
    in_dir = task1_case(root / "in")
    out = root / "out"
    return Setup(predict_args(in_dir, out), out=out, fsize=FULL_DISK, mention=("output.mha",))


def batch_full_disk(root: Path) -> Setup:
    in_dir = root / "in"
    for c in ("p1", "p2"):
        batch_folder(in_dir / c)
    out = root / "out"
    # the summary (a short CSV) may be written when it fits; nothing else
    return Setup(batch_args(out, in_dir=in_dir), out=out, fsize=FULL_DISK,
                 allowed_new=("out/batch_summary.csv",), mention=("p1",))


def batch_output_is_file(root: Path) -> Setup:
    in_dir = root / "in"
    batch_folder(in_dir / "p1")
    out = root / "out"
    out.write_text("a file, not a folder\n")
    return Setup(batch_args(out, in_dir=in_dir, weights=tripwire_weights(root)), mention=(str(out),))


def batch_output_read_only(root: Path) -> Setup:
    in_dir = root / "in"
    batch_folder(in_dir / "p1")
    out = root / "out"
    out.mkdir()
    return Setup(batch_args(out, in_dir=in_dir, weights=tripwire_weights(root)), out=out, read_only=(out,),
                 mention=(str(out),))
