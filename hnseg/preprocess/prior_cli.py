"""``hnseg prior``: compute the task-2 prior channel for one image and its registered mask.

Uses :func:`hnseg.preprocess.priors.compute_prior` in inference mode (fixed margins), the very
function the predictor uses, so a map written here is what the network sees at inference.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import SimpleITK as sitk

from hnseg.errors import GridMismatchError
from hnseg.io.read import check_3d_scalar, check_finite, read_image
from hnseg.io.write import write_image_atomic
from hnseg.preprocess.orientation import CANONICAL, Reorientation
from hnseg.preprocess.priors import PriorSpec, compute_prior

log = logging.getLogger(__name__)

#: Relative tolerance on spacing/origin/direction when checking that the mask is on the image grid.
GRID_RTOL = 1e-4


def _margin(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or x,y,z integers, found {text!r}") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or any(p < 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected one margin or three (x,y,z), each >= 0 voxels, found {text!r}"
        )
    return tuple(parts)  # type: ignore[return-value]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="mid-RT image (any SimpleITK-readable 3D file)")
    p.add_argument("--mask", required=True, help="registered pre-RT mask on the image grid (1=GTVp, 2=GTVn)")
    p.add_argument("--kind", choices=("box", "band"), default="box", help="prior kind (default: box)")
    p.add_argument(
        "--margin", type=_margin, default=(5, 5, 5),
        help="box margin in voxels: one value or x,y,z along the canonical (LPS) axes (default: 5)",
    )
    p.add_argument("--band-mm", type=float, default=10.0, help="band width in mm (default: 10)")
    p.add_argument("--sigma", type=float, default=1.0, help="Gaussian sigma in voxels (default: 1)")
    p.add_argument("--out", required=True, help="output prior map, e.g. OUT.nii.gz")


def _close(found, expected, atol: float) -> bool:
    f = np.asarray(found, dtype=float)
    e = np.asarray(expected, dtype=float)
    return bool(np.allclose(f, e, rtol=GRID_RTOL, atol=atol))


def check_same_grid(image: sitk.Image, mask: sitk.Image, image_name: str, mask_name: str) -> None:
    """Raise GridMismatchError unless ``mask`` is on ``image``'s grid.

    Size exact; spacing within 1e-4 relative; origin within 1e-4 relative (absolute floor 1e-4 of
    the smallest voxel size, so an origin at 0 is not held to exact equality); direction cosines
    within 1e-4 (they are of unit scale).
    """
    what = f"mask {mask_name} on the grid of image {image_name}"
    if tuple(mask.GetSize()) != tuple(image.GetSize()):
        raise GridMismatchError(f"{what}: expected size {image.GetSize()}, found {mask.GetSize()}")
    if not _close(mask.GetSpacing(), image.GetSpacing(), atol=0.0):
        raise GridMismatchError(f"{what}: expected spacing {image.GetSpacing()}, found {mask.GetSpacing()}")
    floor = GRID_RTOL * min(image.GetSpacing())
    if not _close(mask.GetOrigin(), image.GetOrigin(), atol=floor):
        raise GridMismatchError(f"{what}: expected origin {image.GetOrigin()}, found {mask.GetOrigin()}")
    if not _close(mask.GetDirection(), image.GetDirection(), atol=GRID_RTOL):
        raise GridMismatchError(
            f"{what}: expected direction {image.GetDirection()}, found {mask.GetDirection()}"
        )


def spec_from_args(args: argparse.Namespace) -> PriorSpec:
    return PriorSpec(kind=args.kind, margin=tuple(args.margin), band_mm=args.band_mm, sigma_vox=args.sigma)


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    image = read_image(args.image, "image")
    mask = read_image(args.mask, "mask")
    check_3d_scalar(image, f"image ({args.image})")
    check_3d_scalar(mask, f"mask ({args.mask})")
    check_same_grid(image, mask, str(args.image), str(args.mask))
    check_finite(sitk.GetArrayViewFromImage(image), f"image ({args.image})")
    # as inference builds it: on the canonical axes (the margin's x, y, z), then back onto the image grid
    r = Reorientation.of(image, CANONICAL)
    canonical = compute_prior(r.image(image), r.image(mask), spec)
    prior = sitk.GetImageFromArray(r.to_stored(sitk.GetArrayFromImage(canonical)))
    prior.CopyInformation(image)
    write_image_atomic(prior, args.out)
    log.info("wrote %s prior %s", spec.kind, args.out)
    return 0
