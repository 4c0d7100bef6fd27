"""NPC multi-target task (seed Grad-MTSeg): CT + MRI → OARs, GTVp, GTVn, CTV70, CTV63 and T stage.

The slugs are hnseg's own (no public challenge defines them); docs/tasks.md documents them.
Outputs, all on the CT grid: ``images/npc-target-segmentation`` (4D uint8 stack, one volume per
structure in ``NPC_STRUCTURES`` order, GTV ⊂ CTV70 ⊂ CTV63 voxel-wise) and ``t-stage.json``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hnseg.tasks.profiles import ChannelSpec, InputSocket, Label, OutputSocket, TaskProfile, TStageSpec

CT = "head-neck-ct"
MRI = "head-neck-t1w-mri"
OUTPUT_STACK = "npc-target-segmentation"
OUTPUT_T_STAGE = "t-stage"

NPC_OARS: tuple[str, ...] = (
    "BrainStem", "SpinalCord", "Chiasm", "OpticNerve_L", "OpticNerve_R", "Eye_L", "Eye_R",
    "Lens_L", "Lens_R", "TemporalLobe_L", "TemporalLobe_R", "Parotid_L", "Parotid_R",
    "Mandible_L", "Mandible_R",
)
NPC_GTVS: tuple[str, ...] = ("GTVp", "GTVn")
NPC_CTVS: tuple[str, ...] = ("CTV70", "CTV63")
NPC_STRUCTURES: tuple[str, ...] = NPC_OARS + NPC_GTVS + NPC_CTVS
T_STAGES: tuple[str, ...] = ("T1", "T2", "T3", "T4")

NPC_TARGETS = TaskProfile(
    name="npc-targets",
    title="NPC multi-target delineation: OARs, GTVp/GTVn, CTV70/CTV63 and T stage on CT + MRI",
    inputs=(
        InputSocket(slug=CT, kind="image", modality="planning CT (HU)"),
        # Resampled (linear) onto the CT grid when the grids differ; refused when they do not overlap.
        InputSocket(slug=MRI, kind="image", modality="T1w MRI", resample_to=CT),
    ),
    reference_socket=CT,
    channels=(
        ChannelSpec(name="CT", source="image", socket=CT),
        ChannelSpec(name="MRI", source="image", socket=MRI),  # any other name: nnU-Net z-score
    ),
    labels=tuple(Label(name=n, value=i + 1) for i, n in enumerate(NPC_STRUCTURES)),
    outputs=(
        OutputSocket(slug=OUTPUT_STACK, kind="binary-stack", structures=NPC_STRUCTURES),
        OutputSocket(slug=OUTPUT_T_STAGE, kind="json"),
    ),
    nested=(("GTVp", "CTV70"), ("GTVn", "CTV70"), ("CTV70", "CTV63")),
    task_groups={"oar": NPC_OARS, "gtv": NPC_GTVS, "ctv": NPC_CTVS},
    t_stage=TStageSpec(classes=T_STAGES, tumor="GTVp"),
)


class TStageOutput(BaseModel):
    """The ``t-stage.json`` output: the most probable T stage and every class probability."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    t_stage: str = Field(description="most probable class, one of T1..T4")
    probabilities: dict[str, float] = Field(description="class → probability, summing to 1")

    @model_validator(mode="after")
    def _consistent(self) -> "TStageOutput":
        if tuple(self.probabilities) != T_STAGES:
            raise ValueError(f"probabilities must have the keys {list(T_STAGES)} in order, "
                             f"found {list(self.probabilities)}")
        if any(not (0.0 <= p <= 1.0) for p in self.probabilities.values()):
            raise ValueError(f"probabilities must lie in [0, 1], found {self.probabilities}")
        total = sum(self.probabilities.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"probabilities must sum to 1, found {total}")
        best = max(self.probabilities, key=self.probabilities.__getitem__)
        if self.t_stage != best:
            raise ValueError(f"t_stage {self.t_stage!r} is not the most probable class {best!r}")
        return self

    @classmethod
    def from_probabilities(cls, probs) -> "TStageOutput":
        values = [float(p) for p in probs]
        total = sum(values)
        values = [v / total for v in values]
        probabilities = {c: round(v, 6) for c, v in zip(T_STAGES, values)}
        # rounding may move the sum off 1 by a few 1e-7: put the remainder on the top class
        best = max(probabilities, key=probabilities.__getitem__)
        probabilities[best] = round(probabilities[best] + 1.0 - sum(probabilities.values()), 6)
        return cls(t_stage=best, probabilities=probabilities)
