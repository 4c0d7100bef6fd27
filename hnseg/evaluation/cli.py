"""``hnseg evaluate --gt DIR --pred DIR [--labels GTVp=1,GTVn=2] [--json FILE] [--csv FILE]``.

Prints the fixed-width table to stdout and returns 0. User errors (``HnsegError``: missing pairs,
spacing mismatch, unreadable files) propagate to the top-level CLI, which prints them as one line and
exits non-zero.
"""

from __future__ import annotations

import argparse
import sys

from hnseg.evaluation import DEFAULT_LABELS, evaluate_folders


def parse_labels(text: str) -> dict[str, int]:
    """``"GTVp=1,GTVn=2"`` → ``{"GTVp": 1, "GTVn": 2}``."""
    labels: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(
                f"expected NAME=VALUE pairs with integer values >= 1 (e.g. GTVp=1,GTVn=2), got {part!r}"
            )
        if name in labels or int(value) in labels.values():
            raise argparse.ArgumentTypeError(f"duplicate structure name or label value in {text!r}")
        labels[name] = int(value)
    if not labels:
        raise argparse.ArgumentTypeError("expected at least one NAME=VALUE pair")
    return labels


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = (
        "Evaluate predicted label maps against ground truth the HNTS-MRG 2024 way: per-structure "
        "aggregated Dice (DSCagg, physical volumes pooled over cases), their mean (ranking score), "
        "and per-case DSC, HD95 and mean surface distance."
    )
    p.add_argument("--gt", required=True, help="folder of ground-truth masks (files or case folders)")
    p.add_argument("--pred", required=True, help="folder of predicted masks (files or case folders)")
    default = ",".join(f"{k}={v}" for k, v in DEFAULT_LABELS.items())
    p.add_argument(
        "--labels", type=parse_labels, default=dict(DEFAULT_LABELS),
        help=f"structure=label pairs (default {default})",
    )
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    p.add_argument("--csv", metavar="FILE", help="write one row per case x structure as CSV")
    p.add_argument(
        "--no-distances", action="store_true", help="skip HD95 / mean surface distance (faster)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    report = evaluate_folders(
        args.gt,
        args.pred,
        args.labels,
        distances=not getattr(args, "no_distances", False),
        progress=not getattr(args, "no_progress", False),
    )
    if args.json:
        report.write_json(args.json)
    if args.csv:
        report.write_csv(args.csv)
    sys.stdout.write(report.to_table())
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m hnseg.evaluation.cli``)."""
    from hnseg.errors import HnsegError

    parser = configure_parser(argparse.ArgumentParser(prog="hnseg evaluate"))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except HnsegError as exc:
        sys.stderr.write(f"{exc.name}: {exc}\n")
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
