"""Read every input socket of a case and validate it for a task, before any compute.

Checks, each raising its own named error: required sockets present; images 3D single-channel and
finite; masks integer-typed with labels in the task's set; sockets that must share a grid do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import GridMismatchError, ImageOverlapError, MaskLabelError, MissingInputError
from hnseg.io.read import check_finite, read_image
from hnseg.load.grid import GridTolerance, describe_grid, grid_differences, overlap_fraction
from hnseg.load.plausibility import check_header, check_intensities
from hnseg.tasks import TaskProfile

log = logging.getLogger(__name__)

# Least share of an image's extent that must lie inside the grid it is resampled onto.
MIN_OVERLAP = 0.1

_INTEGER_PIXELS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
    sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64,
}


@dataclass
class Case:
    """The validated inputs of one case: SimpleITK images by socket slug."""

    task: TaskProfile
    files: dict[str, Path]
    images: dict[str, sitk.Image]
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def reference(self) -> sitk.Image:
        return self.images[self.task.reference_socket]

    def array(self, slug: str) -> np.ndarray:
        """Voxel array (z, y, x) of a socket, read once."""
        if slug not in self._arrays:
            self._arrays[slug] = sitk.GetArrayFromImage(self.images[slug])
        return self._arrays[slug]

    def with_images(self, images: dict[str, sitk.Image]) -> "Case":
        """The same case over other images (e.g. reoriented); arrays already read are kept for the
        images that are the same objects."""
        arrays = {s: a for s, a in self._arrays.items() if images.get(s) is self.images.get(s)}
        return Case(task=self.task, files=self.files, images=dict(images), _arrays=arrays)

    def describe(self, slug: str) -> str:
        return f"socket {slug!r} ({self.files[slug]})"


def _check_mask(case: Case, slug: str, allowed: tuple[int, ...]) -> None:
    image = case.images[slug]
    if image.GetPixelID() not in _INTEGER_PIXELS:
        raise MaskLabelError(
            f"{case.describe(slug)}: expected an integer label map with values in {list(allowed)}, "
            f"found pixel type {image.GetPixelIDTypeAsString()}"
        )
    values = np.unique(case.array(slug))
    bad = sorted(set(values.tolist()) - set(allowed))
    if bad:
        raise MaskLabelError(
            f"{case.describe(slug)}: expected labels in {list(allowed)}, found {bad[:10]}"
        )


def load_case(
    task: TaskProfile, files: dict[str, Path], tol: GridTolerance = GridTolerance(), *,
    root: Path | tuple[Path, ...] | None = None, force: bool = False,
) -> Case:
    """Read and validate the task's sockets; sockets the task does not know are ignored (warned).

    ``root``: the input folder no file (nor a data file its header names) may lead out of. ``force``:
    implausible intensities are a logged warning instead of an ``IntensityRangeError``."""
    known = {s.slug for s in task.inputs}
    for slug in sorted(set(files) - known):
        log.warning("socket %r (%s) is not an input of %s: ignored", slug, files[slug], task.name)
    missing = [s for s in task.required_slugs if s not in files]
    if missing:
        raise MissingInputError(
            f"{task.name}: expected input socket(s) {missing} (folder images/<slug>/ with one image), "
            f"found only {sorted(files)}"
        )
    present = {s: Path(files[s]) for s in known & set(files)}
    case = Case(task=task, files=present, images={})
    for socket in task.inputs:
        if socket.slug not in present:
            continue
        what = case.describe(socket.slug)
        image = read_image(present[socket.slug], what=f"socket {socket.slug!r}", modality=socket.dicom_modality,
                           root=root, header_check=lambda info, label: check_header(info, label, task.image_limits))
        case.images[socket.slug] = image
        if socket.kind == "mask":
            _check_mask(case, socket.slug, socket.mask_labels or (0,) + tuple(task.label_map.values()))
        else:
            check_finite(case.array(socket.slug), what)
            check_intensities(case.array(socket.slug), task.intensity_rule(socket.slug), what, force)
    for socket in task.inputs:
        ref = socket.same_grid_as
        if socket.slug in case.images and ref and ref in case.images:
            diffs = grid_differences(case.images[ref], case.images[socket.slug], tol)
            if diffs:
                raise GridMismatchError(
                    f"{case.describe(socket.slug)} must share the voxel grid of {case.describe(ref)}; "
                    f"{'/'.join(diffs)} differ(s): expected {describe_grid(case.images[ref])}, found "
                    f"{describe_grid(case.images[socket.slug])}"
                )
    for socket in task.inputs:
        if socket.resample_to and socket.slug in case.images:
            _resample_onto(case, socket.slug, socket.resample_to, tol)
    return case


def _resample_onto(case: Case, slug: str, target: str, tol: GridTolerance) -> None:
    """Linear resampling of one image onto another's grid (identity transform: the two must already
    be registered); refused when less than MIN_OVERLAP of it lies inside the target's extent."""
    moving, fixed = case.images[slug], case.images[target]
    if not grid_differences(fixed, moving, tol):
        return
    share = overlap_fraction(fixed, moving)
    if share < MIN_OVERLAP:
        raise ImageOverlapError(
            f"{case.describe(slug)} must overlap {case.describe(target)} in space (registered images): "
            f"expected at least {MIN_OVERLAP:.0%} of it inside, found {share:.1%}; grids: "
            f"{describe_grid(moving)} vs {describe_grid(fixed)}"
        )
    log.info("%s resampled onto the grid of %s (%.0f%% of it inside)", slug, target, 100 * share)
    case.images[slug] = sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkLinear, 0.0,
                                      sitk.sitkFloat32)
    case._arrays.pop(slug, None)
