"""``hnseg predict`` / ``inference.py``: segment one grand-challenge case folder.

SIGTERM / SIGINT (``docker stop``, a scheduler's time limit, Ctrl-C) stop the run through
``hnseg.signals``: the exception unwinds the pipeline, the atomic writers remove their temporary file,
one line ``Interrupted: SIGTERM received …`` goes to stderr and the exit code is 128 + signal number
(143 / 130). Every output file is complete or absent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hnseg.settings import build_settings
from hnseg.signals import Interrupted, StopSignals


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
    p.add_argument("--prior-margin", dest="prior_margin",
                   help="override the box prior margin: 5 or 5,5,2 (voxels along the canonical x, y, z: L-R, P-A, S-I)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--prior-overlap-rule", dest="prior_overlap_rule", action="store_true", default=None,
                      help="drop predicted components not touching the registered pre-RT mask of their class")
    rule.add_argument("--no-prior-overlap-rule", dest="prior_overlap_rule", action="store_false")


def run(args: argparse.Namespace) -> int:
    settings = build_settings(vars(args))
    with StopSignals() as signals:
        try:
            with signals.interruptible():  # importing torch included: it takes seconds
                from hnseg.pipeline import run_grand_challenge

                run_grand_challenge(settings)
        except Interrupted as exc:
            sys.stderr.write(f"Interrupted: {exc.signal_name} received; the run stopped, every file under "
                             f"{settings.output_dir} is complete or absent (no partial output)\n")
            return exc.exit_code
    return 0
