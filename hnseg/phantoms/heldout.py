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


def evaluate_segmenter(segmenter, cases, task_name: str = "hntsmrg-task2", subsets=None):
    """Run ``segmenter`` once on each case (through the grand-challenge input layout).

    Returns the evaluation report over all cases, or, with ``subsets`` (name → predicate on a case),
    a dict of reports, one per subset (``None`` as predicate = all cases)."""
    from hnseg.evaluation import evaluate_pairs
    from hnseg.interfaces.grand_challenge import discover_inputs
    from hnseg.phantoms import write_gc_case

    labels = {"GTVp": 1, "GTVn": 2}
    with tempfile.TemporaryDirectory(prefix="hnseg-heldout-") as tmp:
        work = Path(tmp)
        pairs = {}
        for c in cases:
            gt = work / "gt" / f"{c.case_id}_gt.nii.gz"
            gt.parent.mkdir(parents=True, exist_ok=True)
            write_gc_case(c, work / "in" / c.case_id, task_name, ground_truth_path=gt)
            out = segmenter.segment(segmenter.load(discover_inputs(work / "in" / c.case_id)))
            pred = work / "pred" / f"{c.case_id}_pred.nii.gz"
            pred.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(next(iter(out.values())), str(pred))
            pairs[c.case_id] = (c, (c.case_id, gt, pred))

        def report(pred_fn):
            chosen = [p for c, p in pairs.values() if pred_fn is None or pred_fn(c)]
            return evaluate_pairs(chosen, labels, distances=False, progress=False)

        if subsets is None:
            return report(None)
        return {name: report(fn) for name, fn in subsets.items()}


HELDOUT_CT_SEED = 9000  # CT training phantoms use seeds 0…N-1 (hnseg phantoms --seed 0)


def heldout_ct_cases(n: int = 12):
    from hnseg.phantoms.ct_anatomy import make_ct_case

    return [make_ct_case(HELDOUT_CT_SEED + i, f"{HELDOUT_CT_SEED + i:04d}") for i in range(n)]


def evaluate_stack_segmenter(segmenter, cases, task_name: str):
    """Run ``segmenter`` on each CT phantom (grand-challenge layout) and score the 4D outputs (and
    the T stage) with ``hnseg evaluate``'s SegRap metrics; returns the ``StackReport``."""
    from hnseg.evaluation import evaluate_stack_folders
    from hnseg.interfaces.grand_challenge import discover_inputs
    from hnseg.phantoms.ct_layouts import write_gc_case as write_ct_gc_case
    from hnseg.write.outputs import write_outputs

    with tempfile.TemporaryDirectory(prefix="hnseg-heldout-ct-") as tmp:
        work = Path(tmp)
        for c in cases:
            write_ct_gc_case(c, work / "in" / c.case_id, task_name, ground_truth_dir=work / "gt")
            out = segmenter.segment(segmenter.load(discover_inputs(work / "in" / c.case_id)))
            write_outputs(work / "pred" / c.case_id, segmenter.task, out)
        return evaluate_stack_folders(work / "gt", work / "pred", segmenter.task, progress=False)
