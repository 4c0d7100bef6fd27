"""Run settings: typed, with grand-challenge defaults, overridable by environment variables and flags.

Precedence: command-line flag > environment variable (``HNSEG_*``) > default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hnseg.errors import SettingsError

REPO_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"

SHA256_HEX = re.compile(r"[0-9a-f]{64}")

TtaMode = Literal["default", "lr", "off"]
DeviceName = Literal["auto", "cuda", "cpu"]


class PredictSettings(BaseModel):
    """How the engine predicts (no paths)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    device: DeviceName = "auto"
    tta: TtaMode = Field(
        default="default",
        description="mirror TTA: 'default' = axes allowed by the checkpoint, 'lr' = left-right only, 'off'",
    )
    # below 0.25 the tile count grows as 1/step³ (0.1: 125× the work of 0.5) for no measurable gain
    tile_step: float = Field(default=0.5, ge=0.25, le=1.0, allow_inf_nan=False,
                             description="sliding-window step, fraction of the patch size (0.25 … 1)")
    folds: tuple[Annotated[int, Field(ge=0)], ...] | None = Field(default=None, min_length=1)
    prior_margin: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] | None = Field(
        default=None, description="override the box prior's inference margin (voxels, x,y,z)"
    )
    prior_overlap_rule: bool | None = Field(
        default=None, description="task-2 winner's rule; None = what the weights metadata says"
    )
    trusted_manifest: tuple[str, ...] | None = Field(
        default=None, description="pinned sha256 values of the weights folder's hnseg_weights.json; a folder "
        "whose metadata hashes to none of them is refused before any checkpoint is opened",
    )

    @field_validator("trusted_manifest", mode="before")
    @classmethod
    def _sha256_list(cls, v):
        if v is None:
            return None
        parts = [p.strip().lower() for p in (v.split(",") if isinstance(v, str) else v)]
        bad = [p for p in parts if not SHA256_HEX.fullmatch(p)]
        if bad or not parts:
            raise ValueError(f"--trusted-manifest / HNSEG_TRUSTED_MANIFEST: expected sha256 values (64 hex "
                             f"characters each, comma-separated), found {bad or v!r}")
        return tuple(parts)


class RunSettings(BaseModel):
    """One grand-challenge style run: paths + prediction settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input_dir: Path = Path("/input")
    output_dir: Path = Path("/output")
    model_dir: Path = Path("/opt/ml/model")
    weights_dir: Path | None = Field(default=None, description="explicit weights folder (first choice)")
    baked_weights_dir: Path = REPO_WEIGHTS
    task: str | None = None
    force: bool = Field(default=False, description="accept implausible intensities with a warning")
    predict: PredictSettings = PredictSettings()

    def weight_candidates(self) -> list[Path]:
        dirs = [self.weights_dir] if self.weights_dir else []
        return dirs + [self.model_dir, self.baked_weights_dir]


ENV = {
    "input_dir": "HNSEG_INPUT",
    "output_dir": "HNSEG_OUTPUT",
    "model_dir": "HNSEG_MODEL_DIR",
    "weights_dir": "HNSEG_WEIGHTS",
    "trusted_manifest": "HNSEG_TRUSTED_MANIFEST",
    "task": "HNSEG_TASK",
    "device": "HNSEG_DEVICE",
    "tta": "HNSEG_TTA",
    "tile_step": "HNSEG_TILE_STEP",
    "force": "HNSEG_FORCE",
}


def _parse_ints(v, n: int | None = None):
    if v is None or isinstance(v, (tuple, list)):
        return v
    parts = [int(p) for p in str(v).split(",") if p.strip()]
    if n and len(parts) == 1:
        parts = parts * n
    return tuple(parts)


def build_settings(flags: dict, environ: dict[str, str] | None = None) -> RunSettings:
    """Merge flags (None = not given) over ``HNSEG_*`` environment variables over defaults."""
    environ = os.environ if environ is None else environ
    merged: dict = {}
    for key, var in ENV.items():
        if flags.get(key) is not None:
            merged[key] = flags[key]
        elif environ.get(var):
            merged[key] = environ[var]
    for key in ("folds", "prior_margin", "prior_overlap_rule"):
        if flags.get(key) is not None:
            merged[key] = flags[key]
    predict_keys = {"device", "tta", "tile_step", "folds", "prior_margin", "prior_overlap_rule", "trusted_manifest"}
    try:
        predict = PredictSettings(
            **{
                k: (_parse_ints(v, 3 if k == "prior_margin" else None) if k in ("folds", "prior_margin") else v)
                for k, v in merged.items() if k in predict_keys
            }
        )
        return RunSettings(predict=predict, **{k: v for k, v in merged.items() if k not in predict_keys})
    except ValidationError as exc:
        raise SettingsError("invalid run settings: " + "; ".join(
            _describe_error(err, flags) for err in exc.errors(include_url=False))) from None
    except ValueError as exc:
        raise SettingsError(f"invalid run settings: {exc}") from None


def _describe_error(err: dict, flags: dict) -> str:
    """One pydantic error as one line naming the setting where the user gave it (flag or variable)."""
    field = next((str(part) for part in err.get("loc", ()) if isinstance(part, str)), "?")
    where = f"--{field.replace('_', '-')}" if flags.get(field) is not None else (
        f"${ENV[field]}" if field in ENV else f"--{field.replace('_', '-')}")
    items = [p for p in err.get("loc", ()) if isinstance(p, int)]
    where += f", item {items[0] + 1}" if items else ""
    msg, found = err["msg"], err.get("input")
    if msg.startswith("Value error, "):  # our own validators already say what was expected and found
        return f"{field} ({where}): {msg.removeprefix('Value error, ')}"
    expected = msg.removeprefix("Input should be ") if msg.startswith("Input should be ") else msg.lower()
    shown = "nothing" if err.get("type") == "missing" else repr(found)
    return f"{field} ({where}): expected {expected}, found {shown}"
