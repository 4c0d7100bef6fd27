"""Baseline: hnseg's engine vs nnU-Net's own ``nnUNetv2_predict_from_modelfolder`` on the same case.

Same weights (the demo ensemble), same folds, same mirror TTA, same input channels (hnseg builds the
prior channel once and hands nnU-Net the identical stack as NIfTI files). Prints wall time, peak
memory and the voxel agreement of the two label maps.

    python benchmarks/engine_vs_nnunet.py [--case-id 95] [--folds 0,1,2,3,4] [--tta default|off] \
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HNSEG_SHARED", REPO.parent / "shared")) / "data" / "hntsmrg2024"


def measured(cmd: list[str], env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "measure.py"), "--", *cmd],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"command failed: {cmd}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case-id", default="95", help="real HNTS-MRG geometry (95 = 768×768×116)")
    ap.add_argument("--weights", type=Path, default=REPO / "weights" / "hntsmrg-task2")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--tta", choices=["default", "off"], default="default")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()

    from hnseg.load.case import load_case
    from hnseg.phantoms import make_mri_case_from_real_masks, write_gc_case
    from hnseg.interfaces.grand_challenge import discover_inputs
    from hnseg.predict.weights import read_metadata
    from hnseg.preprocess.channels import build_channels
    from hnseg.tasks import get_task

    work = args.work or Path(tempfile.mkdtemp(prefix="hnseg-bench-"))
    task = get_task("hntsmrg-task2")
    case = make_mri_case_from_real_masks(
        SHARED / "groundtruth_masks" / f"{args.case_id}_midRT_mask.nii.gz",
        SHARED / "prediction_masks" / f"{args.case_id}_preRT_mask_registered.nii.gz", seed=7)
    gc_in = work / "gc_input"
    write_gc_case(case, gc_in, task.name)
    size = case.mid_t2.GetSize()
    print(f"case {args.case_id}: size {size}, spacing {tuple(round(s, 3) for s in case.mid_t2.GetSpacing())}")

    # nnU-Net gets the identical channel stack hnseg builds (prior included) as NIfTI files.
    meta = read_metadata(args.weights)
    loaded = load_case(task, discover_inputs(gc_in))
    stack = build_channels(loaded, meta.channels, meta.prior)
    nn_in = work / "nnunet_input"
    nn_in.mkdir(parents=True, exist_ok=True)
    for c in range(stack.shape[0]):
        img = sitk.GetImageFromArray(stack[c])
        img.CopyInformation(loaded.reference)
        sitk.WriteImage(img, str(nn_in / f"case_{c:04d}.nii.gz"))
    del stack, loaded

    folds = args.folds.split(",")
    hn_out, nn_out = work / "hnseg_out", work / "nnunet_out"
    env = dict(os.environ, nnUNet_raw=str(work), nnUNet_preprocessed=str(work), nnUNet_results=str(work))
    hn = measured([sys.executable, str(REPO / "inference.py"), "--input", str(gc_in), "--output", str(hn_out),
                   "--weights", str(args.weights), "--device", args.device, "--folds", args.folds,
                   "--tta", args.tta])
    exe = Path(sys.executable).parent / "nnUNetv2_predict_from_modelfolder"
    exe = exe if exe.exists() else shutil.which("nnUNetv2_predict_from_modelfolder")
    nn_cmd = [str(exe), "-i", str(nn_in), "-o", str(nn_out), "-m", str(args.weights / "model"), "-f", *folds,
              "-npp", "1", "-nps", "1", "-device", args.device]
    if args.tta == "off":
        nn_cmd.append("--disable_tta")
    nn = measured(nn_cmd, env)

    a = sitk.GetArrayFromImage(sitk.ReadImage(str(hn_out / "images/mri-head-neck-segmentation/output.mha")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(nn_out / "case.nii.gz")))
    agree = float((a == b).mean())
    fg = (a > 0) | (b > 0)
    fg_agree = float((a[fg] == b[fg]).mean()) if fg.any() else 1.0
    print(f"{'':24s}{'wall s':>10s}{'peak RSS MiB':>15s}")
    print(f"{'hnseg inference.py':24s}{hn['wall_s']:>10.1f}{hn['peak_rss_mib']:>15.0f}")
    print(f"{'nnUNetv2_predict':24s}{nn['wall_s']:>10.1f}{nn['peak_rss_mib']:>15.0f}")
    print(f"voxel agreement: {agree:.6f} (all voxels), {fg_agree:.6f} (foreground of either); "
          f"folds {args.folds}, tta {args.tta}, device {args.device}, work {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
