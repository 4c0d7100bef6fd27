"""``hnseg phantoms``: write synthetic (or real-mask) HNTS-MRG MRI phantoms, or synthetic CT (+ MRI)
phantoms for the SegRap / NPC tasks, to disk."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from tqdm import tqdm

from hnseg.errors import DatasetLayoutError, SettingsError
from hnseg.phantoms.anatomy import make_mri_case
from hnseg.phantoms.ct_anatomy import DEFAULT_SIZE as CT_SIZE
from hnseg.phantoms.ct_anatomy import DEFAULT_SPACING as CT_SPACING
from hnseg.phantoms.ct_anatomy import make_ct_case
from hnseg.phantoms.ct_layouts import (
    CT_TASKS, write_gc_case as write_ct_gc_case, write_npc_release, write_segrap_release,
)
from hnseg.phantoms.layouts import write_gc_case, write_hntsmrg_release
from hnseg.phantoms.real_masks import make_mri_case_from_real_masks
from hnseg.io.write import write_json_atomic

log = logging.getLogger(__name__)

MRI_TASKS = ("hntsmrg-task1", "hntsmrg-task2")
MRI_SIZE, MRI_SPACING = (112, 112, 48), (1.75, 1.75, 2.5)

_MID_RE = re.compile(r"^([^_]+)_midRT_mask\.nii\.gz$")
_REG_RE = re.compile(r"^([^_]+)_preRT_mask_registered\.nii\.gz$")


def _triple(cast):
    def parse(text: str):
        parts = [p for p in re.split(r"[,x ]+", text.strip()) if p]
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"expected three values X,Y,Z, got {text!r}")
        try:
            vals = tuple(cast(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected three numbers X,Y,Z, got {text!r}") from None
        if any(v <= 0 for v in vals):
            raise argparse.ArgumentTypeError(f"expected positive values, got {text!r}")
        return vals

    return parse


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = ("Write deterministic synthetic phantom cases: HNTS-MRG T2w MRI "
                     "(hntsmrg-task1/2) or head-and-neck CT pairs + T1w MRI (segrap-task1/2, "
                     "npc-targets).")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--n", type=int, default=20, help="number of cases (real-mask mode: at most)")
    p.add_argument("--jobs", type=int, default=1, help="CT phantoms: cases made in parallel processes")
    p.add_argument("--seed", type=int, default=0, help="base seed (case i uses seed*1000 + i)")
    p.add_argument("--layout", choices=("release", "gc"), default="release",
                   help="release: the task's training layout (HNTS-MRG; SegRap segrap_XXXX/ for "
                        "the segrap tasks; npc_XXXX/ for npc-targets, see docs/npc_layout.md); gc: "
                        "grand-challenge inputs per case (<out>/<id>/inputs.json, ground truth in "
                        "<out>/ground_truth/<id>.mha)")
    p.add_argument("--task", choices=MRI_TASKS + CT_TASKS, default="hntsmrg-task2",
                   help="task whose phantoms / sockets are written (CT tasks: case ids 0000, "
                        "0001 …)")
    p.add_argument("--real-masks", type=Path, default=None,
                   help="folder with groundtruth_masks/<id>_midRT_mask.nii.gz and "
                        "prediction_masks/<id>_preRT_mask_registered.nii.gz")
    p.add_argument("--size", type=_triple(int), default=None,
                   help=f"X,Y,Z voxels (default: MRI tasks {','.join(map(str, MRI_SIZE))}; "
                        f"CT tasks {','.join(map(str, CT_SIZE))})")
    p.add_argument("--spacing", type=_triple(float), default=None,
                   help=f"X,Y,Z mm (default: MRI tasks {','.join(map(str, MRI_SPACING))}; "
                        f"CT tasks {','.join(map(str, CT_SPACING))}; CT spacing is jittered ±5 %% "
                        "per case)")
    return p


def real_mask_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """(id, mid-RT mask, registered pre-RT mask) matched by leading id, sorted by id."""
    gt_dir, reg_dir = folder / "groundtruth_masks", folder / "prediction_masks"
    for d in (gt_dir, reg_dir):
        if not d.is_dir():
            raise DatasetLayoutError(f"--real-masks {folder}: expected a folder {d.name}/, not found")
    mids = {m.group(1): f for f in gt_dir.iterdir() if (m := _MID_RE.match(f.name))}
    regs = {m.group(1): f for f in reg_dir.iterdir() if (m := _REG_RE.match(f.name))}
    ids = sorted(set(mids) & set(regs), key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))
    unpaired = sorted(set(mids) ^ set(regs))
    if unpaired:
        log.warning("real masks without a partner (skipped): %s", ", ".join(unpaired))
    if not ids:
        raise DatasetLayoutError(f"--real-masks {folder}: no <id>_midRT_mask.nii.gz / "
                                 f"<id>_preRT_mask_registered.nii.gz pairs found")
    return [(i, mids[i], regs[i]) for i in ids]


def _write(case, args) -> None:
    if args.layout == "release":
        write_hntsmrg_release([case], args.out)
    else:
        gt_dir = args.out / "ground_truth"
        write_gc_case(case, args.out / case.case_id, args.task,
                      ground_truth_path=gt_dir / f"{case.case_id}.mha")
        write_json_atomic(case.info, gt_dir / f"{case.case_id}_phantom_info.json")


def _write_ct(case, args) -> None:
    if args.layout == "release":
        writer = write_npc_release if args.task == "npc-targets" else write_segrap_release
        writer([case], args.out)
    else:
        gt_dir = args.out / "ground_truth"
        write_ct_gc_case(case, args.out / case.case_id, args.task, ground_truth_dir=gt_dir)
        write_json_atomic(case.info, gt_dir / f"{case.case_id}_phantom_info.json")


def _make_and_write_ct(i: int, args: argparse.Namespace, size, spacing) -> None:
    _write_ct(make_ct_case(args.seed * 1000 + i, f"{i:04d}", size=size, spacing=spacing), args)


def _run_ct(args: argparse.Namespace, size, spacing) -> int:
    if args.real_masks is not None:
        raise SettingsError(f"--real-masks is only for the HNTS-MRG MRI tasks {list(MRI_TASKS)}, "
                            f"not --task {args.task}")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = max(1, int(getattr(args, "jobs", 1) or 1))
    progress = tqdm(total=args.n, desc=f"phantoms ({args.task})", unit="case")
    if jobs == 1:
        for i in range(args.n):
            _make_and_write_ct(i, args, size, spacing)
            progress.update()
    else:
        from concurrent.futures import ProcessPoolExecutor
        from functools import partial

        with ProcessPoolExecutor(jobs) as pool:
            for _ in pool.map(partial(_make_and_write_ct, args=args, size=size, spacing=spacing),
                              range(args.n)):
                progress.update()
    progress.close()
    log.info("wrote %d %s phantom case(s) to %s (%s layout)", args.n, args.task, args.out,
             args.layout)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise SettingsError(f"--n: expected a non-negative number of cases, got {args.n}")
    task = getattr(args, "task", "hntsmrg-task2")
    ct_task = task in CT_TASKS
    size = (args.size if getattr(args, "size", None) is not None
            else (CT_SIZE if ct_task else MRI_SIZE))
    spacing = (args.spacing if getattr(args, "spacing", None) is not None
               else (CT_SPACING if ct_task else MRI_SPACING))
    if ct_task:
        return _run_ct(args, size, spacing)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.real_masks is not None:
        pairs = real_mask_pairs(args.real_masks)[: args.n]
        for i, (cid, mid, reg) in enumerate(tqdm(pairs, desc="phantoms (real masks)", unit="case")):
            seed = args.seed * 1000 + (int(cid) if cid.isdigit() else i)
            _write(make_mri_case_from_real_masks(mid, reg, seed, cid), args)
        n = len(pairs)
    else:
        for i in tqdm(range(args.n), desc="phantoms", unit="case"):
            case = make_mri_case(args.seed * 1000 + i, str(1000 + i), size=size, spacing=spacing)
            _write(case, args)
        n = args.n
    log.info("wrote %d phantom case(s) to %s (%s layout)", n, args.out, args.layout)
    return 0


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience entry point
    parser = configure_parser(argparse.ArgumentParser(prog="hnseg phantoms"))
    return run(parser.parse_args(argv))
