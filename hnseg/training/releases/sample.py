"""One training sample of any release layout."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from hnseg.errors import DatasetLayoutError


class Sample(BaseModel):
    """Input files by socket slug, the label (one label map, or one binary mask per structure),
    the patient (split group) and, for staged tasks, the T stage."""

    model_config = ConfigDict(frozen=True)
    name: str
    patient: str
    inputs: dict[str, Path]
    label: Path | None = None
    structures: dict[str, Path] = {}
    t_stage: str | None = None
    train_only: bool = False  # extra samples never used for validation (task-2 pre-RT samples)

    @model_validator(mode="after")
    def _one_label_kind(self) -> "Sample":
        if (self.label is None) == (not self.structures):
            raise ValueError(f"sample {self.name}: give either a label map or per-structure masks")
        return self

    @property
    def files(self) -> list[Path]:
        return [*self.inputs.values(), *([self.label] if self.label else []), *self.structures.values()]

    def check_files(self, owner: str) -> None:
        """Every file of the sample exists; ``owner`` (e.g. "patient 12") names it in the error."""
        for p in self.files:
            if not p.is_file():
                raise DatasetLayoutError(f"{owner}: expected {p}, found no such file")
