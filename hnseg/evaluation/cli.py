"""``hnseg evaluate --gt DIR --pred DIR [--task NAME] [--labels GTVp=1,GTVn=2] [--json FILE] [--csv FILE]``.

Without ``--task``, or with an HNTS-MRG task, label maps are evaluated the HNTS-MRG way (DSCagg …).
With a task whose outputs include a 4D binary stack (``segrap-task1``, ``segrap-task2``,
``npc-targets``) the stacks are evaluated the SegRap way (Dice + normalized surface Dice per
structure, see ``hnseg.evaluation.stacks``), plus T-stage accuracy/AUC when the task has a T-stage
output and the GT folder holds ``<case>_t-stage.json`` files.

Prints the fixed-width table to stdout and returns 0. User errors (``HnsegError``: missing pairs,
spacing mismatch, unreadable files) propagate to the top-level CLI, which prints them as one line and
exits non-zero.
"""

from __future__ import annotations

import argparse
import sys

from hnseg.evaluation import DEFAULT_LABELS, evaluate_folders
from hnseg.errors import SettingsError
from hnseg.tasks import TASKS, get_task


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
        "and per-case DSC, HD95 and mean surface distance. With --task segrap-task1/segrap-task2/"
        "npc-targets, evaluate 4D binary stacks the SegRap 2023 way (mean Dice and normalized surface "
        "Dice per structure, their means and (DSC+NSD)/2) and, for npc-targets, the T stage "
        "(accuracy, one-vs-rest AUC, confusion matrix)."
    )
    p.add_argument("--gt", required=True, help="folder of ground-truth masks (files or case folders)")
    p.add_argument("--pred", required=True, help="folder of predicted masks (files or case folders)")
    default = ",".join(f"{k}={v}" for k, v in DEFAULT_LABELS.items())
    p.add_argument(
        "--task", choices=sorted(TASKS), default=None,
        help="task profile: a task with a binary-stack output is evaluated with Dice + NSD on 4D "
        "stacks (and T stage); without it (or an HNTS-MRG task) label maps are evaluated",
    )
    p.add_argument(
        "--labels", type=parse_labels, default=None,
        help=f"structure=label pairs for label maps (default {default})",
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
    task_name = getattr(args, "task", None)
    labels = getattr(args, "labels", None)
    if task_name:
        from hnseg.evaluation.stacks import evaluate_stack_folders

        task = get_task(task_name)
        if task.stack_output is not None:
            if labels is not None:
                raise SettingsError(
                    f"--labels applies to label-map evaluation only; task {task.name} writes a 4D "
                    f"binary stack whose structures come from the task profile"
                )
            report = evaluate_stack_folders(
                args.gt, args.pred, task, progress=not getattr(args, "no_progress", False)
            )
            return _emit(report, args)
        if labels is None:
            labels = task.label_map
    report = evaluate_folders(
        args.gt,
        args.pred,
        dict(DEFAULT_LABELS) if labels is None else labels,
        distances=not getattr(args, "no_distances", False),
        progress=not getattr(args, "no_progress", False),
    )
    return _emit(report, args)


def _emit(report, args: argparse.Namespace) -> int:
    """Write the optional JSON/CSV files and print the table (label-map or stack report)."""
    if getattr(args, "json", None):
        report.write_json(args.json)
    if getattr(args, "csv", None):
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
