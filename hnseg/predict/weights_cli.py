"""``hnseg weights verify DIR [DIR …]``: check weights folders before baking or uploading them.

Each DIR is a weights folder (``hnseg_weights.json`` + ``model/``) or a folder of them (the layout
of ``weights/`` and of a grand-challenge model tarball). Each is checked exactly as the engine
checks it before inference (``weights.load_weights`` + ``engine.build_network``, no network run): the
pinned sha256 of ``hnseg_weights.json`` (``--trusted-manifest`` / ``$HNSEG_TRUSTED_MANIFEST``), every
file's sha256 against the manifest, no symlinks, plans/dataset JSON, every checkpoint loaded with
``torch.load(weights_only=True)`` and schema-checked, the network built from the plans with every
fold's weights. A folder with no weights at all is an error, so an empty tarball is never uploaded.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from hnseg.errors import WeightsError
from hnseg.predict.weights import METADATA_FILE, load_weights

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
    v = action.add_parser("verify", help="check the sha256 manifest and that every checkpoint loads safely")
    v.add_argument("folders", nargs="+", type=Path, metavar="DIR")
    v.add_argument("--trusted-manifest", dest="trusted_manifest", metavar="SHA256[,SHA256…]",
                   help="refuse folders whose hnseg_weights.json has another sha256 ($HNSEG_TRUSTED_MANIFEST)")
    return p


def run(args: argparse.Namespace) -> int:
    from hnseg.predict.engine import build_network
    from hnseg.settings import ENV, build_settings

    var = ENV["trusted_manifest"]  # only this variable: verify has no other run settings
    trusted = build_settings({"trusted_manifest": args.trusted_manifest},
                             environ={var: os.environ.get(var, "")}).predict.trusted_manifest
    for root in args.folders:
        for folder in weights_folders(root):
            loaded = load_weights(folder, trusted=trusted)
            build_network(loaded)
            meta = loaded.meta
            log.info("ok  %s  task %s, folds %s, %d files, checkpoints weights_only-loadable%s", folder, meta.task,
                     ",".join(map(str, meta.nnunet.folds)), len(meta.files), ", pinned" if trusted else "")
    return 0
