"""Held-out phantom evaluation shared by the prior benchmark and the demo-accuracy test.

Held-out phantoms use seeds far from the training seeds (training: 0…N-1, ids 1000+i; held-out:
5000+i, ids 5000+i). Every fourth case is forced to have a tumour extending beyond the registered
box, every fourth (offset 1) a vanished GTVp, so both named failure modes are always present.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import SimpleITK as sitk

HELDOUT_SEED = 5000


def heldout_cases(n: int = 12):
    from hnseg.phantoms import make_mri_case

    cases = []
    for i in range(n):
        forced = {}
        if i % 4 == 0:
            forced["beyond_box"] = True
        elif i % 4 == 1:
            forced["gtvp_vanished"] = True
        cases.append(make_mri_case(HELDOUT_SEED + i, str(HELDOUT_SEED + i), **forced))
    return cases


def evaluate_segmenter(segmenter, cases, task_name: str = "hntsmrg-task2", subset=None):
    """Run ``segmenter`` on each case (through the grand-challenge input layout), return the report."""
    from hnseg.evaluation import evaluate_pairs
    from hnseg.interfaces.grand_challenge import discover_inputs
    from hnseg.phantoms import write_gc_case

    with tempfile.TemporaryDirectory(prefix="hnseg-heldout-") as tmp:
        work = Path(tmp)
        pairs = []
        for c in cases:
            if subset is not None and not subset(c):
                continue
            gt = work / "gt" / f"{c.case_id}_gt.nii.gz"
            gt.parent.mkdir(parents=True, exist_ok=True)
            write_gc_case(c, work / "in" / c.case_id, task_name, ground_truth_path=gt)
            out = segmenter.segment(segmenter.load(discover_inputs(work / "in" / c.case_id)))
            pred = work / "pred" / f"{c.case_id}_pred.nii.gz"
            pred.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(next(iter(out.values())), str(pred))
            pairs.append((c.case_id, gt, pred))
        return evaluate_pairs(pairs, {"GTVp": 1, "GTVn": 2}, distances=False, progress=False)
