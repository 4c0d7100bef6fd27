"""Release samples → an nnU-Net raw dataset, building channels with the inference code path.

Each sample is loaded and validated like an inference case (``load_case``), brought to hnseg's
canonical orientation (``preprocess.orientation``: axes permuted/flipped, recorded in the
conversion record and from there in the weights), its channels built by
``build_channels`` (the prior with margins drawn from a generator seeded by (seed, sample index)),
written as ``imagesTr/<case>_<cccc>.nii.gz``; labels copied as uint8. Writes ``dataset.json`` and a
patient-grouped ``splits_final.json``.

Tasks with per-structure masks (SegRap, NPC) first collect every voxel membership in the release,
build the piece table (``training.pieces``) and then write piece label maps; ``dataset.json`` gets
the pieces as classes (softmax) or the structures as regions of pieces (sigmoid, multi-task).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
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
from hnseg.preprocess.orientation import CANONICAL, reorient_case
from hnseg.preprocess.priors import PriorSpec
from hnseg.tasks import TaskProfile
from hnseg.tasks.encoding import StructureEncoding
from hnseg.training.pieces import build_encoding, count_codes, encode, membership_codes
from hnseg.training.releases.sample import Sample
from hnseg.training.splits import grouped_kfold

log = logging.getLogger(__name__)

FILE_ENDING = ".nii.gz"
T_STAGE_FILE = "hnseg_t_stage.json"  # copied into the preprocessed folder for the multi-task trainer


def dataset_name(dataset_id: int, task: TaskProfile) -> str:
    return f"Dataset{dataset_id:03d}_{task.name.replace('-', '')}"


def _write_channel(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    img = sitk.GetImageFromArray(array.astype(np.float32, copy=False))
    img.CopyInformation(reference)
    write_image_atomic(img, path)


def _read_label(path: Path, reference: sitk.Image | None, reference_path: Path | None,
                allowed: set[int]) -> np.ndarray:
    label = read_image(path, what=f"label {path.name}")
    if reference is not None and not same_grid(reference, label):
        raise DatasetLayoutError(
            f"{path}: label must share the grid of {reference_path}: expected "
            f"{describe_grid(reference)}, found {describe_grid(label)}"
        )
    lab = sitk.GetArrayFromImage(label)
    bad = set(np.unique(lab).tolist()) - allowed
    if bad:
        raise DatasetLayoutError(f"{path}: expected labels in {sorted(allowed)}, found {sorted(bad)[:10]}")
    return lab


def _structure_codes(s: Sample, task: TaskProfile, reference: sitk.Image | None = None,
                     reference_path: Path | None = None) -> np.ndarray:
    masks = []
    for name in task.structures:
        masks.append(_read_label(s.structures[name], reference, reference_path, {0, 1}))
        if masks[-1].shape != masks[0].shape:
            raise DatasetLayoutError(f"{s.structures[name]}: shape {masks[-1].shape} differs from "
                                     f"{s.structures[task.structures[0]]} {masks[0].shape}")
    return membership_codes(masks)


def piece_table(task: TaskProfile, samples: list[Sample], mode: str,
                min_fraction: float = 0.01) -> tuple[StructureEncoding, dict[int, int]]:
    """First pass over a per-structure release: the piece table of every voxel membership seen."""
    counts = Counter()
    for s in tqdm(samples, desc=f"memberships {task.name}", unit="sample"):
        counts.update(count_codes(_structure_codes(s, task)))
    seen = {i for code in counts for i in range(len(task.structures)) if code >> i & 1}
    absent = [s for i, s in enumerate(task.structures) if i not in seen]
    if absent:
        raise DatasetLayoutError(f"{task.name}: structures {absent} are empty in every sample of the "
                                 "release; expected each to appear in at least one")
    encoding, code_to_value = build_encoding(counts, task.structures, mode, min_fraction)
    log.info("%d pieces for %d structures (%s)", len(encoding.pieces), len(task.structures), mode)
    return encoding, code_to_value


def convert(
    task: TaskProfile,
    samples: list[Sample],
    raw_root: Path,
    dataset_id: int,
    prior: PriorSpec | None,
    seed: int = 0,
    n_folds: int = 5,
    encoding_mode: str = "pieces",
    task_granularity: str = "group",
    min_piece_fraction: float = 0.01,
) -> Path:
    """Write the raw dataset folder; returns it."""
    channels = channels_for(task.channels, prior)
    folder = Path(raw_root) / dataset_name(dataset_id, task)
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    allowed = {0, *task.label_map.values()}
    per_structure = bool(samples) and samples[0].label is None
    encoding, code_to_value = (piece_table(task, samples, encoding_mode, min_piece_fraction)
                               if per_structure else (None, {}))
    for i, s in enumerate(tqdm(samples, desc=f"convert {task.name}", unit="sample")):
        stored = load_case(task, s.inputs)
        ref_path = stored.files[task.reference_socket]
        if per_structure:
            lab = encode(_structure_codes(s, task, stored.reference, ref_path), code_to_value)
        else:
            lab = _read_label(s.label, stored.reference, ref_path, allowed)
        # every sample in one orientation (recorded in the weights), as inference will present it
        case, reorientation = reorient_case(stored, CANONICAL)
        lab = reorientation.to_canonical(lab)
        rng = np.random.default_rng([seed, i])
        stacked = build_channels(case, channels, prior, rng)
        for c in range(stacked.shape[0]):
            _write_channel(stacked[c], case.reference, folder / "imagesTr" / f"{s.name}_{c:04d}{FILE_ENDING}")
        out = sitk.GetImageFromArray(lab.astype(np.uint8))
        out.CopyInformation(case.reference)
        write_image_atomic(out, folder / "labelsTr" / f"{s.name}{FILE_ENDING}")
    dataset_json = {
        "channel_names": {str(i): c.name for i, c in enumerate(channels)},
        "labels": encoding.nnunet_labels() if encoding else {"background": 0, **task.label_map},
        "numTraining": len(samples),
        "file_ending": FILE_ENDING,
        "name": task.name,
        "description": f"hnseg {task.name}, prior {prior.kind if prior else 'none'}",
    }
    if encoding is not None and encoding.mode == "regions":
        dataset_json["regions_class_order"] = list(range(1, len(encoding.structures) + 1))
    if encoding is not None:
        # read by hnseg's multi-task trainer (nnU-Net ignores unknown keys)
        dataset_json["hnseg"] = {
            "task_groups": {k: list(v) for k, v in task.task_groups.items()},
            "t_stage": task.t_stage.model_dump() if task.t_stage else None,
            "task_granularity": task_granularity,
        }
    if task.t_stage is not None:
        write_json_atomic({"classes": list(task.t_stage.classes),
                           "cases": {s.name: s.t_stage for s in samples}}, folder / T_STAGE_FILE)
    write_json_atomic(dataset_json, folder / "dataset.json")
    # nnU-Net's planner copies a splits_final.json found in the raw folder into preprocessed.
    write_json_atomic(grouped_kfold(samples, n_folds, seed=12345 + seed), folder / "splits_final.json")
    write_json_atomic(
        {"task": task.name, "prior": prior.model_dump() if prior else None,
         "encoding": encoding.model_dump() if encoding else None,
         "channels": [c.model_dump() for c in channels], "seed": seed, "orientation": CANONICAL,
         "samples": [json.loads(s.model_dump_json()) for s in samples]},
        folder / "hnseg_conversion.json",
    )
    log.info("wrote %s (%d samples, %d channels)", folder, len(samples), len(channels))
    return folder
