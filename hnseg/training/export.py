"""Export trained folds into a hnseg weights folder (``weights/<task>/``) with metadata + sha256.

Checkpoints are slimmed to what inference needs (network weights, trainer name, configuration,
mirror axes): they load with ``torch.load(weights_only=True)`` and are half the size. With
``weights_dtype="float16"`` the floating-point weights are stored in half precision (half again);
``load_state_dict`` casts them back into the float32 network at inference. The written folder is
loaded back the way inference loads it (``weights.load_weights``: weights_only, exact slim keys)
before it replaces ``out_dir``.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

from hnseg.io.write import temp_folder
from hnseg.predict.weights import METADATA_FILE, MODEL_DIR, NnunetInfo, WeightsMetadata, load_weights, manifest
from hnseg.preprocess.channels import channels_for
from hnseg.preprocess.priors import PriorSpec
from hnseg.tasks import TaskProfile
from hnseg.tasks.encoding import StructureEncoding

log = logging.getLogger(__name__)


def _inference_trainer_name(trainer: str) -> str:
    """Name stored in the checkpoint: nnU-Net's base trainer when the network is the same, so
    inference needs no custom trainer module on its search path."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.run.run_training import recursive_find_trainer_class_by_name

    cls = recursive_find_trainer_class_by_name(trainer)
    same = cls.build_network_architecture is nnUNetTrainer.build_network_architecture
    return "nnUNetTrainer" if same else trainer


def _cast_weights(state: dict, dtype) -> dict:
    """Floating-point tensors cast to ``dtype``, keeping aliases shared: nnU-Net's U-Nets hold each
    conv twice (``conv`` and ``all_modules``) and the encoder again in the decoder, and torch.save
    stores a shared tensor once, so casting each entry separately would triple the file."""
    cast: dict = {}
    out = {}
    for k, v in state.items():
        if not v.is_floating_point() or v.dtype == dtype:
            out[k] = v
            continue
        key = (v.data_ptr(), tuple(v.shape), tuple(v.stride()))
        if key not in cast:
            cast[key] = v.to(dtype)
        out[k] = cast[key]
    return out


def export_weights(
    task: TaskProfile,
    results_dir: Path,
    folds: list[int],
    out_dir: Path,
    prior: PriorSpec | None,
    trainer: str,
    plans_id: str,
    configuration: str,
    dataset_name: str,
    training: dict,
    demo: bool,
    note: str = "",
    postprocess_prior_overlap: bool = False,
    encoding: StructureEncoding | None = None,
    weights_dtype: str = "float32",
    orientation: str | None = None,
) -> Path:
    """Write ``out_dir`` (replaced atomically: built in a temp folder beside it, then renamed)."""
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    results_dir = Path(results_dir)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(out_dir.parent, f".{out_dir.name}.")
    try:
        model = tmp / MODEL_DIR
        model.mkdir()
        plans = json.loads((results_dir / "plans.json").read_text())
        resolved = dict(PlansManager(plans).get_configuration(configuration).configuration)
        resolved.pop("inherits_from", None)  # flattened: the exported plans hold one configuration
        plans["configurations"] = {configuration: resolved}
        plans.pop("continue_training", None)
        (model / "plans.json").write_text(json.dumps(plans, indent=2))
        shutil.copy2(results_dir / "dataset.json", model / "dataset.json")
        ckpt_trainer = _inference_trainer_name(trainer)
        for f in folds:
            # this machine's own training output: nnU-Net's full checkpoints (optimizer state, numpy
            # logging) need weights_only=False; what is written below is slim and weights_only-loadable
            ck = torch.load(results_dir / f"fold_{f}" / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
            axes = ck.get("inference_allowed_mirroring_axes")
            slim = {  # only plain str / int / tuple / tensors: weights_only-loadable (checked below)
                "network_weights": _cast_weights(ck["network_weights"], getattr(torch, weights_dtype)),
                "trainer_name": str(ckpt_trainer),
                "init_args": {"configuration": str(configuration)},
                "inference_allowed_mirroring_axes": None if axes is None else tuple(int(a) for a in axes),
            }
            (model / f"fold_{f}").mkdir()
            torch.save(slim, model / f"fold_{f}" / "checkpoint_final.pth")
        meta = WeightsMetadata(
            task=task.name,
            channels=list(channels_for(task.channels, prior)),
            prior=prior,
            labels=task.label_map,
            encoding=encoding,
            postprocess_prior_overlap=postprocess_prior_overlap,
            orientation=orientation,
            nnunet=NnunetInfo(configuration=configuration, plans=plans_id, trainer=trainer, folds=folds,
                              dataset_name=dataset_name),
            training={**training, "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            demo=demo,
            note=note,
            files=manifest(tmp),
        )
        (tmp / METADATA_FILE).write_text(meta.model_dump_json(indent=2) + "\n")
        load_weights(tmp)  # what inference will load: refuses a checkpoint weights_only cannot read
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s (%d folds) to %s", task.name, len(folds), out_dir)
    return out_dir
