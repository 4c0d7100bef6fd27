"""SegRap 2023 task profiles (non-contrast + contrast-enhanced CT pair, nasopharyngeal carcinoma).

Both tasks read the same two sockets, so a case folder cannot tell them apart: choose the task with
``--task`` / ``HNSEG_TASK`` (one grand-challenge algorithm image per task phase).
"""

from __future__ import annotations

from hnseg.tasks.profiles import ChannelSpec, InputSocket, Label, OutputSocket, TaskProfile

CT = "head-neck-ct"
CT_CONTRAST = "head-neck-contrast-enhanced-ct"

# The exact volume order of the task-1 output (SegRap 2023 challenge page).
SEGRAP_OARS: tuple[str, ...] = (
    "Brain", "BrainStem", "Chiasm", "TemporalLobe_L", "TemporalLobe_R", "Hippocampus_L",
    "Hippocampus_R", "Eye_L", "Eye_R", "Lens_L", "Lens_R", "OpticNerve_L", "OpticNerve_R",
    "MiddleEar_L", "MiddleEar_R", "IAC_L", "IAC_R", "TympanicCavity_L", "TympanicCavity_R",
    "VestibulSemi_L", "VestibulSemi_R", "Cochlea_L", "Cochlea_R", "ETbone_L", "ETbone_R",
    "Pituitary", "OralCavity", "Mandible_L", "Mandible_R", "Submandibular_L", "Submandibular_R",
    "Parotid_L", "Parotid_R", "Mastoid_L", "Mastoid_R", "TMjoint_L", "TMjoint_R", "SpinalCord",
    "Esophagus", "Larynx", "Larynx_Glottic", "Larynx_Supraglot", "PharynxConst", "Thyroid", "Trachea",
)
SEGRAP_GTVS: tuple[str, ...] = ("GTVp", "GTVnd")

CT_INPUTS = (
    InputSocket(slug=CT, kind="image", modality="non-contrast CT (HU)"),
    InputSocket(slug=CT_CONTRAST, kind="image", modality="contrast-enhanced CT (HU)", same_grid_as=CT),
)
# The seed poster's recipe: both phases as channels; the name "CT" gives nnU-Net's CT normalization
# (clip to the foreground 0.5-99.5 percentiles of the training set, z-score with its mean/std).
CT_CHANNELS = (
    ChannelSpec(name="CT", source="image", socket=CT),
    ChannelSpec(name="CT", source="image", socket=CT_CONTRAST),
)


def _labels(names: tuple[str, ...]) -> tuple[Label, ...]:
    return tuple(Label(name=n, value=i + 1) for i, n in enumerate(names))


SEGRAP_TASK1 = TaskProfile(
    name="segrap-task1",
    title="SegRap 2023 task 1: 45 organs at risk on the non-contrast + contrast-enhanced CT pair",
    inputs=CT_INPUTS,
    reference_socket=CT,
    channels=CT_CHANNELS,
    labels=_labels(SEGRAP_OARS),
    outputs=(OutputSocket(slug="head-neck-segmentation", kind="binary-stack", structures=SEGRAP_OARS),),
)

SEGRAP_TASK2 = TaskProfile(
    name="segrap-task2",
    title="SegRap 2023 task 2: GTVp and GTVnd on the non-contrast + contrast-enhanced CT pair",
    inputs=CT_INPUTS,
    reference_socket=CT,
    channels=CT_CHANNELS,
    labels=_labels(SEGRAP_GTVS),
    outputs=(OutputSocket(slug="gross-tumor-volume-segmentation", kind="binary-stack",
                          structures=SEGRAP_GTVS),),
)
