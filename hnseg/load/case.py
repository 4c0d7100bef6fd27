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

from hnseg.errors import GridMismatchError, MaskLabelError, MissingInputError
from hnseg.io.read import check_3d_scalar, check_finite, read_image
from hnseg.load.grid import GridTolerance, describe_grid, grid_differences
from hnseg.tasks import TaskProfile

log = logging.getLogger(__name__)

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
    task: TaskProfile, files: dict[str, Path], tol: GridTolerance = GridTolerance()
) -> Case:
    """Read and validate the task's sockets; sockets the task does not know are ignored (warned)."""
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
        image = read_image(present[socket.slug], what=f"socket {socket.slug!r}")
        check_3d_scalar(image, what)
        case.images[socket.slug] = image
        if socket.kind == "mask":
            _check_mask(case, socket.slug, socket.mask_labels or (0,) + tuple(task.label_map.values()))
        else:
            check_finite(case.array(socket.slug), what)
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
    return case
