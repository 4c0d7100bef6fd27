"""Task-2 DSCagg on the same held-out phantoms for models trained the same way with: no prior, the
seed's box prior, the box-free band prior (and the box prior + the winner's overlap rule).

    python benchmarks/prior_comparison.py [--box DIR --band DIR --none DIR] [--n 12] [--folds 0,1,2,3,4]

The three weights folders come from ``scripts/train_demo_weights.sh`` (the same training command,
only ``--prior`` differs).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hnseg.phantoms.heldout import evaluate_segmenter, heldout_cases

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--box", type=Path, default=REPO / "weights" / "hntsmrg-task2")
    ap.add_argument("--band", type=Path, default=REPO / "weights" / "variants" / "hntsmrg-task2-band")
    ap.add_argument("--none", type=Path, default=REPO / "weights" / "variants" / "hntsmrg-task2-none")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--folds", default="0,1", help="same folds for every variant (the variants hold 0,1)")
    ap.add_argument("--tta", default="off", help="mirror TTA for every variant (default: off, to keep it short)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from hnseg.pipeline import Segmenter
    from hnseg.settings import PredictSettings
    from hnseg.tasks import get_task

    task = get_task("hntsmrg-task2")
    cases = heldout_cases(args.n)
    groups = {
        "all": None,
        "beyond-box": lambda c: c.info["beyond_box"],
        "GTVp vanished": lambda c: c.info["gtvp_vanished"],
    }
    print(f"held-out phantoms: {len(cases)} (beyond box: {sum(c.info['beyond_box'] for c in cases)}, "
          f"GTVp vanished: {sum(c.info['gtvp_vanished'] for c in cases)})")
    print(f"{'variant':28s}{'subset':16s}{'GTVp':>8s}{'GTVn':>8s}{'mean':>8s}{'GTVp FP ml':>12s}")
    folds = tuple(int(f) for f in args.folds.split(",")) if args.folds else None
    runs = [("none", args.none, False), ("box (seed)", args.box, False),
            ("band (box-free)", args.band, False), ("box + overlap rule", args.box, True)]
    for label, folder, rule in runs:
        settings = PredictSettings(device="cpu", tta=args.tta, folds=folds, prior_overlap_rule=rule)
        seg = Segmenter(task, folder, settings)
        for g, r in evaluate_segmenter(seg, cases, subsets=groups).items():
            p, n = r.dsc_agg("GTVp"), r.dsc_agg("GTVn")
            fmt = lambda v: f"{v:8.4f}" if v is not None else f"{'n/a':>8s}"  # noqa: E731
            s = next(x for x in r.structures if x.structure == "GTVp")
            fp_ml = (s.sum_pred_mm3 - s.sum_tp_mm3) / 1000.0  # false-positive GTVp volume, pooled
            print(f"{label:28s}{g:16s}{fmt(p)}{fmt(n)}{fmt(r.mean_dsc_agg)}{fp_ml:12.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
