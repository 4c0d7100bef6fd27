"""4D binary stacks: one uint8 volume per structure, on a 3D reference grid (SegRap output format).

SimpleITK size (x, y, z, S); spacing, origin and direction of the reference with a unit 4th axis.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def stack_image(masks: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """(S, z, y, x) 0/1 array → 4D uint8 image on the reference's grid."""
    masks = np.asarray(masks)
    expected = tuple(reversed(reference.GetSize()))
    if masks.ndim != 4 or masks.shape[1:] != expected:
        raise ValueError(f"stack shape {masks.shape}, expected (S, {', '.join(map(str, expected))})")
    image = sitk.GetImageFromArray(masks.astype(np.uint8, copy=False), isVector=False)
    image.SetSpacing(tuple(reference.GetSpacing()) + (1.0,))
    image.SetOrigin(tuple(reference.GetOrigin()) + (0.0,))
    d = np.eye(4)
    d[:3, :3] = np.reshape(reference.GetDirection(), (3, 3))
    image.SetDirection(tuple(d.ravel()))
    return image


def stack_grid(image: sitk.Image) -> sitk.Image:
    """An empty 3D image carrying the grid of a 4D stack (its first three axes)."""
    if image.GetDimension() != 4:
        raise ValueError(f"expected a 4D image, found {image.GetDimension()}D")
    ref = sitk.Image(list(image.GetSize()[:3]), sitk.sitkUInt8)
    ref.SetSpacing(image.GetSpacing()[:3])
    ref.SetOrigin(image.GetOrigin()[:3])
    ref.SetDirection(tuple(np.reshape(image.GetDirection(), (4, 4))[:3, :3].ravel()))
    return ref


def unstack(image: sitk.Image) -> tuple[np.ndarray, sitk.Image]:
    """4D stack → ((S, z, y, x) uint8 array, an empty 3D image carrying the grid)."""
    ref = stack_grid(image)
    return sitk.GetArrayFromImage(image), ref
