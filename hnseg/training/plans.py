"""nnU-Net fingerprint + plan + preprocess, optionally with a tiny CPU-trainable configuration.

The tiny configuration inherits the planner's ``3d_fullres`` (same spacing, normalisation and
preprocessed data) and only replaces the network and patch (as nnU-Net's plans allow with
``inherits_from``), so it trains on 2 CPU cores in minutes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TINY = "3d_tiny"


def tiny_configuration(parent: dict, patch_size: list[int], features: list[int], batch_size: int,
                       spacing: list[float] | None = None) -> dict:
    """A PlainConvUNet with one conv per stage and the given features (stride 1 in z at the top);
    with ``spacing`` (z, y, x mm) its own, coarser resampling (and preprocessed data)."""
    n = len(features)
    arch = json.loads(json.dumps(parent["architecture"]))
    kw = arch["arch_kwargs"]
    strides = [[1, 1, 1]] + [[1, 2, 2]] + [[2, 2, 2]] * (n - 2)
    kernels = [[1, 3, 3]] + [[3, 3, 3]] * (n - 1)
    kw.update(
        n_stages=n,
        features_per_stage=features,
        kernel_sizes=kernels,
        strides=strides,
        n_conv_per_stage=[1] * n,
        n_conv_per_stage_decoder=[1] * (n - 1),
    )
    for k in ("n_blocks_per_stage",):  # ResEnc planners: fall back to the plain U-Net
        kw.pop(k, None)
    arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    config = {"inherits_from": "3d_fullres", "patch_size": patch_size, "batch_size": batch_size,
              "architecture": arch}
    if spacing is not None:
        config.update(spacing=[float(s) for s in spacing], data_identifier="nnUNetPlans_3d_tiny")
    return config


def plan_and_preprocess(
    dataset_id: int,
    planner: str = "ExperimentPlanner",
    tiny: dict | None = None,
    num_processes: int = 2,
) -> tuple[str, str]:
    """Returns (plans identifier, configuration name)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints, plan_experiments, preprocess_dataset,
    )
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    extract_fingerprints([dataset_id], num_processes=num_processes, check_dataset_integrity=True,
                         verbose=False, show_progress_bar=False)
    plans_id = plan_experiments([dataset_id], experiment_planner_class_name=planner)
    configuration = "3d_fullres"
    if tiny is not None:
        plans_file = Path(nnUNet_preprocessed) / convert_id_to_dataset_name(dataset_id) / f"{plans_id}.json"
        plans = json.loads(plans_file.read_text())
        parent = plans["configurations"]["3d_fullres"]
        plans["configurations"][TINY] = tiny_configuration(parent, **tiny)
        plans_file.write_text(json.dumps(plans, indent=2))
        configuration = TINY
        log.info("added configuration %s: %s", TINY, tiny)
    # Without its own spacing TINY shares 3d_fullres's preprocessed data (same data_identifier).
    preprocessed = TINY if tiny is not None and tiny.get("spacing") else "3d_fullres"
    preprocess_dataset(dataset_id, plans_id, configurations=(preprocessed,), num_processes=[num_processes],
                       show_progress_bar=False)
    _copy_case_labels(dataset_id)
    return plans_id, configuration


def _copy_case_labels(dataset_id: int) -> None:
    """Per-case T stages travel with the preprocessed data (the multi-task trainer reads them there)."""
    import shutil

    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    from hnseg.training.convert import T_STAGE_FILE

    name = convert_id_to_dataset_name(dataset_id)
    src = Path(nnUNet_raw) / name / T_STAGE_FILE
    if src.is_file():
        shutil.copy2(src, Path(nnUNet_preprocessed) / name / T_STAGE_FILE)
