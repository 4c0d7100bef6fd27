"""``hnseg compare --expected DIR --actual DIR [--max-voxel-fraction F]``.

Prints one line per file and a verdict; exit 0 when everything matches, 1 otherwise. ``test.sh``
runs it inside the image, so a participant's machine needs nothing but Docker.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hnseg.errors import MissingInputError
from hnseg.evaluation.compare import compare_folders


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = "Compare an output folder with the expected one: same files, geometry and voxels."
    p.add_argument("--expected", required=True, type=Path, help="folder of expected outputs")
    p.add_argument("--actual", required=True, type=Path, help="folder the algorithm wrote")
    p.add_argument(
        "--max-voxel-fraction", type=float, default=0.0, metavar="F",
        help="label maps may differ in at most F x (expected foreground voxels); default 0 = identical",
    )
    return p


def run(args: argparse.Namespace) -> int:
    for name, folder in (("--expected", args.expected), ("--actual", args.actual)):
        if not folder.is_dir():
            raise MissingInputError(f"{name} {folder}: expected a folder, found none")
    verdicts = compare_folders(args.expected, args.actual, args.max_voxel_fraction)
    for v in verdicts:
        sys.stdout.write(f"  {'ok  ' if v.ok else 'FAIL'} {v.path}: {v.detail}\n")
    ok = bool(verdicts) and all(v.ok for v in verdicts)
    if not verdicts:
        sys.stdout.write("  FAIL no files in either folder\n")
    sys.stdout.write(("MATCH" if ok else "MISMATCH") + "\n")
    return 0 if ok else 1
