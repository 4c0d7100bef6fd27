"""hnseg.phantoms: deterministic synthetic head-and-neck phantoms: T2w MRI (HNTS-MRG 2024) and CT pairs
with a co-registered MRI (SegRap 2023, NPC targets)."""

from hnseg.phantoms.anatomy import MriPhantomCase, beyond_box_extension, make_mri_case
from hnseg.phantoms.layouts import gc_image_name, write_gc_case, write_hntsmrg_release
from hnseg.phantoms.ct_anatomy import CtPhantomCase, make_ct_case
from hnseg.phantoms.ct_layouts import write_npc_release, write_segrap_release
from hnseg.phantoms.real_masks import make_mri_case_from_real_masks

__all__ = [
    "MriPhantomCase", "make_mri_case", "make_mri_case_from_real_masks", "write_hntsmrg_release",
    "write_gc_case", "gc_image_name", "beyond_box_extension",
    "CtPhantomCase", "make_ct_case", "write_segrap_release", "write_npc_release",
]
