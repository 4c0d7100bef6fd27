"""``hnseg predict`` / ``inference.py``: segment one grand-challenge case folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from hnseg.settings import build_settings


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", dest="input_dir", type=Path, help="case folder (default /input, $HNSEG_INPUT)")
    p.add_argument("--output", dest="output_dir", type=Path, help="output folder (default /output, $HNSEG_OUTPUT)")
    p.add_argument("--weights", dest="weights_dir", type=Path,
                   help="weights folder, or a folder of <task>/ weights ($HNSEG_WEIGHTS); "
                        "then /opt/ml/model/<task>, then the baked weights/<task>")
    p.add_argument("--trusted-manifest", dest="trusted_manifest", metavar="SHA256[,SHA256…]",
                   help="refuse weights whose hnseg_weights.json has another sha256 ($HNSEG_TRUSTED_MANIFEST)")
    p.add_argument("--model-dir", dest="model_dir", type=Path, help="grand-challenge model folder (default /opt/ml/model)")
    p.add_argument("--task", help="task name; default: chosen from the input sockets ($HNSEG_TASK)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], help="default auto ($HNSEG_DEVICE)")
    p.add_argument("--tta", choices=["default", "lr", "off"],
                   help="mirror TTA: checkpoint's axes (default), left-right only, off ($HNSEG_TTA)")
    p.add_argument("--tile-step", dest="tile_step", type=float, help="sliding-window step, fraction of patch (0.5)")
    p.add_argument("--folds", help="comma-separated folds to use (default: all in the weights)")
    p.add_argument("--force", action="store_true", default=None,
                   help="segment images whose intensities look implausible for their modality (logged as a "
                        "warning) instead of refusing them ($HNSEG_FORCE=1)")
    p.add_argument("--prior-margin", dest="prior_margin", help="override the box prior margin: 5 or 5,5,2 (voxels x,y,z)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--prior-overlap-rule", dest="prior_overlap_rule", action="store_true", default=None,
                      help="drop predicted components not touching the registered pre-RT mask of their class")
    rule.add_argument("--no-prior-overlap-rule", dest="prior_overlap_rule", action="store_false")


def run(args: argparse.Namespace) -> int:
    from hnseg.pipeline import run_grand_challenge

    settings = build_settings(vars(args))
    run_grand_challenge(settings)
    return 0
