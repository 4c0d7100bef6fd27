"""Task profiles: the single source of truth for a task's sockets, channels, labels and outputs.

A profile is data. The loader, validator, channel builder, engine, writer, training converter and
evaluator all read it; adding a task (SegRap, NPC …) means adding a profile, not code paths.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSocket(_Frozen):
    """One grand-challenge input interface (``images/<slug>``)."""

    slug: str
    kind: Literal["image", "mask"]
    modality: str = Field(description="human-readable modality, e.g. 'T2w MRI', 'CT', 'label map'")
    required: bool = True
    same_grid_as: str | None = Field(
        default=None, description="slug of the socket whose voxel grid this one must share"
    )
    mask_labels: tuple[int, ...] | None = Field(
        default=None, description="allowed values of a mask socket (0 included)"
    )

    @property
    def relative_path(self) -> str:
        return f"images/{self.slug}"


class ChannelSpec(_Frozen):
    """One network input channel and how it is built from the input sockets."""

    name: str = Field(description="nnU-Net channel name (decides normalization: 'CT' → CT scheme)")
    source: Literal["image", "prior"]
    socket: str = Field(description="image socket the channel is read from / the prior is computed on")
    mask_socket: str | None = Field(default=None, description="mask socket the prior is built from")

    @model_validator(mode="after")
    def _prior_needs_mask(self) -> "ChannelSpec":
        if self.source == "prior" and not self.mask_socket:
            raise ValueError(f"prior channel {self.name!r} needs mask_socket")
        return self


class Label(_Frozen):
    name: str
    value: int = Field(ge=1, le=255)


class OutputSocket(_Frozen):
    """One grand-challenge output interface."""

    slug: str
    kind: Literal["label-map", "binary-stack", "json"]
    structures: tuple[str, ...] = ()
    filename: str = "output.mha"

    @property
    def relative_path(self) -> str:
        return f"images/{self.slug}" if self.kind != "json" else self.slug


class TaskProfile(_Frozen):
    name: str
    title: str
    inputs: tuple[InputSocket, ...]
    reference_socket: str = Field(description="socket whose grid the outputs are written on")
    channels: tuple[ChannelSpec, ...]
    labels: tuple[Label, ...]
    outputs: tuple[OutputSocket, ...]

    @model_validator(mode="after")
    def _consistent(self) -> "TaskProfile":
        slugs = [s.slug for s in self.inputs]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"{self.name}: duplicate input slugs")
        known = set(slugs)
        refs = {self.reference_socket}
        for s in self.inputs:
            if s.same_grid_as:
                refs.add(s.same_grid_as)
        for c in self.channels:
            refs.add(c.socket)
            if c.mask_socket:
                refs.add(c.mask_socket)
        unknown = refs - known
        if unknown:
            raise ValueError(f"{self.name}: unknown sockets referenced: {sorted(unknown)}")
        values = [lab.value for lab in self.labels]
        if values != list(range(1, len(values) + 1)):
            raise ValueError(f"{self.name}: label values must be 1..N in order, got {values}")
        return self

    # -- derived views -------------------------------------------------------------------------
    def socket(self, slug: str) -> InputSocket:
        for s in self.inputs:
            if s.slug == slug:
                return s
        raise KeyError(slug)

    @property
    def required_slugs(self) -> tuple[str, ...]:
        return tuple(s.slug for s in self.inputs if s.required)

    @property
    def used_slugs(self) -> tuple[str, ...]:
        """Sockets the model reads (the rest are accepted, validated and ignored)."""
        used: list[str] = [self.reference_socket]
        for c in self.channels:
            used += [c.socket] + ([c.mask_socket] if c.mask_socket else [])
        return tuple(dict.fromkeys(used))

    @property
    def label_map(self) -> dict[str, int]:
        return {lab.name: lab.value for lab in self.labels}

    @property
    def prior_channel(self) -> ChannelSpec | None:
        return next((c for c in self.channels if c.source == "prior"), None)
