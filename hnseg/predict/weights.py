"""A weights folder: nnU-Net's trained-model folder plus hnseg's metadata and sha256 manifest.

Layout of ``weights/<task>/``::

    hnseg_weights.json          # WeightsMetadata (task, channels, prior, labels, training, files)
    model/plans.json            # nnU-Net plans (one configuration used)
    model/dataset.json
    model/fold_<k>/checkpoint_final.pth   # slim checkpoints (weights_only-loadable)

Every file under ``model/`` is listed with its sha256; loading verifies all of them first.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hnseg.errors import WeightsError, WeightsIntegrityError
from hnseg.preprocess.priors import PriorSpec
from hnseg.tasks import ChannelSpec
from hnseg.tasks.encoding import StructureEncoding

log = logging.getLogger(__name__)

METADATA_FILE = "hnseg_weights.json"
MODEL_DIR = "model"


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
    nnunet: NnunetInfo
    training: dict[str, Any] = Field(default_factory=dict)
    demo: bool = False
    note: str = ""
    files: dict[str, str] = Field(description="path relative to the weights folder → sha256")


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


def read_metadata(folder: Path) -> WeightsMetadata:
    path = folder / METADATA_FILE
    if not path.is_file():
        raise WeightsError(f"{folder}: expected a weights folder with {METADATA_FILE}, found none")
    try:
        return WeightsMetadata.model_validate_json(path.read_text())
    except OSError as exc:
        raise WeightsError(f"{path}: cannot be read ({exc.strerror}); expected a file readable by this user") from None
    except ValidationError as exc:
        raise WeightsError(f"{path}: not valid hnseg weights metadata: {exc}") from None


def verify(folder: Path, meta: WeightsMetadata) -> None:
    """Check every listed file exists with its sha256 and no unlisted file sits under model/."""
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


def load_verified(folder: Path) -> WeightsMetadata:
    meta = read_metadata(folder)
    verify(folder, meta)
    log.info("weights %s verified (%d files, task %s)", folder, len(meta.files), meta.task)
    return meta


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
