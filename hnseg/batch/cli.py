"""``hnseg batch``: segment every case folder under an input folder (or a manifest) with one model load.

Exit code 0 when every case succeeded or was skipped, 1 when any case failed, 2 for a user error of
the whole run (bad flags, missing input folder, existing outputs without --resume/--overwrite, an
output folder that is, holds or lies in an input (``OutputLocationError``), an output folder in use by
another run (``BatchLockError``), a full disk (``OutputWriteError``)), 143 / 130 when stopped by
SIGTERM / SIGINT (the case in progress is cleaned up, ``hnseg.batch.signals``).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from hnseg.errors import OutputLocationError, SettingsError

log = logging.getLogger(__name__)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("Segment many patients with one model load: one sub-folder per case under -i "
                     "(or a --manifest CSV); outputs under -o/<case_id>/ (docs/batch.md).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-i", "--input", dest="input_dir", type=Path, help="folder with one sub-folder per case")
    src.add_argument("--manifest", type=Path, help="CSV: case_id,<socket slug>,… (paths relative to the CSV)")
    p.add_argument("-o", "--output", dest="output_dir", type=Path, required=True,
                   help="output folder (OUT/<case_id>/, batch_summary.csv)")
    p.add_argument("--task", help="task name (or $HNSEG_TASK); one task per batch")
    p.add_argument("--weights", dest="weights_dir", type=Path,
                   help="weights folder, or a folder of <task>/ weights ($HNSEG_WEIGHTS); "
                        "then /opt/ml/model/<task>, then the baked weights/<task>")
    p.add_argument("--model-dir", dest="model_dir", type=Path, help="model tarball folder (default /opt/ml/model)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], help="default auto ($HNSEG_DEVICE)")
    p.add_argument("--tta", choices=["default", "lr", "off"], help="mirror TTA (default: checkpoint's axes)")
    p.add_argument("--tile-step", dest="tile_step", type=float, help="sliding-window step, fraction of patch (0.5)")
    p.add_argument("--folds", help="comma-separated folds to use (default: all in the weights)")
    p.add_argument("--trusted-manifest", dest="trusted_manifest", metavar="SHA256[,SHA256…]",
                   help="refuse weights whose hnseg_weights.json has another sha256 ($HNSEG_TRUSTED_MANIFEST)")
    p.add_argument("--shard", help="i/N: run only the i-th (1-based) of N deterministic shards of the cases")
    p.add_argument("--force", action="store_true", default=None,
                   help="segment images whose intensities look implausible for their modality instead of failing "
                        "the case; the warning goes into the case's report.json ($HNSEG_FORCE=1)")
    p.add_argument("--no-qa", dest="no_qa", action="store_true",
                   help="do not draw OUT/<case_id>/qa.png (one row per structure: axial, coronal, sagittal)")
    p.add_argument("--registration-iterations", dest="registration_iterations", type=int,
                   help="hntsmrg-task2 cases without the registered pre-RT mask are registered here (elastix, "
                        "rigid + the organizers' B-spline file): cap every stage's iterations per resolution "
                        "at N (default: the files' own, 256 rigid / 5000 B-spline)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="skip finished cases (OUT/<case_id>/report.json), redo interrupted ones")
    again.add_argument("--overwrite", action="store_true", help="redo and replace finished cases")


def _check_output_outside_input(output_dir: Path, input_dir: Path | None, cases) -> None:
    """Refuse an output folder that is, contains or lies inside the input folder or any case source (a
    case folder, a manifest path), comparing real paths (symbolic links resolved): a case folder written
    there could replace or delete an input. Runs before anything is written."""
    out = Path(os.path.realpath(output_dir))
    sources: list[tuple[Path, str]] = []
    if input_dir is not None:
        sources.append((Path(input_dir), "the input folder"))
    for c in cases:
        if c.folder is not None:
            sources.append((Path(c.folder), f"the folder of case {c.case_id}"))
        sources += [(Path(p), f"an input of case {c.case_id}") for p in (c.given or {}).values()]
    for path, what in sources:
        real = Path(os.path.realpath(path))
        relation = ("is" if real == out else "lies inside" if real in out.parents
                    else "contains" if out in real.parents else None)
        if relation:
            shown = f"{output_dir} (real path {out})" if out != Path(os.path.abspath(output_dir)) else f"{output_dir}"
            raise OutputLocationError(
                f"output folder {shown}: expected a folder outside the input folder and every case source "
                f"(batch mode never writes into its input), found that it {relation} {what} {path}")


def run(args: argparse.Namespace) -> int:
    from hnseg.batch.discover import discover_cases, read_manifest
    from hnseg.batch.locks import RunPlan
    from hnseg.batch.run import BatchRunner
    from hnseg.batch.signals import BatchInterrupted
    from hnseg.batch.shard import parse_shard, select_shard
    from hnseg.preprocess.registration import RegistrationSettings
    from hnseg.settings import build_settings
    from hnseg.tasks import get_task

    keys = ("weights_dir", "model_dir", "task", "device", "tta", "tile_step", "folds", "trusted_manifest", "force")
    settings = build_settings({k: getattr(args, k, None) for k in keys})
    if not settings.task:
        raise SettingsError("batch: expected --task (or $HNSEG_TASK) naming one task, found none")
    task = get_task(settings.task)
    shard = parse_shard(args.shard) if args.shard else None
    if args.registration_iterations is not None and args.registration_iterations < 1:
        raise SettingsError(f"--registration-iterations: expected a positive number of iterations, found "
                            f"{args.registration_iterations}")
    cases = read_manifest(args.manifest, task) if args.manifest else discover_cases(args.input_dir)
    _check_output_outside_input(args.output_dir, args.input_dir, cases)
    plan = RunPlan.of(task.name, shard, [c.case_id for c in cases])  # the shards of one plan share OUT
    if shard is not None:
        cases = select_shard(cases, *shard, key=lambda c: c.case_id)
        log.info("shard %d/%d: %d case(s)", shard[0], shard[1], len(cases))
    log.info("batch %s: %d case(s) → %s", task.name, len(cases), args.output_dir)
    runner = BatchRunner(task, args.output_dir, settings, resume=args.resume, overwrite=args.overwrite,
                         shard=shard, qa=not args.no_qa,
                         registration=RegistrationSettings(max_iterations=args.registration_iterations), plan=plan)
    try:
        summary = runner.run(cases)
    except BatchInterrupted as exc:  # already logged and summarized by the runner
        return exc.exit_code
    return 1 if summary.failed else 0
