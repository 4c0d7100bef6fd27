"""Turn a predicted label array into the output image on the exact input grid."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def label_image(seg: np.ndarray, reference: sitk.Image, labels: dict[str, int]) -> sitk.Image:
    """uint8 label map with the reference's size, spacing, origin and direction."""
    if seg.shape != tuple(reversed(reference.GetSize())):
        raise ValueError(f"label array {seg.shape} does not match reference size {reference.GetSize()}")
    allowed = {0, *labels.values()}
    found = set(np.unique(seg).tolist())
    if not found <= allowed:
        raise ValueError(f"predicted labels {sorted(found - allowed)} outside {sorted(allowed)}")
    image = sitk.GetImageFromArray(seg.astype(np.uint8, copy=False))
    image.CopyInformation(reference)
    return image
