"""Accuracy of the committed CT demo ensembles on held-out CT phantoms (seeds 9000+, never trained
on), through the full pipeline (grand-challenge inputs → Segmenter → 4D stacks → SegRap metrics).

Prints, per task: mean Dice / NSD over all structures, per structure group (OAR / GTV / CTV), the
T-stage accuracy and macro AUC (npc-targets), and seconds per case; optionally every structure.

    python benchmarks/ct_demo_accuracy.py [--tasks segrap-task1,segrap-task2,npc-targets] [--n 10]
        [--device auto|cpu|cuda] [--tta default|off] [--folds 0,1,2] [--per-structure] [--json F]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CT_TASKS = ("segrap-task1", "segrap-task2", "npc-targets")


def summarize(report, task, seconds: float) -> dict:
    groups = {g.group: round(g.mean_dice, 4) for g in report.groups}
    if not groups:  # single-group tasks: SegRap task 1 = OARs, task 2 = GTVs
        groups = {"oar" if task.name == "segrap-task1" else "gtv": round(report.mean_dice, 4)}
    out = {"task": task.name, "n_cases": report.n_cases, "mean_dice": round(report.mean_dice, 4),
           "mean_nsd": round(report.mean_nsd, 4), "score": round(report.score, 4),
           "group_mean_dice": groups, "seconds_per_case": round(seconds / max(report.n_cases, 1), 2),
           "per_structure_dice": {s.structure: round(s.mean_dice, 4) for s in report.per_structure}}
    if report.t_stage is not None:
        out["t_stage"] = {"accuracy": round(report.t_stage.accuracy, 4),
                          "macro_auc": (None if report.t_stage.macro_auc is None
                                        else round(report.t_stage.macro_auc, 4)),
                          "n_correct": report.t_stage.n_correct, "n": report.t_stage.n,
                          "confusion_matrix": report.t_stage.confusion_matrix}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(CT_TASKS))
    ap.add_argument("--n", type=int, default=10, help="held-out phantoms")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tta", default="default", choices=["default", "lr", "off"])
    ap.add_argument("--folds", default=None, help="folds to ensemble (default: all in the weights)")
    ap.add_argument("--weights-root", type=Path, default=REPO / "weights")
    ap.add_argument("--per-structure", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the summaries here")
    args = ap.parse_args()

    from hnseg.phantoms.heldout import evaluate_stack_segmenter, heldout_ct_cases
    from hnseg.pipeline import Segmenter
    from hnseg.settings import PredictSettings
    from hnseg.tasks import get_task

    settings = PredictSettings(device=args.device, tta=args.tta,
                               folds=tuple(int(f) for f in args.folds.split(",")) if args.folds else None)
    cases = heldout_ct_cases(args.n)
    stages = [c.t_stage for c in cases]
    print(f"{args.n} held-out CT phantoms (seeds 9000…{9000 + args.n - 1}), T stages "
          + ", ".join(f"{s}: {stages.count(s)}" for s in sorted(set(stages)))
          + f"; device {args.device}, TTA {args.tta}, folds {args.folds or 'all'}")
    results = []
    for name in args.tasks.split(","):
        task = get_task(name)
        seg = Segmenter(task, args.weights_root / name, settings)
        t0 = time.perf_counter()
        report = evaluate_stack_segmenter(seg, cases, name)
        s = summarize(report, task, time.perf_counter() - t0)
        results.append(s)
        groups = ", ".join(f"{g} {v:.4f}" for g, v in s["group_mean_dice"].items())
        line = (f"{name:14s} mean DSC {s['mean_dice']:.4f}  NSD {s['mean_nsd']:.4f}  "
                f"score {s['score']:.4f}  [{groups}]  {s['seconds_per_case']:.1f} s/case")
        if "t_stage" in s:
            t = s["t_stage"]
            line += f"  T-stage accuracy {t['accuracy']:.4f} ({t['n_correct']}/{t['n']}), macro AUC {t['macro_auc']}"
        print(line, flush=True)
        if args.per_structure:
            for k, v in s["per_structure_dice"].items():
                print(f"    {k:18s} {v:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
