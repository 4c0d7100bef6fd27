"""Task profiles: the single source of truth for a task's sockets, channels, labels and outputs.

A profile is data. The loader, validator, channel builder, engine, writer, training converter and
evaluator all read it; adding a task (SegRap, NPC …) means adding a profile, not code paths.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hnseg.tasks.codes import StructureCode, structure_code
from hnseg.tasks.plausibility import DEFAULT_INTENSITY_RULES, ImageLimits, IntensityRule


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
    resample_to: str | None = Field(
        default=None,
        description="slug of the socket onto whose grid this image is resampled when the grids differ "
        "(refused when the two do not overlap in space)",
    )

    @property
    def relative_path(self) -> str:
        return f"images/{self.slug}"

    @property
    def dicom_modality(self) -> str | None:
        """The DICOM Modality (0008,0060) a series given for this socket must have: ``CT`` / ``MR``
        for images, none for masks."""
        if self.kind != "image":
            return None
        words = self.modality.replace("(", " ").replace(")", " ").split()
        return "CT" if "CT" in words else "MR" if any(w in ("MRI", "MR") for w in words) else None


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


class TStageSpec(_Frozen):
    """A T-stage classifier trained with the segmentation (features of the ``tumor`` region)."""

    classes: tuple[str, ...]
    tumor: str = Field(description="structure whose region the classifier pools features from")


class OutputSocket(_Frozen):
    """One grand-challenge output interface."""

    slug: str
    kind: Literal["label-map", "binary-stack", "json"]
    structures: tuple[str, ...] = ()
    filename: str = "output.mha"

    @property
    def relative_path(self) -> str:
        return f"images/{self.slug}" if self.kind != "json" else self.slug


class RegistrationSpec(_Frozen):
    """Inputs hnseg can compute when a case lacks them (batch mode): ``moving`` registered onto
    ``fixed``, giving ``registered_image``, and ``moving_mask`` warped the same way, giving
    ``registered_mask`` (``hnseg.preprocess.registration``)."""

    fixed: str
    moving: str
    moving_mask: str
    registered_image: str
    registered_mask: str

    @property
    def sources(self) -> tuple[str, str, str]:
        return self.fixed, self.moving, self.moving_mask

    @property
    def computed(self) -> tuple[str, str]:
        return self.registered_image, self.registered_mask


class TaskProfile(_Frozen):
    name: str
    title: str
    inputs: tuple[InputSocket, ...]
    reference_socket: str = Field(description="socket whose grid the outputs are written on")
    channels: tuple[ChannelSpec, ...]
    labels: tuple[Label, ...]
    outputs: tuple[OutputSocket, ...]
    nested: tuple[tuple[str, str], ...] = Field(
        default=(), description="(inner, outer) pairs: the output guarantees inner ⊂ outer voxel-wise"
    )
    task_groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="structure groups of the multi-task trainer (OAR, GTV, CTV …)"
    )
    t_stage: TStageSpec | None = None
    registration: RegistrationSpec | None = Field(
        default=None, description="registered inputs batch mode may compute from the unregistered ones"
    )
    image_limits: ImageLimits = Field(default=ImageLimits(), description="size bounds of every input image")
    intensity_rules: dict[str, IntensityRule] = Field(
        default_factory=lambda: dict(DEFAULT_INTENSITY_RULES),
        description="plausible voxel values of image sockets, by DICOM modality (InputSocket.dicom_modality)",
    )

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
        if self.registration:
            refs.update(self.registration.sources + self.registration.computed)
        for c in self.channels:
            refs.add(c.socket)
            if c.mask_socket:
                refs.add(c.mask_socket)
        unknown = refs - known
        if unknown:
            raise ValueError(f"{self.name}: unknown sockets referenced: {sorted(unknown)}")
        for s in self.inputs:
            if s.resample_to and s.resample_to not in known:
                raise ValueError(f"{self.name}: {s.slug} resamples to unknown socket {s.resample_to}")
        values = [lab.value for lab in self.labels]
        if values != list(range(1, len(values) + 1)):
            raise ValueError(f"{self.name}: label values must be 1..N in order, got {values}")
        names = set(self.label_map)
        named = [n for pair in self.nested for n in pair]
        named += [n for group in self.task_groups.values() for n in group]
        named += [self.t_stage.tumor] if self.t_stage else []
        for o in self.outputs:
            named += list(o.structures)
            if o.kind == "json" and o.structures:
                raise ValueError(f"{self.name}: json output {o.slug} cannot hold structures")
        unknown_names = sorted(set(named) - names)
        if unknown_names:
            raise ValueError(f"{self.name}: unknown structures referenced: {unknown_names}")
        grouped = [n for group in self.task_groups.values() for n in group]
        if grouped and sorted(grouped) != sorted(names):
            raise ValueError(f"{self.name}: task groups must hold every structure exactly once")
        return self

    # -- derived views -------------------------------------------------------------------------
    def intensity_rule(self, slug: str) -> IntensityRule | None:
        modality = self.socket(slug).dicom_modality
        return self.intensity_rules.get(modality) if modality else None

    def socket(self, slug: str) -> InputSocket:
        for s in self.inputs:
            if s.slug == slug:
                return s
        raise KeyError(slug)

    @property
    def required_slugs(self) -> tuple[str, ...]:
        return tuple(s.slug for s in self.inputs if s.required)

    def missing_inputs(self, given, *, allow_registration: bool = False) -> list[str]:
        """Required sockets absent from ``given``; with ``allow_registration``, those the task's
        registration can compute from the given ones are not missing."""
        missing = [s for s in self.required_slugs if s not in given]
        reg = self.registration
        if allow_registration and reg and all(s in given for s in reg.sources):
            missing = [s for s in missing if s not in reg.computed]
        return missing

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
    def image_outputs(self) -> tuple[OutputSocket, ...]:
        """The image output sockets (label maps and binary stacks; not the JSON ones)."""
        return tuple(o for o in self.outputs if o.kind != "json")

    @property
    def stack_output(self) -> OutputSocket | None:
        """The first 4D binary-stack output socket (None for label-map tasks)."""
        return next((o for o in self.outputs if o.kind == "binary-stack"), None)

    @property
    def structures(self) -> tuple[str, ...]:
        return tuple(lab.name for lab in self.labels)

    @property
    def structure_codes(self) -> dict[str, StructureCode | None]:
        """Structure → its SEG / RTSTRUCT codes (``hnseg.tasks.codes``; None where the table has none:
        every registered task has all, test_dicom_conformance checks), in label order."""
        return {n: structure_code(n) for n in self.structures}

    @property
    def prior_channel(self) -> ChannelSpec | None:
        return next((c for c in self.channels if c.source == "prior"), None)
