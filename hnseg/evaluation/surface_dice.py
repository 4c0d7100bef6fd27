"""Normalized surface Dice (NSD) as SegRap 2023 computes it.

SegRap 2023 ranks with Dice and the normalized surface Dice of DeepMind's ``surface-distance``
package (``compute_surface_distances`` + ``compute_surface_dice_at_tolerance``), with a tolerance of
1 mm for every structure except ``Larynx`` (2 mm) and ``OralCavity`` (3 mm); the GTVs (GTVp, GTVnd)
use 1 mm. Both masks empty → 1.0, exactly one empty → 0.0.

This module mirrors DeepMind's surface-distance algorithm (surfel-area weighted, marching-cubes
surfels); it is an independent numpy/scipy implementation, checked against the package in the tests:

1. Crop both masks to the bounding box of their union and pad it with one background voxel.
2. For every cell of the dual grid (the 2x2x2 block of voxel centres around each grid corner) build
   the 8-bit neighbour code of the mask (same bit order as DeepMind's
   ``ENCODE_NEIGHBOURHOOD_3D_KERNEL``). Cells whose code is neither 0 nor 255 are surface cells.
3. The surfel area of a surface cell is the area, in mm², of the marching-cubes triangles of its
   code (:func:`surfel_area_table`).
4. The distance of each surface cell of one mask to the other surface is
   ``distance_transform_edt(~other_border, sampling=spacing)`` at that cell.
5. NSD at tolerance t = (Σ GT surfel areas with distance ≤ t + Σ prediction surfel areas with
   distance ≤ t) / (Σ GT surfel areas + Σ prediction surfel areas).

Arrays are in numpy/SimpleITK order ``(z, y, x)``; ``spacing_zyx`` is ``sitk.Image.GetSpacing()``
REVERSED, so that spacing ``i`` belongs to array axis ``i``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
from scipy.ndimage import distance_transform_edt

from hnseg.evaluation.metrics import bounding_box

DEFAULT_TOLERANCE_MM: Final[float] = 1.0
"""SegRap tolerance of every structure not in :data:`SEGRAP_TOLERANCE_MM` (GTVs included)."""

SEGRAP_TOLERANCE_MM: Final[dict[str, float]] = {"Larynx": 2.0, "OralCavity": 3.0}
"""SegRap structures whose NSD tolerance differs from :data:`DEFAULT_TOLERANCE_MM` (exact names)."""

Corner = tuple[int, int, int]

# Corner offsets (i, j, k) of a dual-grid cell; cell o covers voxels o - 1 and o along each axis.
_CORNERS: Final[tuple[Corner, ...]] = tuple(itertools.product((0, 1), repeat=3))
_MAX_TRIANGLES_PER_CELL: Final[int] = 4


def segrap_tolerance(structure: str) -> float:
    """SegRap NSD tolerance in mm for ``structure`` (exact name: ``Larynx_Glottic`` is 1 mm)."""
    return SEGRAP_TOLERANCE_MM.get(structure, DEFAULT_TOLERANCE_MM)


# --------------------------------------------------------------------------------------------------
# Surfel area lookup table
# --------------------------------------------------------------------------------------------------


def _corner_bit(corner: Corner) -> int:
    """Bit of ``corner`` in the neighbour code: DeepMind's kernel gives offset (0, 0, 0) weight 128
    and offset (1, 1, 1) weight 1."""
    i, j, k = corner
    return 7 - (4 * i + 2 * j + k)


def _edge_neighbours(a: Corner, b: Corner) -> bool:
    """Whether two cube corners share a cube edge."""
    return sum(abs(x - y) for x, y in zip(a, b)) == 1


def _components(corners: frozenset[Corner]) -> list[frozenset[Corner]]:
    """Connected components of ``corners`` along cube edges."""
    left = set(corners)
    found: list[frozenset[Corner]] = []
    while left:
        stack = [left.pop()]
        component = set(stack)
        while stack:
            current = stack.pop()
            for other in [c for c in left if _edge_neighbours(current, c)]:
                left.remove(other)
                component.add(other)
                stack.append(other)
        found.append(frozenset(component))
    return found


def _face_cycles() -> list[tuple[Corner, ...]]:
    """The 6 cube faces, each as its 4 corners in cyclic order."""
    cycles = []
    for axis in range(3):
        for value in (0, 1):
            cycle = []
            for u, v in ((0, 0), (1, 0), (1, 1), (0, 1)):
                coords = [u, v]
                coords.insert(axis, value)
                cycle.append((coords[0], coords[1], coords[2]))
            cycles.append(tuple(cycle))
    return cycles


def _surface_polygon(component: frozenset[Corner]) -> list[np.ndarray]:
    """Closed polygon (edge midpoints, in order) separating a connected set of at most 4 corners
    from the other corners: one segment per cube face that the set partly covers."""
    segments: list[tuple[tuple[float, ...], tuple[float, ...]]] = []
    for cycle in _face_cycles():
        inside = [c in component for c in cycle]
        crossings = [
            tuple((x + y) / 2 for x, y in zip(cycle[n], cycle[(n + 1) % 4]))
            for n in range(4)
            if inside[n] != inside[(n + 1) % 4]
        ]
        if len(crossings) == 2:
            segments.append((crossings[0], crossings[1]))
        elif crossings:
            raise RuntimeError(f"ambiguous face for corner set {sorted(component)}")
    loop = list(segments.pop())
    while segments:
        follow = next(s for s in segments if loop[-1] in s)
        segments.remove(follow)
        loop.append(follow[1] if follow[0] == loop[-1] else follow[0])
    if loop[0] != loop[-1]:
        raise RuntimeError(f"open surface polygon for corner set {sorted(component)}")
    return [np.array(p) for p in loop[:-1]]


@lru_cache(maxsize=None)
def _triangulations(vertices: tuple[int, ...]) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """All triangulations (triangles as vertex-index triples) of a polygon with these vertices."""
    if len(vertices) < 3:
        return ((),)
    first, last = vertices[0], vertices[-1]
    result = []
    for apex in range(1, len(vertices) - 1):
        for left in _triangulations(vertices[: apex + 1]):
            for right in _triangulations(vertices[apex:]):
                result.append((*left, *right, (first, vertices[apex], last)))
    return tuple(result)


def _triangle_area_vectors(polygon: list[np.ndarray]) -> list[np.ndarray]:
    """Area vectors (normal × area) of the triangulation of ``polygon`` used by marching cubes.

    Planar polygons have the same area under any triangulation. The non-planar ones (pentagon of 3
    corners on a face, skew hexagon of a 4-corner path) are split like the classic marching-cubes
    case table, which is the triangulation of largest area; the tests check the whole table against
    DeepMind's for several spacings.
    """
    best: list[np.ndarray] = []
    best_area = -1.0
    for triangulation in _triangulations(tuple(range(len(polygon)))):
        vectors = [
            np.cross(polygon[b] - polygon[a], polygon[c] - polygon[a]) / 2
            for a, b, c in triangulation
        ]
        area = float(sum(np.linalg.norm(v) for v in vectors))
        if area > best_area + 1e-12:
            best, best_area = vectors, area
    return best


def _cell_area_vectors(code: int) -> list[np.ndarray]:
    """Area vectors of the marching-cubes triangles of one neighbour code, in unit-spacing cells."""
    inside = frozenset(c for c in _CORNERS if code >> _corner_bit(c) & 1)
    # The surface around a set of corners is the surface around its complement: use the smaller set
    # (each of its edge-connected components is then enclosed by one polygon).
    side = inside if len(inside) <= 4 else frozenset(_CORNERS) - inside
    vectors: list[np.ndarray] = []
    for component in _components(side):
        vectors.extend(_triangle_area_vectors(_surface_polygon(component)))
    return vectors


def _build_unit_area_vectors() -> np.ndarray:
    """``(256, 4, 3)`` absolute triangle area vectors per code (zero-padded), unit spacing."""
    table = np.zeros((256, _MAX_TRIANGLES_PER_CELL, 3))
    for code in range(1, 255):
        vectors = _cell_area_vectors(code)
        table[code, : len(vectors)] = np.abs(vectors)
    table.setflags(write=False)
    return table


_UNIT_AREA_VECTORS: Final[np.ndarray] = _build_unit_area_vectors()


def surfel_area_table(spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Surface area in mm² of each of the 256 neighbour codes for voxel spacing ``spacing_zyx``.

    A triangle with unit-cell area vector ``(n0, n1, n2)`` has, after scaling axis ``i`` by
    ``s_i``, the area ``|(n0·s1·s2, n1·s0·s2, n2·s0·s1)|``.
    """
    s0, s1, s2 = _check_spacing(spacing_zyx)
    scale = np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.linalg.norm(_UNIT_AREA_VECTORS * scale, axis=-1).sum(axis=-1)


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------


def _as_mask(name: str, array: np.ndarray) -> np.ndarray:
    """``array`` as a 3D boolean mask; numeric arrays must hold only 0 and 1."""
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3D array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a boolean or numeric array, got dtype {arr.dtype}")
    mask = arr == 1
    if not np.all(mask | (arr == 0)):
        raise ValueError(
            f"{name} must contain only 0 and 1 (pass `labels == k` for one label of a label map)"
        )
    return mask


def _check_masks(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as 3D boolean arrays of the same shape."""
    gt_mask = _as_mask("gt", gt)
    pred_mask = _as_mask("pred", pred)
    if gt_mask.shape != pred_mask.shape:
        raise ValueError(f"gt and pred shapes differ: {gt_mask.shape} vs {pred_mask.shape}")
    return gt_mask, pred_mask


def _check_spacing(spacing_zyx: tuple[float, float, float]) -> tuple[float, float, float]:
    """Three finite positive spacings in mm, in array axis order."""
    try:
        values = tuple(float(s) for s in spacing_zyx)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"spacing_zyx must be 3 numbers, got {spacing_zyx!r}") from exc
    if len(values) != 3:
        raise ValueError(f"spacing_zyx must have 3 values (z, y, x), got {len(values)}")
    if not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing_zyx values must be finite and positive, got {values}")
    return values[0], values[1], values[2]


def _check_tolerance(tolerance_mm: float) -> float:
    """A finite, non-negative tolerance in mm."""
    tolerance = float(tolerance_mm)
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance_mm must be finite and >= 0, got {tolerance_mm!r}")
    return tolerance


# --------------------------------------------------------------------------------------------------
# Surface distances and NSD
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurfaceDistances:
    """Surfels of both masks with their distance (mm) to the other surface.

    Each direction is sorted by (distance, area), as DeepMind's package returns it. Distances to an
    empty surface are ``inf``; both masks empty gives four empty arrays.
    """

    distances_gt_to_pred: np.ndarray
    distances_pred_to_gt: np.ndarray
    surfel_areas_gt: np.ndarray
    surfel_areas_pred: np.ndarray


def _neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """8-bit neighbour code of every dual-grid cell of ``mask`` padded by one background voxel.

    The result has shape ``mask.shape + 1``; cell ``o`` covers voxels ``o - 1`` and ``o`` per axis.
    """
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    n0, n1, n2 = (n - 1 for n in padded.shape)
    codes = np.zeros((n0, n1, n2), dtype=np.uint8)
    for corner in _CORNERS:
        i, j, k = corner
        codes |= padded[i : i + n0, j : j + n1, k : k + n2] * np.uint8(1 << _corner_bit(corner))
    return codes


def _distance_map(border: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) of every cell to the nearest ``border`` cell; ``inf`` when there is none."""
    if not border.any():
        return np.full(border.shape, np.inf)
    return distance_transform_edt(~border, sampling=spacing)


def _sorted_by_distance(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays reordered by (distance, area)."""
    order = np.lexsort((areas, distances))
    return distances[order], areas[order]


def surface_distances(
    gt: np.ndarray, pred: np.ndarray, spacing_zyx: tuple[float, float, float]
) -> SurfaceDistances:
    """Surfel areas and surface-to-surface distances of two masks (DeepMind's
    ``compute_surface_distances``); ``spacing_zyx`` in array axis order."""
    gt_mask, pred_mask = _check_masks(gt, pred)
    spacing = _check_spacing(spacing_zyx)
    box = bounding_box(gt_mask | pred_mask)
    if box is None:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty.copy(), empty.copy(), empty.copy())

    area_table = surfel_area_table(spacing)
    codes_gt = _neighbour_codes(gt_mask[box])
    codes_pred = _neighbour_codes(pred_mask[box])
    border_gt = (codes_gt != 0) & (codes_gt != 255)
    border_pred = (codes_pred != 0) & (codes_pred != 255)

    gt_to_pred, areas_gt = _sorted_by_distance(
        _distance_map(border_pred, spacing)[border_gt], area_table[codes_gt[border_gt]]
    )
    pred_to_gt, areas_pred = _sorted_by_distance(
        _distance_map(border_gt, spacing)[border_pred], area_table[codes_pred[border_pred]]
    )
    return SurfaceDistances(gt_to_pred, pred_to_gt, areas_gt, areas_pred)


def surface_dice_at_tolerance(distances: SurfaceDistances, tolerance_mm: float) -> float:
    """NSD from precomputed :class:`SurfaceDistances` (both surfaces empty → 1.0, one → 0.0)."""
    tolerance = _check_tolerance(tolerance_mm)
    total = float(distances.surfel_areas_gt.sum() + distances.surfel_areas_pred.sum())
    if total == 0.0:
        return 1.0
    overlap_gt = distances.surfel_areas_gt[distances.distances_gt_to_pred <= tolerance].sum()
    overlap_pred = distances.surfel_areas_pred[distances.distances_pred_to_gt <= tolerance].sum()
    return float((overlap_gt + overlap_pred) / total)


def normalized_surface_dice(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    tolerance_mm: float,
) -> float:
    """SegRap normalized surface Dice of two masks at ``tolerance_mm``.

    Both masks empty → 1.0; exactly one empty → 0.0. ``spacing_zyx`` is in array axis order (the
    reverse of SimpleITK's ``GetSpacing()``). See :func:`segrap_tolerance` for the tolerances.
    """
    tolerance = _check_tolerance(tolerance_mm)
    gt_mask, pred_mask = _check_masks(gt, pred)
    spacing = _check_spacing(spacing_zyx)
    gt_any, pred_any = bool(gt_mask.any()), bool(pred_mask.any())
    if not gt_any and not pred_any:
        return 1.0
    if not (gt_any and pred_any):
        return 0.0
    return surface_dice_at_tolerance(surface_distances(gt_mask, pred_mask, spacing), tolerance)
