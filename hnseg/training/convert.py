"""Release samples → an nnU-Net raw dataset, building channels with the inference code path.

Each sample is loaded and validated like an inference case (``load_case``), its channels built by
``build_channels`` (the prior with margins drawn from a generator seeded by (seed, sample index)),
written as ``imagesTr/<case>_<cccc>.nii.gz``; labels copied as uint8. Writes ``dataset.json`` and a
patient-grouped ``splits_final.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from hnseg.io.read import read_image
from hnseg.io.write import write_image_atomic, write_json_atomic
from hnseg.load.case import load_case
from hnseg.load.grid import describe_grid, same_grid
from hnseg.errors import DatasetLayoutError
from hnseg.preprocess.channels import build_channels, channels_for
from hnseg.preprocess.priors import PriorSpec
from hnseg.tasks import TaskProfile
from hnseg.training.releases.hntsmrg import Sample
from hnseg.training.splits import grouped_kfold

log = logging.getLogger(__name__)

FILE_ENDING = ".nii.gz"


def dataset_name(dataset_id: int, task: TaskProfile) -> str:
    return f"Dataset{dataset_id:03d}_{task.name.replace('-', '')}"


def _write_channel(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    img = sitk.GetImageFromArray(array.astype(np.float32, copy=False))
    img.CopyInformation(reference)
    write_image_atomic(img, path)


def convert(
    task: TaskProfile,
    samples: list[Sample],
    raw_root: Path,
    dataset_id: int,
    prior: PriorSpec | None,
    seed: int = 0,
    n_folds: int = 5,
) -> Path:
    """Write the raw dataset folder; returns it."""
    channels = channels_for(task.channels, prior)
    folder = Path(raw_root) / dataset_name(dataset_id, task)
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    allowed = {0, *task.label_map.values()}
    for i, s in enumerate(tqdm(samples, desc=f"convert {task.name}", unit="sample")):
        case = load_case(task, s.inputs)
        label = read_image(s.label, what=f"label of {s.name}")
        if not same_grid(case.reference, label):
            raise DatasetLayoutError(
                f"{s.label}: label must share the grid of {case.files[task.reference_socket]}: expected "
                f"{describe_grid(case.reference)}, found {describe_grid(label)}"
            )
        lab = sitk.GetArrayFromImage(label)
        bad = set(np.unique(lab).tolist()) - allowed
        if bad:
            raise DatasetLayoutError(f"{s.label}: expected labels in {sorted(allowed)}, found {sorted(bad)}")
        rng = np.random.default_rng([seed, i])
        stacked = build_channels(case, channels, prior, rng)
        for c in range(stacked.shape[0]):
            _write_channel(stacked[c], case.reference, folder / "imagesTr" / f"{s.name}_{c:04d}{FILE_ENDING}")
        out = sitk.GetImageFromArray(lab.astype(np.uint8))
        out.CopyInformation(case.reference)
        write_image_atomic(out, folder / "labelsTr" / f"{s.name}{FILE_ENDING}")
    dataset_json = {
        "channel_names": {str(i): c.name for i, c in enumerate(channels)},
        "labels": {"background": 0, **task.label_map},
        "numTraining": len(samples),
        "file_ending": FILE_ENDING,
        "name": task.name,
        "description": f"hnseg {task.name}, prior {prior.kind if prior else 'none'}",
    }
    write_json_atomic(dataset_json, folder / "dataset.json")
    # nnU-Net's planner copies a splits_final.json found in the raw folder into preprocessed.
    write_json_atomic(grouped_kfold(samples, n_folds, seed=12345 + seed), folder / "splits_final.json")
    write_json_atomic(
        {"task": task.name, "prior": prior.model_dump() if prior else None,
         "channels": [c.model_dump() for c in channels], "seed": seed,
         "samples": [json.loads(s.model_dump_json()) for s in samples]},
        folder / "hnseg_conversion.json",
    )
    log.info("wrote %s (%d samples, %d channels)", folder, len(samples), len(channels))
    return folder
