"""How a model's outputs encode a task's (possibly overlapping) structures.

- ``label-map``: one label value per structure, no overlap (HNTS-MRG).
- ``pieces``: softmax over a partition of space into non-overlapping *pieces*; each piece is the set
  of structures its voxels belong to (e.g. ``Brain+BrainStem``), found in the training labels. A
  structure is rebuilt as the union of the pieces holding it (SegRap organizers' 54-class scheme).
- ``regions``: one sigmoid channel per structure (nnU-Net region-based training); the integer
  training label map is the same piece partition, each structure a list of piece values.

The piece table is a property of the trained weights (stored in their metadata), not of the task.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Piece(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    value: int = Field(ge=1, le=255)
    members: tuple[str, ...] = Field(min_length=1)

    @property
    def name(self) -> str:
        return "+".join(self.members)


class StructureEncoding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    mode: Literal["pieces", "regions"]
    structures: tuple[str, ...]
    pieces: tuple[Piece, ...]

    @model_validator(mode="after")
    def _consistent(self) -> "StructureEncoding":
        values = [p.value for p in self.pieces]
        if values != list(range(1, len(values) + 1)):
            raise ValueError(f"piece values must be 1..N in order, found {values}")
        known = set(self.structures)
        for p in self.pieces:
            if not set(p.members) <= known:
                raise ValueError(f"piece {p.name}: unknown structures {sorted(set(p.members) - known)}")
        if len({frozenset(p.members) for p in self.pieces}) != len(self.pieces):
            raise ValueError("two pieces have the same members")
        covered = {m for p in self.pieces for m in p.members}
        if covered != known:
            raise ValueError(f"structures without any piece: {sorted(known - covered)}")
        return self

    def piece_values(self, structure: str) -> list[int]:
        """Piece values whose union is ``structure``."""
        return [p.value for p in self.pieces if structure in p.members]

    def membership(self) -> np.ndarray:
        """Boolean table (structures, pieces + 1): [s, v] ⇔ piece value v belongs to structure s."""
        table = np.zeros((len(self.structures), len(self.pieces) + 1), dtype=bool)
        index = {s: i for i, s in enumerate(self.structures)}
        for p in self.pieces:
            for m in p.members:
                table[index[m], p.value] = True
        return table

    def nnunet_labels(self) -> dict[str, int | list[int]]:
        """``dataset.json`` labels: pieces as classes, or structures as regions of piece values."""
        if self.mode == "pieces":
            return {"background": 0, **{p.name: p.value for p in self.pieces}}
        return {"background": 0, **{s: self.piece_values(s) for s in self.structures}}


def pieces_to_stack(pieces: np.ndarray, encoding: StructureEncoding) -> np.ndarray:
    """Piece label map (z, y, x) → binary stack (S, z, y, x) uint8 in ``encoding.structures`` order."""
    table = encoding.membership()
    if pieces.max(initial=0) >= table.shape[1]:
        raise ValueError(f"piece value {int(pieces.max())} outside the table of {len(encoding.pieces)}")
    return np.stack([table[s][pieces] for s in range(table.shape[0])]).astype(np.uint8)
