"""``hnseg train``: release → nnU-Net raw dataset → plan/preprocess → train folds → export weights.

    hnseg train --task hntsmrg-task2 --release RELEASE --work WORK --out weights/hntsmrg-task2 \\
        [--prior box|band|none] [--folds 0,1,2,3,4] [--planner nnUNetPlannerResEncM] \\
        [--trainer nnUNetTrainer] [--configuration 3d_fullres | --tiny] [--epochs N] [--iterations N] \\
        [--device cpu|cuda] [--steps convert,plan,train,export]

The same command trains the phantom demo on 2 CPU cores (``--tiny``, few epochs) and real data on a
GPU (planner's 3d_fullres, nnU-Net's default 1000 epochs).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from hnseg.errors import SettingsError
from hnseg.preprocess.priors import PriorSpec
from hnseg.tasks import get_task
from hnseg.tasks.encoding import StructureEncoding

log = logging.getLogger(__name__)

STEPS = ("convert", "plan", "train", "export")
DEFAULT_DATASET_IDS = {"hntsmrg-task1": 801, "hntsmrg-task2": 802, "segrap-task1": 803,
                       "segrap-task2": 804, "npc-targets": 805}
# the seeds' trainers: SegRap poster (Dice + focal, deep supervision), Grad-MTSeg (multi-task)
DEFAULT_TRAINERS = {"segrap-task1": "nnUNetTrainerDiceFocal", "segrap-task2": "nnUNetTrainerDiceFocal",
                    "npc-targets": "nnUNetTrainerHnsegMultiTask"}


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--release", type=Path,
                   help="training release folder (HNTS-MRG, SegRap or NPC layout, by task)")
    p.add_argument("--work", type=Path, required=True, help="nnU-Net raw/preprocessed/results folders go here")
    p.add_argument("--out", type=Path, help="weights folder to export to (e.g. weights/hntsmrg-task2)")
    p.add_argument("--dataset-id", type=int)
    p.add_argument("--prior", choices=["box", "band", "none"], default="box", help="task-2 prior kind")
    p.add_argument("--prior-margin", default="5", help="box prior inference margin, voxels: 5 or x,y,z")
    p.add_argument("--band-mm", type=float, default=10.0, help="band prior inference width (mm)")
    p.add_argument("--prior-overlap-rule", action="store_true",
                   help="store the winner's post-processing rule as on in the weights")
    p.add_argument("--folds", default="0,1,2,3,4")
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--planner", default="ExperimentPlanner",
                   help="nnU-Net planner class (the seed used nnUNetPlannerResEncM)")
    p.add_argument("--trainer", help="nnU-Net trainer class name (default per task: "
                   f"{DEFAULT_TRAINERS}, else nnUNetTrainer)")
    p.add_argument("--encoding", choices=["pieces", "regions"], default="pieces",
                   help="overlapping structures as softmax pieces (default; on the NPC phantoms sigmoid regions "
                        "left many OARs at Dice 0, see trainers/multitask.py) or sigmoid regions")
    p.add_argument("--task-granularity", choices=["group", "structure"], default="group",
                   help="multi-task trainer: one gradient task per structure group or per structure")
    p.add_argument("--configuration", default="3d_fullres")
    p.add_argument("--tiny", action="store_true", help="add and use a tiny CPU-trainable configuration")
    p.add_argument("--tiny-patch", default="32,64,64", help="tiny patch size z,y,x")
    p.add_argument("--tiny-features", default="8,16,32,64")
    p.add_argument("--tiny-batch", type=int, default=2)
    p.add_argument("--tiny-spacing", help="tiny configuration's own target spacing z,y,x (mm)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--iterations", type=int, help="training iterations per epoch")
    p.add_argument("--val-iterations", type=int)
    p.add_argument("--minutes-per-fold", type=float,
                   help="wall-clock budget per fold: epochs stay, iterations per epoch are re-fitted "
                        "after each epoch to end in time (--iterations = the first epoch's)")
    p.add_argument("--pretrained", type=Path,
                   help="nnU-Net checkpoint (checkpoint_final.pth) of the same architecture to start from: every "
                        "layer but the output layers and the T-stage head (transfer learning)")
    p.add_argument("--processes", type=int, default=2, help="processes for nnU-Net's preprocessing")
    p.add_argument("--weights-dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of the exported network weights (float16 halves the size; "
                        "inference still runs in float32)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--demo", action="store_true", help="mark the weights as phantom-trained demo weights")
    p.add_argument("--note", default="")
    p.add_argument("--steps", default=",".join(STEPS))


def _prior(args, task) -> PriorSpec | None:
    if task.prior_channel is None:
        return None
    m = _ints(args.prior_margin)
    return PriorSpec(kind=args.prior, margin=tuple(m * 3 if len(m) == 1 else m), band_mm=args.band_mm)


def run(args: argparse.Namespace) -> int:
    from hnseg.training.nnunet_env import set_nnunet_dirs

    task = get_task(args.task)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise SettingsError(f"--steps: expected some of {STEPS}, found unknown {sorted(unknown)}")
    if "convert" in steps and args.release is None:
        raise SettingsError("--release: the convert step needs the training release folder")
    if "export" in steps and args.out is None:
        raise SettingsError("--out: the export step needs the weights folder to write")
    args.trainer = args.trainer or DEFAULT_TRAINERS.get(task.name, "nnUNetTrainer")
    dirs = set_nnunet_dirs(args.work)
    from hnseg.training.trainers import make_trainers_findable

    make_trainers_findable()  # export looks the trainer up by name too
    dataset_id = args.dataset_id or DEFAULT_DATASET_IDS.get(task.name)
    if dataset_id is None:
        raise SettingsError(f"--dataset-id: no default nnU-Net dataset id for {task.name}; give one")
    prior = _prior(args, task)
    folds = _ints(args.folds)
    state_file = Path(args.work) / f"hnseg_train_{dataset_id}.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if {"train", "export"} & set(steps) and "plan" not in steps and not state:
        raise SettingsError(f"{state_file}: the plan step has not run in this work folder")

    from hnseg.training.convert import convert, dataset_name
    from hnseg.training.releases import release_samples

    name = dataset_name(dataset_id, task)
    if "convert" in steps:
        convert(task, release_samples(args.release, task.name), dirs["nnUNet_raw"], dataset_id, prior,
                seed=args.seed, n_folds=args.n_folds,
                encoding_mode=args.encoding,
                task_granularity=args.task_granularity)
    if "plan" in steps:
        from hnseg.training.plans import plan_and_preprocess

        tiny = None
        if args.tiny:
            tiny = {"patch_size": _ints(args.tiny_patch), "features": _ints(args.tiny_features),
                    "batch_size": args.tiny_batch,
                    "spacing": [float(v) for v in args.tiny_spacing.split(",")] if args.tiny_spacing else None}
        plans_id, configuration = plan_and_preprocess(dataset_id, args.planner, tiny, args.processes)
        if not args.tiny:
            configuration = args.configuration
        state.update(plans_id=plans_id, configuration=configuration, planner=args.planner, tiny=tiny)
        state_file.write_text(json.dumps(state, indent=2))
    if "train" in steps:
        from hnseg.training.train import train_fold

        for f in folds:
            train_fold(dataset_id, state["plans_id"], state["configuration"], f, args.trainer, args.device,
                       args.epochs, args.iterations, args.val_iterations, args.seed,
                       args.minutes_per_fold, args.pretrained)
    if "export" in steps:
        from hnseg.training.export import export_weights

        results = (dirs["nnUNet_results"] / name /
                   f"{args.trainer}__{state['plans_id']}__{state['configuration']}")
        fold_info = json.loads((results / f"fold_{folds[0]}" / "hnseg_training.json").read_text())
        training = {
            "command": "hnseg train " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
            "release": str(args.release), "planner": state["planner"], "tiny": state.get("tiny"),
            "trainer": args.trainer, "configuration": state["configuration"], "folds": folds,
            **{k: fold_info[k] for k in ("epochs", "iterations_per_epoch", "batch_size", "device")},
            **({"pretrained": fold_info["pretrained"]} if fold_info.get("pretrained") else {}),
            "weights_dtype": args.weights_dtype,
            "seed": args.seed,
        }
        conversion = json.loads((dirs["nnUNet_raw"] / name / "hnseg_conversion.json").read_text())
        encoding = conversion.get("encoding")
        export_weights(task, results, folds, args.out, prior, args.trainer, state["plans_id"],
                       state["configuration"], name, training, demo=args.demo, note=args.note,
                       postprocess_prior_overlap=args.prior_overlap_rule,
                       encoding=StructureEncoding.model_validate(encoding) if encoding else None,
                       weights_dtype=args.weights_dtype, orientation=conversion.get("orientation"))
    return 0
