"""Canonical orientation: a network sees every image with its voxel axes in one orientation, and
every result is mapped back onto the exact grid of the input.

Orientation codes are SimpleITK's (``DICOMOrientImageFilter``): one letter per index axis (x, y, z)
naming the patient direction in which that index increases. An identity direction matrix is
``LPS``: axial slices, x towards the patient's left, y posterior, z superior. A reorientation only
permutes and flips voxel axes, so it is exact (no resampling); an oblique remainder of the
direction matrix stays in the geometry, as with ``sitk.DICOMOrient``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

CANONICAL = "LPS"
OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}


def orientation_code(image: sitk.Image) -> str:
    """SimpleITK's orientation code of an image's direction matrix (nearest axes)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def valid_code(code: str) -> bool:
    """Three letters naming the three patient axes once each (``LPS``, ``RAI``, ``PIR`` …)."""
    if len(code) != 3 or any(c not in OPPOSITE for c in code):
        return False
    axes = {min(c, OPPOSITE[c]) for c in code}
    return len(axes) == 3


def _direction(image: sitk.Image) -> np.ndarray:
    """3×3 direction matrix; column i is index axis i in patient (LPS) coordinates."""
    return np.asarray(image.GetDirection(), float).reshape(3, 3)


@dataclass(frozen=True)
class Reorientation:
    """How the voxel array of one stored image maps onto a target orientation.

    Canonical index axis ``j`` is stored index axis ``perm[j]``, reversed where ``flip[j]``.
    ``stored_size`` is the stored image's size (x, y, z)."""

    source: str
    target: str
    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    stored_size: tuple[int, int, int]

    @classmethod
    def of(cls, image: sitk.Image, target: str = CANONICAL) -> "Reorientation":
        if image.GetDimension() != 3:
            raise ValueError(f"reorientation needs a 3D image, got {image.GetDimension()}D")
        if not valid_code(target):
            raise ValueError(f"orientation: expected a code such as 'LPS', got {target!r}")
        d = _direction(image)
        t = np.asarray(sitk.DICOMOrientImageFilter.GetDirectionCosinesFromOrientation(target), float).reshape(3, 3)
        cos = t.T @ d  # cos[j, i]: target axis j against stored index axis i
        # the permutation whose axes are most nearly parallel overall (robust for oblique matrices)
        perm = max(itertools.permutations(range(3)), key=lambda p: sum(abs(cos[j, p[j]]) for j in range(3)))
        flip = tuple(bool(cos[j, perm[j]] < 0) for j in range(3))
        return cls(orientation_code(image), target, tuple(int(p) for p in perm), flip,
                   tuple(int(s) for s in image.GetSize()))

    @property
    def identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flip)

    # numpy arrays are (…, z, y, x): numpy axis k of the last three is index axis 2 - k
    def _numpy_axes(self) -> tuple[list[int], list[int]]:
        order = [2 - self.perm[2 - k] for k in range(3)]  # canonical numpy axis k ← stored numpy axis
        flipped = [k for k in range(3) if self.flip[2 - k]]
        return order, flipped

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """A stored voxel array (…, z, y, x) in the target orientation (contiguous)."""
        if self.identity:
            return array
        self._check_shape(array.shape[-3:], tuple(reversed(self.stored_size)), "stored")
        lead = array.ndim - 3
        order, flipped = self._numpy_axes()
        out = np.transpose(array, [*range(lead), *(lead + a for a in order)])
        return np.ascontiguousarray(np.flip(out, [lead + k for k in flipped]) if flipped else out)

    def to_stored(self, array: np.ndarray) -> np.ndarray:
        """A canonical voxel array (…, z, y, x) back in the stored image's axis order (contiguous)."""
        if self.identity:
            return array
        lead = array.ndim - 3
        order, flipped = self._numpy_axes()
        canonical_shape = tuple(self.stored_size[self.perm[2 - k]] for k in range(3))
        self._check_shape(array.shape[-3:], canonical_shape, "canonical")
        if flipped:
            array = np.flip(array, [lead + k for k in flipped])
        inverse = list(np.argsort(order))
        return np.ascontiguousarray(np.transpose(array, [*range(lead), *(lead + int(a) for a in inverse)]))

    @staticmethod
    def _check_shape(found, expected, what: str) -> None:
        if tuple(found) != tuple(expected):
            raise ValueError(f"{what} array shape {tuple(found)} does not fit this reorientation "
                             f"(expected {tuple(expected)})")

    def geometry(self, image: sitk.Image) -> tuple[tuple, tuple, tuple, tuple]:
        """(size, spacing, origin, direction) of ``image`` in the target orientation."""
        d, sp = _direction(image), np.asarray(image.GetSpacing(), float)
        size = np.asarray(image.GetSize())
        origin = np.asarray(image.GetOrigin(), float)
        new_dir = np.empty((3, 3))
        for j, i in enumerate(self.perm):
            new_dir[:, j] = -d[:, i] if self.flip[j] else d[:, i]
            if self.flip[j]:  # the canonical first voxel is the stored last one along this axis
                origin = origin + d[:, i] * sp[i] * (size[i] - 1)
        return (tuple(int(size[i]) for i in self.perm), tuple(float(sp[i]) for i in self.perm),
                tuple(float(v) for v in origin), tuple(float(v) for v in new_dir.ravel()))

    def image(self, image: sitk.Image, array: np.ndarray | None = None) -> sitk.Image:
        """``image`` (voxels: ``array`` when given, its (z, y, x) array) in the target orientation."""
        if self.identity:
            return image
        if array is None:
            array = sitk.GetArrayViewFromImage(image)
        out = sitk.GetImageFromArray(self.to_canonical(array))
        _, spacing, origin, direction = self.geometry(image)
        out.SetSpacing(spacing)
        out.SetOrigin(origin)
        out.SetDirection(direction)
        return out


def reorient_case(case, target: str = CANONICAL):
    """``case`` (a ``load.case.Case``) with every image in the target orientation, and the
    reorientation of its reference image (to map results back onto the stored reference grid)."""
    images = {}
    for slug, image in case.images.items():
        r = Reorientation.of(image, target)
        images[slug] = image if r.identity else r.image(image, case.array(slug))
    return case.with_images(images), Reorientation.of(case.reference, target)
