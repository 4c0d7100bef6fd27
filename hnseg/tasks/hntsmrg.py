"""HNTS-MRG 2024 task profiles (pre-RT and mid-RT T2w MRI; GTVp = 1, GTVn = 2)."""

from __future__ import annotations

from hnseg.tasks.profiles import ChannelSpec, InputSocket, Label, OutputSocket, RegistrationSpec, TaskProfile

GTV_LABELS = (Label(name="GTVp", value=1), Label(name="GTVn", value=2))
MASK_VALUES = (0, 1, 2)
OUTPUT = OutputSocket(
    slug="mri-head-neck-segmentation", kind="label-map", structures=("GTVp", "GTVn")
)

PRE_T2 = "pre-rt-t2w-head-neck"
PRE_MASK = "pre-rt-head-neck-segmentation"
MID_T2 = "mid-rt-t2w-head-neck"
REG_T2 = "registered-pre-rt-head-neck"
REG_MASK = "registered-pre-rt-head-neck-segmentation"

HNTSMRG_TASK1 = TaskProfile(
    name="hntsmrg-task1",
    title="HNTS-MRG 2024 task 1: GTVp/GTVn on pre-RT T2w MRI",
    inputs=(InputSocket(slug=PRE_T2, kind="image", modality="T2w MRI"),),
    reference_socket=PRE_T2,
    channels=(ChannelSpec(name="T2", source="image", socket=PRE_T2),),
    labels=GTV_LABELS,
    outputs=(OUTPUT,),
)

HNTSMRG_TASK2 = TaskProfile(
    name="hntsmrg-task2",
    title="HNTS-MRG 2024 task 2: GTVp/GTVn on mid-RT T2w MRI with the registered pre-RT mask",
    inputs=(
        InputSocket(slug=MID_T2, kind="image", modality="T2w MRI"),
        InputSocket(
            slug=REG_MASK, kind="mask", modality="label map", same_grid_as=MID_T2,
            mask_labels=MASK_VALUES,
        ),
        InputSocket(
            slug=REG_T2, kind="image", modality="T2w MRI", required=False, same_grid_as=MID_T2
        ),
        InputSocket(slug=PRE_T2, kind="image", modality="T2w MRI", required=False),
        InputSocket(
            slug=PRE_MASK, kind="mask", modality="label map", required=False,
            same_grid_as=PRE_T2, mask_labels=MASK_VALUES,
        ),
    ),
    reference_socket=MID_T2,
    channels=(
        ChannelSpec(name="T2", source="image", socket=MID_T2),
        # The seed computes the gradient map on the mid-RT image inside boxes from the registered mask.
        ChannelSpec(name="prior", source="prior", socket=MID_T2, mask_socket=REG_MASK),
    ),
    labels=GTV_LABELS,
    outputs=(OUTPUT,),
    registration=RegistrationSpec(fixed=MID_T2, moving=PRE_T2, moving_mask=PRE_MASK, registered_image=REG_T2,
                                  registered_mask=REG_MASK),
)
