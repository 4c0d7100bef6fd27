"""SegRap normalized surface Dice (hnseg.evaluation.surface_dice).

Expected values are derived by hand from the marching-cubes surfel geometry, and the implementation
is cross-checked against DeepMind's ``surface-distance`` package (pinned in requirements-test.txt).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import surface_distance
from scipy.ndimage import gaussian_filter
from surface_distance import lookup_tables

from hnseg.evaluation.surface_dice import (
    SEGRAP_TOLERANCE_MM,
    SurfaceDistances,
    normalized_surface_dice,
    segrap_tolerance,
    surface_dice_at_tolerance,
    surface_distances,
    surfel_area_table,
)

# surface-distance 0.1 imports correlate/distance_transform_edt from deprecated scipy namespaces.
REFERENCE_WARNINGS = pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")


def box_mask(shape: tuple[int, int, int], lo: tuple[int, int, int], size: tuple[int, int, int]):
    """Boolean array with a solid box of ``size`` voxels starting at ``lo``."""
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, a + n) for a, n in zip(lo, size))] = True
    return mask


# --------------------------------------------------------------------------------------------------
# Tolerances
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("structure", "expected"),
    [
        ("Larynx", 2.0),
        ("OralCavity", 3.0),
        ("Larynx_Glottic", 1.0),
        ("Larynx_Supraglot", 1.0),
        ("GTVp", 1.0),
        ("GTVnd", 1.0),
        ("Brainstem", 1.0),
        ("larynx", 1.0),  # exact names only
    ],
)
def test_segrap_tolerance(structure: str, expected: float) -> None:
    assert segrap_tolerance(structure) == expected


def test_tolerance_table_lists_only_the_exceptions() -> None:
    assert SEGRAP_TOLERANCE_MM == {"Larynx": 2.0, "OralCavity": 3.0}


# --------------------------------------------------------------------------------------------------
# Hand-computed geometry
# --------------------------------------------------------------------------------------------------


def test_single_voxel_is_an_octahedron() -> None:
    # One voxel: 8 corner cells, each a triangle through the half-edge midpoints
    # (s0/2, 0, 0), (0, s1/2, 0), (0, 0, s2/2): area ½·¼·√((s1 s2)² + (s0 s2)² + (s0 s1)²).
    s0, s1, s2 = 3.0, 1.0, 0.5
    expected = 8 * 0.125 * math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2)
    mask = box_mask((3, 3, 3), (1, 1, 1), (1, 1, 1))
    d = surface_distances(mask, mask, (s0, s1, s2))
    assert d.surfel_areas_gt.size == 8
    assert d.surfel_areas_gt.sum() == pytest.approx(expected, rel=1e-12)
    assert np.all(d.distances_gt_to_pred == 0.0)


def test_box_surface_area_and_identical_masks() -> None:
    # Box of A×B×C = 2×3×4 voxels (z, y, x), spacing (3, 1, 1). Its dual-grid surface cells:
    #   8 corner cells, triangle area T = ⅛√((1·1)² + (3·1)² + (3·1)²) = √19/8;
    #   edges along x: 4·(C−1) = 12 cells and along y: 4·(B−1) = 8 cells, each a rectangle
    #     1 × √(1.5² + 0.5²) = √10/2;  edges along z: 4·(A−1) = 4 cells, 3 × √(0.5² + 0.5²) = 1.5√2;
    #   z faces: 2·(B−1)(C−1) = 12 cells of 1·1; y faces: 2·(A−1)(C−1) = 6 and
    #     x faces: 2·(A−1)(B−1) = 4 cells of 3·1.
    # Total S = √19 + 20·√10/2 + 4·1.5√2 + 12 + 30 = √19 + 10√10 + 6√2 + 42.
    expected_area = math.sqrt(19) + 10 * math.sqrt(10) + 6 * math.sqrt(2) + 42
    gt = box_mask((8, 9, 10), (2, 3, 3), (2, 3, 4))
    d = surface_distances(gt, gt.copy(), (3.0, 1.0, 1.0))
    assert d.surfel_areas_gt.sum() == pytest.approx(expected_area, rel=1e-12)
    assert d.surfel_areas_pred.sum() == pytest.approx(expected_area, rel=1e-12)
    assert d.surfel_areas_gt.size == 8 + 12 + 8 + 4 + 12 + 6 + 4
    assert normalized_surface_dice(gt, gt.copy(), (3.0, 1.0, 1.0), 0.0) == 1.0


def test_identical_cubes_give_one() -> None:
    cube = box_mask((12, 12, 12), (3, 3, 3), (5, 5, 5))
    for spacing in ((1.0, 1.0, 1.0), (3.0, 0.5, 0.7)):
        assert normalized_surface_dice(cube, cube.copy(), spacing, 1.0) == 1.0


# Same box as above, prediction shifted by one voxel along z (3 mm). On the dual grid the
# prediction's surface cells are the GT's shifted by one cell along z, so, numbering the GT's cell
# layers z = 0..A (A = 2):
#   * side cells (y or x on the box boundary) at z = 1..A are shared by both surfaces: distance 0;
#     that is the whole middle layer z = 1 (4 z-edges 1.5√2 + 10 faces of 3 = 6√2 + 30) and the
#     boundary ring of the top layer z = A (4 corners T + 10 edges √10/2 = √19/2 + 5√10);
#   * the 6 interior cells of the top layer (area 1 each) are 1 mm (one cell along y or x) from the
#     prediction's side cells in the same layer, closer than its top layer 3 mm away: distance 1;
#   * the whole bottom layer z = 0 (√19/2 + 5√10 + 6) has the prediction's bottom layer 3 mm away.
# The prediction's distances mirror these (reflect z), so
#   NSD(t < 1)     = (√19/2 + 5√10 + 6√2 + 30) / S ≈ 0.65315
#   NSD(1 ≤ t < 3) = (√19/2 + 5√10 + 6√2 + 36) / S ≈ 0.72254
#   NSD(t ≥ 3)     = 1.
_S = math.sqrt(19) + 10 * math.sqrt(10) + 6 * math.sqrt(2) + 42
_SHARED = math.sqrt(19) / 2 + 5 * math.sqrt(10) + 6 * math.sqrt(2) + 30
SHIFT_CASES = [
    (0.0, _SHARED / _S),
    (0.5, _SHARED / _S),
    (0.99, _SHARED / _S),
    (1.0, (_SHARED + 6) / _S),
    (2.0, (_SHARED + 6) / _S),
    (2.99, (_SHARED + 6) / _S),
    (3.0, 1.0),
    (10.0, 1.0),
]


@pytest.mark.parametrize(("tolerance", "expected"), SHIFT_CASES)
def test_box_shifted_along_z_with_anisotropic_spacing(tolerance: float, expected: float) -> None:
    gt = box_mask((8, 9, 10), (2, 3, 3), (2, 3, 4))
    pred = box_mask((8, 9, 10), (3, 3, 3), (2, 3, 4))
    assert normalized_surface_dice(gt, pred, (3.0, 1.0, 1.0), tolerance) == pytest.approx(
        expected, abs=1e-12
    )
    # Symmetric in gt/pred.
    assert normalized_surface_dice(pred, gt, (3.0, 1.0, 1.0), tolerance) == pytest.approx(
        expected, abs=1e-12
    )


def test_shift_distances_by_hand() -> None:
    gt = box_mask((8, 9, 10), (2, 3, 3), (2, 3, 4))
    pred = box_mask((8, 9, 10), (3, 3, 3), (2, 3, 4))
    d = surface_distances(gt, pred, (3.0, 1.0, 1.0))
    assert set(np.unique(d.distances_gt_to_pred).tolist()) == {0.0, 1.0, 3.0}
    for distances, areas in (
        (d.distances_gt_to_pred, d.surfel_areas_gt),
        (d.distances_pred_to_gt, d.surfel_areas_pred),
    ):
        assert np.all(np.diff(distances) >= 0)  # sorted
        assert areas[distances == 0.0].sum() == pytest.approx(_SHARED, rel=1e-12)
        assert areas[distances == 1.0].sum() == pytest.approx(6.0, rel=1e-12)
        assert areas[distances == 3.0].sum() == pytest.approx(_S - _SHARED - 6, rel=1e-12)


def test_spacing_is_applied_per_array_axis() -> None:
    # The same 1-voxel shift along z is 3 mm with spacing (3, 1, 1) but 1 mm with (1, 1, 3)
    # (then only the shared side cells and the 1 mm steps count, every other cell is 1 mm away).
    gt = box_mask((8, 9, 10), (2, 3, 3), (2, 3, 4))
    pred = box_mask((8, 9, 10), (3, 3, 3), (2, 3, 4))
    assert normalized_surface_dice(gt, pred, (3.0, 1.0, 1.0), 1.0) < 0.75
    assert normalized_surface_dice(gt, pred, (1.0, 1.0, 3.0), 1.0) == 1.0


# --------------------------------------------------------------------------------------------------
# Empty masks
# --------------------------------------------------------------------------------------------------


def test_both_empty_is_one() -> None:
    empty = np.zeros((5, 6, 7), dtype=bool)
    assert normalized_surface_dice(empty, empty.copy(), (1.0, 1.0, 1.0), 1.0) == 1.0
    d = surface_distances(empty, empty, (1.0, 1.0, 1.0))
    assert isinstance(d, SurfaceDistances)
    assert all(a.size == 0 for a in vars(d).values())
    assert surface_dice_at_tolerance(d, 1.0) == 1.0


def test_one_empty_is_zero() -> None:
    empty = np.zeros((6, 6, 6), dtype=bool)
    cube = box_mask((6, 6, 6), (1, 1, 1), (3, 3, 3))
    assert normalized_surface_dice(cube, empty, (1.0, 1.0, 1.0), 100.0) == 0.0
    assert normalized_surface_dice(empty, cube, (1.0, 1.0, 1.0), 100.0) == 0.0
    d = surface_distances(cube, empty, (1.0, 1.0, 1.0))
    assert d.distances_gt_to_pred.size > 0 and np.all(np.isinf(d.distances_gt_to_pred))
    assert d.distances_pred_to_gt.size == 0 and d.surfel_areas_pred.size == 0
    assert surface_dice_at_tolerance(d, 100.0) == 0.0


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------

_CUBE = box_mask((6, 6, 6), (1, 1, 1), (3, 3, 3))


@pytest.mark.parametrize(
    ("gt", "pred", "spacing", "tolerance", "message"),
    [
        (_CUBE[0], _CUBE[0], (1, 1, 1), 1.0, "3D"),
        (_CUBE, _CUBE[:5], (1, 1, 1), 1.0, "shapes differ"),
        (_CUBE, _CUBE, (1, 1), 1.0, "3 values"),
        (_CUBE, _CUBE, (1, 1, 1, 1), 1.0, "3 values"),
        (_CUBE, _CUBE, (1, 0, 1), 1.0, "positive"),
        (_CUBE, _CUBE, (1, -1, 1), 1.0, "positive"),
        (_CUBE, _CUBE, (1, float("nan"), 1), 1.0, "positive"),
        (_CUBE, _CUBE, 1.0, 1.0, "3 numbers"),
        (_CUBE, _CUBE, (1, 1, 1), -0.5, "tolerance"),
        (_CUBE, _CUBE, (1, 1, 1), float("nan"), "tolerance"),
        (_CUBE.astype(np.uint8) * 2, _CUBE, (1, 1, 1), 1.0, "only 0 and 1"),
        (_CUBE.astype(str), _CUBE, (1, 1, 1), 1.0, "dtype"),
    ],
)
def test_invalid_inputs_raise(gt, pred, spacing, tolerance, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalized_surface_dice(gt, pred, spacing, tolerance)


def test_numeric_binary_masks_are_accepted() -> None:
    as_int = _CUBE.astype(np.uint8)
    as_float = _CUBE.astype(np.float32)
    assert normalized_surface_dice(as_int, as_float, (2.0, 1.0, 1.0), 0.0) == 1.0


# --------------------------------------------------------------------------------------------------
# Agreement with DeepMind's surface-distance
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 1.0, 1.0), (2.5, 0.7, 1.3)])
def test_area_table_matches_reference(spacing: tuple[float, float, float]) -> None:
    expected = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    np.testing.assert_allclose(surfel_area_table(spacing), expected, rtol=0, atol=1e-12)


def blob_pair(seed: int, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping, differently shaped smooth random blobs."""
    rng = np.random.default_rng(seed)
    common = gaussian_filter(rng.standard_normal(shape), 2.0)
    own_gt = gaussian_filter(rng.standard_normal(shape), 1.5)
    own_pred = gaussian_filter(rng.standard_normal(shape), 1.5)
    gt = common + 0.6 * own_gt > 0.05
    pred = common + 0.6 * own_pred > 0.1
    return gt, pred


@REFERENCE_WARNINGS
@pytest.mark.parametrize(
    ("seed", "spacing"),
    [(0, (3.0, 0.7, 0.7)), (1, (2.5, 0.9, 1.2)), (2, (1.0, 1.0, 1.0)), (3, (0.8, 2.0, 0.5))],
)
def test_agrees_with_reference_package(seed: int, spacing: tuple[float, float, float]) -> None:
    gt, pred = blob_pair(seed, (18, 26, 22))
    assert gt.any() and pred.any() and (gt != pred).any()
    reference = surface_distance.compute_surface_distances(gt, pred, spacing)
    ours = surface_distances(gt, pred, spacing)
    for field in (
        "distances_gt_to_pred",
        "distances_pred_to_gt",
        "surfel_areas_gt",
        "surfel_areas_pred",
    ):
        np.testing.assert_allclose(getattr(ours, field), reference[field], rtol=0, atol=1e-9)

    nsd_values = []
    for tolerance in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0):
        expected = float(surface_distance.compute_surface_dice_at_tolerance(reference, tolerance))
        got = normalized_surface_dice(gt, pred, spacing, tolerance)
        assert got == pytest.approx(expected, abs=1e-6)
        nsd_values.append(got)
    # The pair is neither identical nor far apart: NSD must actually vary with the tolerance.
    assert nsd_values[0] < 0.95
    assert nsd_values[0] < nsd_values[-1]
