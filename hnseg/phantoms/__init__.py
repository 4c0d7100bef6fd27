"""hnseg.phantoms: deterministic synthetic head-and-neck T2w MRI phantoms (HNTS-MRG 2024)."""

from hnseg.phantoms.anatomy import MriPhantomCase, beyond_box_extension, make_mri_case
from hnseg.phantoms.layouts import gc_image_name, write_gc_case, write_hntsmrg_release
from hnseg.phantoms.real_masks import make_mri_case_from_real_masks

__all__ = [
    "MriPhantomCase", "make_mri_case", "make_mri_case_from_real_masks", "write_hntsmrg_release",
    "write_gc_case", "gc_image_name", "beyond_box_extension",
]
