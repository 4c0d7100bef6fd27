"""No left-right mirroring where it would swap lateralised structures (Parotid_L ↔ Parotid_R).

Arrays read by nnU-Net's readers are (z, y, x) with x = the image's first index axis, which is the
patient's left-right axis for axially stored images with a near-identity direction matrix (the
case by construction: hnseg's conversion brings every sample to the canonical LPS orientation,
hnseg.preprocess.orientation). The preprocessed volume
axis ``i`` is input axis ``transpose_forward[i]``, so the left-right axis is
``transpose_forward.index(2)``. The restricted axes are also stored in the checkpoint
(``inference_allowed_mirroring_axes``), so test-time augmentation follows.
"""

from __future__ import annotations

from collections.abc import Iterable


def left_right_patch_axis(transpose_forward, patch_dim: int) -> int | None:
    """The patch axis that runs left-right, or None when a 2D patch does not contain it."""
    vol_axis = list(transpose_forward).index(2)
    if patch_dim == 3:
        return vol_axis
    if patch_dim == 2:
        return vol_axis - 1 if vol_axis >= 1 else None
    raise ValueError(f"patch dimension must be 2 or 3, got {patch_dim}")


def lateralised(label_names: Iterable[str]) -> bool:
    """Any label (or piece ``A+B``) naming a left or right structure (``…_L`` / ``…_R``)."""
    return any(part.endswith(("_L", "_R")) for name in label_names for part in str(name).split("+"))


class NoLeftRightMirroringMixin:
    """For nnUNetTrainer subclasses: drop the left-right axis from the mirror axes (always, or with
    ``exclude_left_right_mirroring = None`` only when the dataset's labels are lateralised)."""

    exclude_left_right_mirroring: bool | None = True

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        exclude = self.exclude_left_right_mirroring
        if exclude is None:
            exclude = lateralised(self.dataset_json["labels"])
        if not exclude:
            return rotation, dummy_2d, initial_patch_size, mirror_axes
        tf = list(self.plans_manager.transpose_forward)
        lr = left_right_patch_axis(tf, len(self.configuration_manager.patch_size))
        if tf != [0, 1, 2]:
            self.print_to_log_file(f"transpose_forward is {tf}, not identity: the left-right (input x) "
                                   f"axis is patch axis {lr}")
        if mirror_axes is not None and lr is not None:
            mirror_axes = tuple(a for a in mirror_axes if a != lr)
        self.inference_allowed_mirroring_axes = mirror_axes
        self.print_to_log_file(f"mirror axes without left-right axis {lr}: {mirror_axes}")
        return rotation, dummy_2d, initial_patch_size, mirror_axes
