"""``hnseg weights verify DIR [DIR …]``: check weights folders before baking or uploading them.

Each DIR is a weights folder (``hnseg_weights.json`` + ``model/``) or a folder of them (the layout
of ``weights/`` and of a grand-challenge model tarball). Every file's sha256 is checked against the
manifest; a folder with no weights at all is an error, so an empty tarball is never uploaded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hnseg.errors import WeightsError
from hnseg.predict.weights import METADATA_FILE, load_verified

log = logging.getLogger(__name__)


def weights_folders(root: Path) -> list[Path]:
    """``root`` itself if it is a weights folder, else its direct sub-folders that are."""
    if (root / METADATA_FILE).is_file():
        return [root]
    if not root.is_dir():
        raise WeightsError(f"{root}: expected a weights folder or a folder of them, found no such folder")
    found = sorted(p for p in root.iterdir() if (p / METADATA_FILE).is_file())
    if not found:
        raise WeightsError(f"{root}: expected {METADATA_FILE} in it or in a sub-folder, found none")
    return found


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = __doc__.split("\n\n")[0]
    action = p.add_subparsers(dest="action", required=True)
    v = action.add_parser("verify", help="check every file against the sha256 manifest")
    v.add_argument("folders", nargs="+", type=Path, metavar="DIR")
    return p


def run(args: argparse.Namespace) -> int:
    for root in args.folders:
        for folder in weights_folders(root):
            meta = load_verified(folder)
            log.info("ok  %s  task %s, folds %s, %d files", folder, meta.task,
                     ",".join(map(str, meta.nnunet.folds)), len(meta.files))
    return 0
