"""``hnseg`` command line: a thin layer over the python API.

    hnseg predict   [--input DIR] [--output DIR] [--weights DIR] [--task T] …   (grand-challenge case)
    hnseg batch     -i DIR|--manifest CSV -o DIR --task T [--shard i/N] [--resume] …   (many patients)
    hnseg prior     --image IMG --mask MASK --kind box --margin 5 --out OUT.nii.gz
    hnseg evaluate  --gt DIR --pred DIR [--task T | --labels GTVp=1,GTVn=2] [--json F] [--csv F]
    hnseg phantoms  --out DIR [--task T] [--n N] [--layout release|gc] …
    hnseg train     convert|plan|fold|export|all …   (see hnseg.training)
    hnseg weights   verify DIR …                     (sha256 manifest of weights folders)
    hnseg compare   --expected DIR --actual DIR       (same files, geometry, voxels; used by test.sh)

User errors (``HnsegError``) print ``<ErrorName>: <message>`` and exit with code 2. A run stopped by
SIGTERM / SIGINT (``hnseg.signals.Interrupted``) prints ``Interrupted: <SIGNAL> received …`` and exits
128 + signal number (143 / 130).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from hnseg.errors import HnsegError
from hnseg.signals import Interrupted

log = logging.getLogger("hnseg")

# sub-command → module with configure_parser(p) and run(args) -> int (imported lazily: torch is slow)
SUBCOMMANDS = {
    "predict": ("hnseg.predict_cli", "segment one grand-challenge case folder"),
    "batch": ("hnseg.batch.cli", "segment many patient folders with one model load (hospital batch mode)"),
    "prior": ("hnseg.preprocess.prior_cli", "write the task-2 prior channel for inspection"),
    "evaluate": ("hnseg.evaluation.cli", "HNTS-MRG DSCagg/HD95, SegRap Dice + NSD, T-stage AUC of predictions vs ground truth"),
    "phantoms": ("hnseg.phantoms.cli", "write synthetic head-and-neck MRI / CT(+MRI) phantoms"),
    "train": ("hnseg.training.cli", "convert a release, train nnU-Net folds, export weights"),
    "weights": ("hnseg.predict.weights_cli", "verify weights folders (pinned / sha256 manifest, checkpoints loadable without running code)"),
    "compare": ("hnseg.evaluation.compare_cli", "compare an output folder with an expected one (test.sh)"),
}


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def run_with_errors(fn, *args) -> int:
    """Call ``fn``; a user error becomes one readable line on stderr and exit code 2, a stop signal
    that the sub-command did not report itself one line and 128 + signal number."""
    try:
        return int(fn(*args) or 0)
    except HnsegError as exc:
        sys.stderr.write(f"{exc.name}: {exc}\n")
        return exc.exit_code
    except Interrupted as exc:
        sys.stderr.write(f"Interrupted: {exc.signal_name} received; the run stopped\n")
        return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hnseg", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    modules = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == chosen:  # only the chosen sub-command's module is imported
            modules[name] = importlib.import_module(module)
            modules[name].configure_parser(p)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_with_errors(modules[args.command].run, args)


if __name__ == "__main__":
    sys.exit(main())
