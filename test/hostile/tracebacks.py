"""Class 8, tracebacks turned into named errors: batch inputs that ended in a bare traceback. (The other
tracebacks of the issue, a read-only output folder, an output path that is a file, a truncated
checkpoint, a missing plans.json and a deeply nested inputs.json, are cases of classes 2, 3 and 6.)
"""

from __future__ import annotations

from pathlib import Path

from hostile.kit import PRE_T2, Setup, batch_args, batch_folder


def _manifest(root: Path, text: bytes) -> tuple[Path, Path]:
    batch_folder(root / "src" / "p1")
    batch_folder(root / "src" / "p2")
    manifest = root / "cases.csv"
    manifest.write_bytes(text)
    return manifest, root / "out"


def manifest_nul_bytes(root: Path) -> Setup:
    manifest, out = _manifest(root, (f"case_id,{PRE_T2}\np1,src/p1/{PRE_T2}.mha\n"
                                     f"p2,src/p2/{PRE_T2}\0.mha\n").encode())
    return Setup(batch_args(out, manifest=manifest), out=out, mention=(str(manifest),))


def manifest_not_text(root: Path) -> Setup:
    manifest, out = _manifest(root, b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00binary")
    return Setup(batch_args(out, manifest=manifest), out=out, mention=(str(manifest),))


def case_named_summary(root: Path) -> Setup:
    in_dir = root / "in"
    batch_folder(in_dir / "p1")
    batch_folder(in_dir / "batch_summary.csv")
    out = root / "out"
    return Setup(batch_args(out, in_dir=in_dir), out=out)


def case_named_shard_summary(root: Path) -> Setup:
    in_dir = root / "in"
    batch_folder(in_dir / "p1")
    batch_folder(in_dir / "Batch_Summary_shard-1-of-2.CSV")
    out = root / "out"
    return Setup(batch_args(out, in_dir=in_dir), out=out)
