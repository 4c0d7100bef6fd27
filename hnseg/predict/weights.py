"""A weights folder: nnU-Net's trained-model folder plus hnseg's metadata and sha256 manifest.

Layout of ``weights/<task>/``::

    hnseg_weights.json          # WeightsMetadata (task, channels, prior, labels, training, files)
    model/plans.json            # nnU-Net plans (one configuration used)
    model/dataset.json
    model/fold_<k>/checkpoint_final.pth   # slim checkpoints (weights_only-loadable)

Every file under ``model/`` is listed with its sha256; loading verifies all of them first. The
manifest only catches accidents (whoever swaps a checkpoint can re-compute it), so loading never
executes anything from the folder: checkpoints are read with ``torch.load(weights_only=True)`` and
must hold exactly the slim keys, plans/dataset JSON must have nnU-Net's structure, no symlinks. An
operator pins a folder by the sha256 of ``hnseg_weights.json`` itself (``trusted`` /
``--trusted-manifest``), checked before anything else is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hnseg.errors import WeightsError, WeightsIntegrityError
from hnseg.preprocess.orientation import valid_code
from hnseg.preprocess.priors import PriorSpec
from hnseg.tasks import ChannelSpec
from hnseg.tasks.encoding import StructureEncoding

log = logging.getLogger(__name__)

METADATA_FILE = "hnseg_weights.json"
MODEL_DIR = "model"
SLIM_KEYS = ("network_weights", "trainer_name", "init_args", "inference_allowed_mirroring_axes")
SLIM_DESCRIPTION = (
    "a slim checkpoint loadable with torch.load(weights_only=True): a dict with exactly "
    "network_weights (str -> tensor), trainer_name (str), init_args ({'configuration': str}) and "
    "inference_allowed_mirroring_axes (spatial axes 0-2, or None)"
)


class NnunetInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    configuration: str
    plans: str
    trainer: str
    folds: list[int]
    checkpoint: str = "checkpoint_final.pth"
    dataset_name: str


class WeightsMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int = 1
    task: str
    channels: list[ChannelSpec]
    prior: PriorSpec | None = None
    labels: dict[str, int]
    encoding: StructureEncoding | None = Field(
        default=None, description="piece/region encoding of overlapping structures; None = label map"
    )
    postprocess_prior_overlap: bool = Field(
        default=False, description="drop predicted components not touching the registered mask (task 2)"
    )
    orientation: str | None = Field(
        default=None, description="SimpleITK orientation code every training case was brought to "
        "(hnseg.preprocess.orientation); inference reorients inputs to it. None: not recorded (older exports)"
    )
    nnunet: NnunetInfo
    training: dict[str, Any] = Field(default_factory=dict)
    demo: bool = False
    note: str = ""
    files: dict[str, str] = Field(description="path relative to the weights folder → sha256")

    @field_validator("orientation")
    @classmethod
    def _orientation_code(cls, v: str | None) -> str | None:
        if v is not None and not valid_code(v):
            raise ValueError(f"expected an orientation code such as 'LPS', found {v!r}")
        return v


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder/model`` (paths relative to ``folder``)."""
    model = folder / MODEL_DIR
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(model.rglob("*")) if p.is_file()
    }


def _metadata_bytes(folder: Path) -> bytes:
    path = folder / METADATA_FILE
    if path.is_symlink():
        raise WeightsError(f"{path}: expected a regular file inside the weights folder, found a symlink "
                           f"to {os.readlink(path)}")
    if not path.is_file():
        raise WeightsError(f"{folder}: expected a weights folder with {METADATA_FILE}, found none")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot be read ({exc.strerror}); expected a file readable by this user") from None


def _parse_metadata(path: Path, data: bytes) -> WeightsMetadata:
    try:
        return WeightsMetadata.model_validate_json(data)
    except ValidationError as exc:
        raise WeightsError(f"{path}: not valid hnseg weights metadata: {exc}") from None


def read_metadata(folder: Path) -> WeightsMetadata:
    return _parse_metadata(folder / METADATA_FILE, _metadata_bytes(folder))


def check_trusted(path: Path, data: bytes, trusted: tuple[str, ...] | None) -> str:
    """sha256 of the metadata file's bytes; with ``trusted`` pins, one of them or WeightsIntegrityError."""
    found = hashlib.sha256(data).hexdigest()
    if trusted and found not in trusted:
        raise WeightsIntegrityError(
            f"{path}: sha256 not trusted, expected {' or '.join(trusted)} (--trusted-manifest / "
            f"HNSEG_TRUSTED_MANIFEST), found {found}; refusing the weights folder before opening any checkpoint"
        )
    return found


def check_no_symlinks(folder: Path) -> None:
    """The manifest describes regular files inside the folder: no symlink anywhere under model/."""
    model = folder / MODEL_DIR
    if model.is_symlink():
        raise WeightsError(f"{model}: expected a folder inside the weights folder, found a symlink "
                           f"to {os.readlink(model)}")
    for dirpath, dirnames, filenames in os.walk(model, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            if p.is_symlink():
                raise WeightsError(f"{p}: expected a regular file or folder inside the weights folder, "
                                   f"found a symlink to {os.readlink(p)}")


def verify(folder: Path, meta: WeightsMetadata) -> None:
    """Check every listed file exists with its sha256 and no unlisted file sits under model/."""
    check_no_symlinks(folder)
    found = manifest(folder)
    for rel, expected in meta.files.items():
        if rel not in found:
            raise WeightsIntegrityError(f"{folder / rel}: listed in {METADATA_FILE} but missing")
        if found[rel] != expected:
            raise WeightsIntegrityError(
                f"{folder / rel}: sha256 mismatch, expected {expected}, found {found[rel]} "
                "(file changed or corrupted; re-export or re-download the weights)"
            )
    extra = sorted(set(found) - set(meta.files))
    if extra:
        raise WeightsIntegrityError(
            f"{folder}: files not in the {METADATA_FILE} manifest: {extra}"
        )


def load_verified(folder: Path, trusted: tuple[str, ...] | None = None) -> WeightsMetadata:
    """Metadata of ``folder`` after the pin (if any) and the sha256 manifest check; opens no checkpoint."""
    path = folder / METADATA_FILE
    data = _metadata_bytes(folder)
    check_trusted(path, data, trusted)
    meta = _parse_metadata(path, data)
    verify(folder, meta)
    log.info("weights %s verified (%d files, task %s)", folder, len(meta.files), meta.task)
    return meta


@dataclass(frozen=True)
class SlimCheckpoint:
    """One fold's checkpoint after the weights_only load and the schema check."""

    path: Path
    network_weights: dict
    trainer_name: str
    configuration: str
    inference_allowed_mirroring_axes: tuple[int, ...] | None


@dataclass(frozen=True)
class LoadedWeights:
    """A verified weights folder: metadata, nnU-Net's plans / dataset JSON, the requested folds."""

    folder: Path
    meta: WeightsMetadata
    plans: dict
    dataset_json: dict
    checkpoints: dict[int, SlimCheckpoint]

    @property
    def first(self) -> SlimCheckpoint:
        return next(iter(self.checkpoints.values()))


def _load_failure(exc: BaseException) -> str:
    """torch.load's error, without its advice to retry with weights_only=False or to allow-list globals."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.S)
        reason = m.group(1) if m else next(
            (ln for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), type(exc).__name__)
        reason = " ".join(reason.split(" Please use `torch.serialization")[0].split())
        return f"unpickling refused ({reason})"[:300]
    first = text.strip().splitlines()[0] if text.strip() else "empty or truncated file"
    return f"{type(exc).__name__}: {first}"[:300]


def _tensor_dict(v: Any) -> bool:
    import torch

    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def load_checkpoint(path: Path, data: bytes | None = None) -> SlimCheckpoint:
    """``torch.load(weights_only=True)`` of a slim checkpoint (``data``: its bytes, already read)."""
    import torch

    try:
        if data is None:
            data = path.read_bytes()
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": the load either succeeds or is refused
            warnings.simplefilter("ignore")
            ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, the user gets a named error
        raise WeightsError(f"{path}: expected {SLIM_DESCRIPTION}, found: {_load_failure(exc)}") from None

    def bad(found: str) -> WeightsError:
        return WeightsError(f"{path}: expected {SLIM_DESCRIPTION}, found {found}")

    if not isinstance(ck, dict):
        raise bad(f"a {type(ck).__name__}")
    if set(ck) != set(SLIM_KEYS):
        extra, missing = sorted(map(str, set(ck) - set(SLIM_KEYS))), sorted(set(SLIM_KEYS) - set(ck))
        raise bad(f"keys {sorted(map(str, ck))} (unexpected: {extra}, missing: {missing})")
    if not _tensor_dict(ck["network_weights"]) or not ck["network_weights"]:
        raise bad("network_weights that is not a non-empty dict of str -> tensor")
    if not isinstance(ck["trainer_name"], str) or not ck["trainer_name"].isidentifier():
        raise bad(f"trainer_name {ck['trainer_name']!r}")
    init = ck["init_args"]
    if not (isinstance(init, dict) and set(init) == {"configuration"} and isinstance(init["configuration"], str)):
        raise bad(f"init_args {init!r}")
    axes = ck["inference_allowed_mirroring_axes"]
    if axes is not None:
        if not (isinstance(axes, (tuple, list))
                and all(type(a) is int and 0 <= a <= 2 for a in axes) and len(set(axes)) == len(axes)):
            raise bad(f"inference_allowed_mirroring_axes {axes!r}")
        axes = tuple(axes)
    return SlimCheckpoint(path, ck["network_weights"], ck["trainer_name"], init["configuration"], axes)


def _read_listed(folder: Path, meta: WeightsMetadata, rel: str) -> bytes:
    """The bytes of a manifest-listed file, checked against its sha256 again (the file is read once
    and loaded from these bytes, so it cannot change between the check and the load)."""
    path = folder / rel
    if rel not in meta.files:
        raise WeightsIntegrityError(f"{path}: expected a file listed in {METADATA_FILE}, found it unlisted")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot be read ({exc.strerror}); expected a file readable by this user") from None
    found = hashlib.sha256(data).hexdigest()
    if found != meta.files[rel]:
        raise WeightsIntegrityError(f"{path}: sha256 mismatch, expected {meta.files[rel]}, found {found} "
                                    "(file changed while loading)")
    return data


def _read_json(folder: Path, meta: WeightsMetadata, rel: str, required: dict[str, type]) -> dict:
    path = folder / rel
    if rel not in meta.files:
        raise WeightsError(f"{path}: expected nnU-Net's {Path(rel).name} in the weights folder, found none")
    try:
        value = json.loads(_read_listed(folder, meta, rel))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: expected valid JSON, found: {exc}") from None
    if not isinstance(value, dict):
        raise WeightsError(f"{path}: expected a JSON object, found a {type(value).__name__}")
    wrong = {k: t.__name__ for k, t in required.items() if not isinstance(value.get(k), t) or not value[k]}
    if wrong:
        raise WeightsError(f"{path}: expected the non-empty entries {wrong}, found "
                           f"{ {k: type(value.get(k)).__name__ for k in wrong} }")
    return value


def load_weights(folder: Path, folds: list[int] | None = None,
                 trusted: tuple[str, ...] | None = None) -> LoadedWeights:
    """Everything inference reads from a weights folder, checked, with no code from the folder run:
    pin (``trusted``), sha256 manifest, plans/dataset JSON structure, slim checkpoints of ``folds``
    (default: all in the metadata) loaded with weights_only=True. Used by the engine and by
    ``hnseg weights verify``."""
    folder = Path(folder)
    meta = load_verified(folder, trusted)
    folds = list(meta.nnunet.folds if folds is None else folds)
    unknown = sorted(set(folds) - set(meta.nnunet.folds))
    if unknown:
        raise WeightsError(f"{folder}: folds {unknown} requested, the weights hold {meta.nnunet.folds}")
    name = meta.nnunet.checkpoint
    if Path(name).name != name or name in ("", ".", ".."):
        raise WeightsError(f"{folder / METADATA_FILE}: expected a checkpoint file name, found {name!r}")
    plans = _read_json(folder, meta, f"{MODEL_DIR}/plans.json", {"configurations": dict})
    dataset_json = _read_json(folder, meta, f"{MODEL_DIR}/dataset.json", {"labels": dict, "channel_names": dict})
    checkpoints = {}
    for f in folds:
        rel = f"{MODEL_DIR}/fold_{f}/{name}"
        if rel not in meta.files:
            raise WeightsError(f"{folder / rel}: expected fold {f}'s checkpoint (listed in "
                               f"{METADATA_FILE}), found none")
        checkpoints[f] = load_checkpoint(folder / rel, _read_listed(folder, meta, rel))
    first = next(iter(checkpoints.values()))
    for ck in checkpoints.values():
        if (ck.trainer_name, ck.configuration) != (first.trainer_name, first.configuration):
            raise WeightsError(f"{ck.path}: expected trainer {first.trainer_name} and configuration "
                               f"{first.configuration} like {first.path}, found {ck.trainer_name}, {ck.configuration}")
    if first.configuration != meta.nnunet.configuration:
        raise WeightsError(f"{first.path}: expected configuration {meta.nnunet.configuration!r} (as in "
                           f"{METADATA_FILE}), found {first.configuration!r}")
    if first.configuration not in plans["configurations"]:
        raise WeightsError(f"{folder / MODEL_DIR / 'plans.json'}: expected the configuration "
                           f"{first.configuration!r} named by {first.path}, found {sorted(plans['configurations'])}")
    return LoadedWeights(folder, meta, plans, dataset_json, checkpoints)


def _exists(path: Path) -> bool:
    """``path.is_file()``, but an unreadable folder on the way is the user's error, not a crash."""
    try:
        return path.is_file()
    except PermissionError as exc:
        raise WeightsError(f"{path}: cannot be checked ({exc.strerror}); expected folders readable by this user") from None


def locate(task: str, candidates: list[Path]) -> Path:
    """First of ``candidates`` (each a weights folder or a folder of task folders) holding the task."""
    tried = []
    for c in candidates:
        for folder in (c, c / task):
            tried.append(str(folder))
            if _exists(folder / METADATA_FILE):
                meta = read_metadata(folder)
                if meta.task == task:
                    return folder
                log.debug("%s holds weights for %s, not %s", folder, meta.task, task)
    raise WeightsError(f"weights for {task}: expected {METADATA_FILE} in one of {tried}, found none")
