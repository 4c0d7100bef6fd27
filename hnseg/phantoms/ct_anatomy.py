"""Deterministic synthetic head-and-neck CT phantoms (+ a co-registered T1w MRI) for the CT tasks.

One case serves all three CT task profiles: SegRap 2023 task 1 (45 OARs) and task 2 (GTVp, GTVnd)
from the non-contrast + contrast-enhanced CT pair, and ``npc-targets`` (CT + T1w MRI → 15 OARs,
GTVp, GTVn, CTV70, CTV63 and the T stage).

Coordinates: LPS world mm (x → patient LEFT, y → posterior, z → superior), the same convention as
``hnseg.phantoms.anatomy``. ``_L`` structures lie on the patient's left, i.e. at LARGER world x than
their ``_R`` partners.

How a case is built:

1. *Pose*: an anatomical frame ``q`` (mm, origin near the nasopharynx, x left, y posterior,
   z superior) is placed in the world by a random scale (±5–7 %), a small rotation (≤ 4°), a shift
   and a smooth displacement field (:class:`~hnseg.phantoms.anatomy.Deformation`, rms 1–2.5 mm):
   ``q = S⁻¹ Rᵀ (p + u(p) − c)`` for every CT voxel centre ``p``.
2. *Partition*: implicit shapes (≈ signed distances in mm, positive inside) are painted, in a fixed
   order, into a uint8 map of non-overlapping *pieces* (tissues and labelled structure pieces; see
   ``PIECES``). Painting can be restricted to pieces that may be overwritten, so an unlabelled
   tissue painted late never eats an organ. Each structure mask is a union of pieces, which gives
   exactly the SegRap containments (Brain ⊃ BrainStem, TemporalLobe_L/R, Hippocampus_L/R;
   Eye ⊃ Lens; MiddleEar ⊃ TympanicCavity; Larynx ⊃ Larynx_Glottic, Larynx_Supraglot) and no other
   overlap between OARs.
3. *Targets*: the nasopharyngeal tumour (GTVp) and 0–3 nodes (GTVn = GTVnd) are painted over
   unlabelled tissue only, so they never overlap an OAR; CTV70 / CTV63 are margins in mm (EDT with
   the voxel spacing), nested exactly GTVp ∪ GTVn ⊂ CTV70 ⊂ CTV63; the T stage is computed from the
   final masks by :func:`t_stage_from_extent`.
4. *Images*: per-piece HU (+ enhancement in the contrast phase), smooth textures, a mild blur and
   Gaussian noise; the T1w MRI is rendered from the same pieces on the CT grid, resampled (linear)
   onto its own grid (other spacing, origin and size; identity transform), with a bias field and
   noise.

Randomness comes only from ``np.random.default_rng(seed)`` (draws in a fixed order) plus a
per-block permutation of the target T stage, so the same seed gives bit-identical arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hnseg.phantoms.anatomy import (
    Blob, Deformation, Grid, SmoothField, _capsule_field, _random_rotation, fg_bbox,
)
from hnseg.tasks.npc import T_STAGES
from hnseg.tasks.segrap import SEGRAP_OARS

TARGETS: tuple[str, ...] = ("GTVp", "GTVnd", "GTVn", "CTV70", "CTV63")
ALL_STRUCTURES: tuple[str, ...] = SEGRAP_OARS + TARGETS

DEFAULT_SIZE = (128, 128, 64)
DEFAULT_SPACING = (1.5, 1.5, 3.0)
MRI_SPACING = (0.9, 0.9, 4.0)

# T-stage rule thresholds (see t_stage_from_extent)
LATERAL_T2_MM = 18.0  # |x| from the midline beyond which the tumour is in the parapharyngeal space
MIN_INVASION_VOX = 3  # voxels needed to call skull-base / intracranial / orbital invasion
CTV70_MARGIN_MM = 5.0
CTV63_MARGIN_MM = 5.0

# ----------------------------------------------------------------------------------------------
# pieces of the partition: (name, CT HU, contrast enhancement HU, T1w MRI level, texture std HU,
# air?). Unlabelled tissues first, then the labelled structure pieces.

PIECES: tuple[tuple[str, float, float, float, float, bool], ...] = (
    ("outside", -1000.0, 0.0, 0.00, 0.0, True),
    ("skin", 25.0, 8.0, 0.45, 4.0, False),
    ("fat", -100.0, 0.0, 1.00, 8.0, False),
    ("muscle", 55.0, 10.0, 0.40, 6.0, False),
    ("bone", 1100.0, 0.0, 0.05, 120.0, False),  # cortical bone: vault, orbit rim, hyoid, cortex
    ("marrow", 350.0, 0.0, 0.70, 60.0, False),  # vertebral bodies
    ("csf", 8.0, 0.0, 0.12, 3.0, False),  # intracranial CSF
    ("spinal_csf", 8.0, 0.0, 0.12, 3.0, False),
    ("airway", -950.0, 0.0, 0.02, 10.0, True),  # pharynx / larynx lumen, nasal cavity, sinuses
    ("mucosa", 38.0, 30.0, 0.45, 5.0, False),
    ("vessel", 42.0, 220.0, 0.06, 4.0, False),  # carotids, jugulars (not labelled)
    ("orbit_fat", -90.0, 0.0, 0.95, 8.0, False),
    ("skull_base", 750.0, 0.0, 0.60, 90.0, False),  # clivus, sphenoid body, petrous ridge
    ("disc", 90.0, 5.0, 0.35, 5.0, False),
    ("otic", 1400.0, 0.0, 0.03, 60.0, False),  # otic capsule around the inner ear
    # labelled pieces -------------------------------------------------------------------------
    ("Brain_rest", 32.0, 0.0, 0.55, 3.0, False),
    ("BrainStem", 46.0, 0.0, 0.62, 3.0, False),
    ("TemporalLobe_L", 40.0, 0.0, 0.50, 3.0, False),
    ("TemporalLobe_R", 40.0, 0.0, 0.50, 3.0, False),
    ("Hippocampus_L", 22.0, 0.0, 0.44, 3.0, False),
    ("Hippocampus_R", 22.0, 0.0, 0.44, 3.0, False),
    ("Chiasm", 62.0, 5.0, 0.64, 3.0, False),
    ("Pituitary", 70.0, 60.0, 0.58, 4.0, False),
    ("Eye_rest_L", 10.0, 0.0, 0.18, 3.0, False),
    ("Eye_rest_R", 10.0, 0.0, 0.18, 3.0, False),
    ("Lens_L", 95.0, 0.0, 0.50, 3.0, False),
    ("Lens_R", 95.0, 0.0, 0.50, 3.0, False),
    ("OpticNerve_L", 50.0, 5.0, 0.56, 3.0, False),
    ("OpticNerve_R", 50.0, 5.0, 0.56, 3.0, False),
    ("MiddleEar_rest_L", 250.0, 0.0, 0.15, 30.0, False),
    ("MiddleEar_rest_R", 250.0, 0.0, 0.15, 30.0, False),
    ("IAC_L", 0.0, 0.0, 0.14, 3.0, False),
    ("IAC_R", 0.0, 0.0, 0.14, 3.0, False),
    ("TympanicCavity_L", -600.0, 0.0, 0.03, 20.0, True),
    ("TympanicCavity_R", -600.0, 0.0, 0.03, 20.0, True),
    ("VestibulSemi_L", 40.0, 0.0, 0.20, 4.0, False),
    ("VestibulSemi_R", 40.0, 0.0, 0.20, 4.0, False),
    ("Cochlea_L", 150.0, 0.0, 0.25, 5.0, False),
    ("Cochlea_R", 150.0, 0.0, 0.25, 5.0, False),
    ("ETbone_L", -300.0, 0.0, 0.06, 20.0, False),
    ("ETbone_R", -300.0, 0.0, 0.06, 20.0, False),
    ("OralCavity", 75.0, 20.0, 0.42, 6.0, False),
    ("Mandible_L", 1000.0, 0.0, 0.10, 120.0, False),
    ("Mandible_R", 1000.0, 0.0, 0.10, 120.0, False),
    ("Submandibular_L", 40.0, 45.0, 0.52, 6.0, False),
    ("Submandibular_R", 40.0, 45.0, 0.52, 6.0, False),
    ("Parotid_L", 15.0, 40.0, 0.75, 8.0, False),
    ("Parotid_R", 15.0, 40.0, 0.75, 8.0, False),
    ("Mastoid_L", 900.0, 0.0, 0.04, 90.0, False),  # bone ...
    ("Mastoid_R", 900.0, 0.0, 0.04, 90.0, False),
    ("Mastoid_cells_L", -650.0, 0.0, 0.03, 30.0, True),  # ... with air cells (both are Mastoid)
    ("Mastoid_cells_R", -650.0, 0.0, 0.03, 30.0, True),
    ("TMjoint_L", 500.0, 0.0, 0.45, 50.0, False),
    ("TMjoint_R", 500.0, 0.0, 0.45, 50.0, False),
    ("SpinalCord", 38.0, 0.0, 0.56, 3.0, False),
    ("Esophagus", 48.0, 25.0, 0.38, 5.0, False),
    ("Larynx_rest", 170.0, 10.0, 0.30, 20.0, False),  # laryngeal cartilage framework, subglottis
    ("Larynx_Glottic", 85.0, 20.0, 0.36, 5.0, False),
    ("Larynx_Supraglot", 62.0, 30.0, 0.46, 5.0, False),
    ("PharynxConst", 70.0, 25.0, 0.34, 5.0, False),
    ("Thyroid", 105.0, 80.0, 0.60, 6.0, False),
    ("Trachea_wall", 120.0, 10.0, 0.30, 8.0, False),
    ("Trachea_lumen", -950.0, 0.0, 0.02, 10.0, True),
    ("GTVp", 50.0, 42.0, 0.68, 8.0, False),
    ("GTVn", 46.0, 38.0, 0.62, 7.0, False),
)
PIECE_IDS: dict[str, int] = {p[0]: i for i, p in enumerate(PIECES)}
_N_UNLABELLED = PIECE_IDS["Brain_rest"]
_LUT_HU = np.array([p[1] for p in PIECES], np.float32)
_LUT_CE = np.array([p[2] for p in PIECES], np.float32)
_LUT_MRI = np.array([p[3] for p in PIECES], np.float32)
_LUT_TEX = np.array([p[4] for p in PIECES], np.float32)
_LUT_AIR = np.array([p[5] for p in PIECES], bool)

# structure → pieces (containments of SegRap: a parent is the union of its pieces)
_BRAIN_PIECES = ("Brain_rest", "BrainStem", "TemporalLobe_L", "TemporalLobe_R", "Hippocampus_L",
                 "Hippocampus_R")
STRUCTURE_PIECES: dict[str, tuple[str, ...]] = {name: (name,) for name in SEGRAP_OARS}
STRUCTURE_PIECES.update({
    "Brain": _BRAIN_PIECES,
    "Eye_L": ("Eye_rest_L", "Lens_L"), "Eye_R": ("Eye_rest_R", "Lens_R"),
    "MiddleEar_L": ("MiddleEar_rest_L", "TympanicCavity_L"),
    "MiddleEar_R": ("MiddleEar_rest_R", "TympanicCavity_R"),
    "Larynx": ("Larynx_rest", "Larynx_Glottic", "Larynx_Supraglot"),
    "Mastoid_L": ("Mastoid_L", "Mastoid_cells_L"), "Mastoid_R": ("Mastoid_R", "Mastoid_cells_R"),
    "Trachea": ("Trachea_wall", "Trachea_lumen"),
    "GTVp": ("GTVp",), "GTVnd": ("GTVn",), "GTVn": ("GTVn",),
})
# the only overlaps between SegRap OARs (parent, child)
CONTAINMENTS: tuple[tuple[str, str], ...] = (
    ("Brain", "BrainStem"), ("Brain", "TemporalLobe_L"), ("Brain", "TemporalLobe_R"),
    ("Brain", "Hippocampus_L"), ("Brain", "Hippocampus_R"), ("Eye_L", "Lens_L"),
    ("Eye_R", "Lens_R"), ("MiddleEar_L", "TympanicCavity_L"), ("MiddleEar_R", "TympanicCavity_R"),
    ("Larynx", "Larynx_Glottic"), ("Larynx", "Larynx_Supraglot"),
)


def _lut(names) -> np.ndarray:
    out = np.zeros(256, bool)
    out[[PIECE_IDS[n] for n in names]] = True
    return out


_UNL = np.zeros(256, bool)
_UNL[1:_N_UNLABELLED] = True  # unlabelled tissue inside the body
_UNL_BRAIN = _UNL | _lut(("Brain_rest", "TemporalLobe_L", "TemporalLobe_R"))
_IN_BODY = np.zeros(256, bool)
_IN_BODY[1:len(PIECES)] = True
# what the tumour may replace
_SOFT = _lut(("fat", "muscle", "mucosa", "vessel", "airway"))
_NODE_OK = _lut(("fat", "muscle", "mucosa", "vessel"))
_SKULL_BASE_ZONE = ("skull_base",)
_ORBIT_ZONE = ("orbit_fat",)


# ----------------------------------------------------------------------------------------------
# the case container


@dataclass
class CtPhantomCase:
    case_id: str
    ct: sitk.Image  # int16 HU, non-contrast
    ct_contrast: sitk.Image  # int16 HU, contrast-enhanced, same grid as ct
    mri: sitk.Image  # float32 T1w-like, own grid, same physical space (identity transform)
    structures: dict[str, sitk.Image]  # uint8 0/1 masks on the CT grid, one per ALL_STRUCTURES
    t_stage: str  # "T1".."T4"
    info: dict


# ----------------------------------------------------------------------------------------------
# implicit shapes in the anatomical frame (≈ signed distance in mm, positive inside)

_BIG = 1.0e4


@dataclass(frozen=True)
class Shape:
    fn: Callable
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def __call__(self, X, Y, Z):
        return self.fn(X, Y, Z)

    def __or__(self, other: "Shape") -> "Shape":
        a, b = self.fn, other.fn
        return Shape(lambda X, Y, Z: np.maximum(a(X, Y, Z), b(X, Y, Z)),
                     tuple(np.minimum(self.lo, other.lo)), tuple(np.maximum(self.hi, other.hi)))

    def __and__(self, other: "Shape") -> "Shape":
        a, b = self.fn, other.fn
        return Shape(lambda X, Y, Z: np.minimum(a(X, Y, Z), b(X, Y, Z)),
                     tuple(np.maximum(self.lo, other.lo)), tuple(np.minimum(self.hi, other.hi)))

    def __sub__(self, other: "Shape") -> "Shape":
        a, b = self.fn, other.fn
        return Shape(lambda X, Y, Z: np.minimum(a(X, Y, Z), -b(X, Y, Z)), self.lo, self.hi)

    def grow(self, d: float) -> "Shape":
        a, dd = self.fn, np.float32(d)
        m = max(float(d), 0.0)
        return Shape(lambda X, Y, Z: a(X, Y, Z) + dd, tuple(np.asarray(self.lo) - m),
                     tuple(np.asarray(self.hi) + m))


def _union(*shapes: Shape) -> Shape:
    out = shapes[0]
    for s in shapes[1:]:
        out = out | s
    return out


def ellipsoid(c, r, rot: np.ndarray | None = None) -> Shape:
    """Ellipsoid (approximate signed distance, exact on the axes and near the surface)."""
    c = np.asarray(c, float)
    r = np.asarray(r, float)
    rmin = np.float32(r.min())
    inv1 = [np.float32(1.0 / v) for v in r]
    inv2 = [np.float32(1.0 / v**2) for v in r]

    def fn(X, Y, Z):
        d = (X - np.float32(c[0]), Y - np.float32(c[1]), Z - np.float32(c[2]))
        if rot is not None:
            d = tuple(d[0] * np.float32(rot[0, a]) + d[1] * np.float32(rot[1, a])
                      + d[2] * np.float32(rot[2, a]) for a in range(3))
        k0 = np.sqrt((d[0] * inv1[0]) ** 2 + (d[1] * inv1[1]) ** 2 + (d[2] * inv1[2]) ** 2)
        k1 = np.sqrt((d[0] * inv2[0]) ** 2 + (d[1] * inv2[1]) ** 2 + (d[2] * inv2[2]) ** 2)
        f = k0 * (np.float32(1.0) - k0) / np.maximum(k1, np.float32(1e-6))
        return np.where(k0 < 1e-3, rmin, f)

    ext = r if rot is None else np.full(3, r.max())
    return Shape(fn, tuple(c - ext), tuple(c + ext))


def cylinder(cx, cy, rx, ry, z0, z1) -> Shape:
    """Elliptic cylinder along z between z0 and z1."""
    inv1 = (np.float32(1 / rx), np.float32(1 / ry))
    inv2 = (np.float32(1 / rx**2), np.float32(1 / ry**2))

    def fn(X, Y, Z):
        dx, dy = X - np.float32(cx), Y - np.float32(cy)
        k0 = np.sqrt((dx * inv1[0]) ** 2 + (dy * inv1[1]) ** 2)
        k1 = np.sqrt((dx * inv2[0]) ** 2 + (dy * inv2[1]) ** 2)
        f = k0 * (np.float32(1.0) - k0) / np.maximum(k1, np.float32(1e-6))
        f = np.where(k0 < 1e-3, np.float32(min(rx, ry)), f)
        return np.minimum(f, np.minimum(Z - np.float32(z0), np.float32(z1) - Z))

    return Shape(fn, (cx - rx, cy - ry, z0), (cx + rx, cy + ry, z1))


def capsule(p0, p1, r0: float, r1: float | None = None) -> Shape:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    r1 = r0 if r1 is None else r1
    m = max(r0, r1)
    return Shape(_capsule_field(p0, p1, r0, r1), tuple(np.minimum(p0, p1) - m),
                 tuple(np.maximum(p0, p1) + m))


def tube(points, r: float) -> Shape:
    pts = [np.asarray(p, float) for p in points]
    return _union(*(capsule(a, b, r) for a, b in zip(pts[:-1], pts[1:])))


def box(c, half) -> Shape:
    c, half = np.asarray(c, float), np.asarray(half, float)

    def fn(X, Y, Z):
        q = [np.abs(v - np.float32(ci)) - np.float32(h) for v, ci, h in zip((X, Y, Z), c, half)]
        out = np.sqrt(sum(np.maximum(v, 0) ** 2 for v in q))
        inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0)
        return -(out + inside)

    return Shape(fn, tuple(c - half), tuple(c + half))


def halfspace(axis: int, value: float, sign: float) -> Shape:
    """{q : sign * (q[axis] - value) > 0}."""
    s, v = np.float32(sign), np.float32(value)
    lo, hi = [-_BIG] * 3, [_BIG] * 3
    (lo if sign > 0 else hi)[axis] = value

    def fn(X, Y, Z):
        return s * ((X, Y, Z)[axis] - v)

    return Shape(fn, tuple(lo), tuple(hi))


def _blob_shape(b: Blob) -> Shape:
    lo, hi = b.bounds()
    return Shape(b.field, tuple(lo), tuple(hi))


# ----------------------------------------------------------------------------------------------
# the canvas: anatomical coordinates of every CT voxel and the piece map


class _Canvas:
    def __init__(self, grid: Grid, c: np.ndarray, M: np.ndarray, warp: Deformation):
        self.grid = grid
        self.c, self.M = c, M
        x, y, z = grid.world()
        wx, wy, wz = warp.apply(x, y, z)
        p = (wx - np.float32(c[0]), wy - np.float32(c[1]), wz - np.float32(c[2]))
        Minv = np.linalg.inv(M)
        self.X, self.Y, self.Z = (
            (p[0] * np.float32(Minv[r, 0]) + p[1] * np.float32(Minv[r, 1])
             + p[2] * np.float32(Minv[r, 2])).astype(np.float32) for r in range(3))
        self.pad = warp.bound + 1.0
        self.part = np.zeros(grid.shape, np.uint8)

    def slices(self, shape: Shape):
        lo = np.maximum(np.asarray(shape.lo, float), -1000.0)
        hi = np.minimum(np.asarray(shape.hi, float), 1000.0)
        if np.any(hi < lo):
            return None
        corners = np.array([[(lo, hi)[b[k]][k] for k in range(3)] for b in np.ndindex(2, 2, 2)])
        w = corners @ self.M.T + self.c
        return self.grid.slices_for_box(w.min(0) - self.pad, w.max(0) + self.pad, pad_vox=1)

    def inside(self, shape: Shape):
        """(slices, boolean crop) of the voxels inside ``shape``; (None, None) if out of view."""
        sl = self.slices(shape)
        if sl is None:
            return None, None
        f = shape(self.X[sl], self.Y[sl], self.Z[sl])
        return sl, np.broadcast_to(f > 0, tuple(s.stop - s.start for s in sl))

    def mask(self, shape: Shape) -> np.ndarray:
        out = np.zeros(self.grid.shape, bool)
        sl, m = self.inside(shape)
        if sl is not None:
            out[sl] = m
        return out

    def paint(self, piece: str, shape: Shape, allowed: np.ndarray | None = _IN_BODY) -> None:
        sl, m = self.inside(shape)
        if sl is None:
            return
        crop = self.part[sl]
        if allowed is not None:
            m = m & allowed[crop]
        crop[m] = PIECE_IDS[piece]


# ----------------------------------------------------------------------------------------------
# anatomy


class _Jitter:
    """Per-case anatomical variation drawn in a fixed order."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def s(self, rel: float = 0.08) -> float:  # size factor
        return float(self.rng.uniform(1.0 - rel, 1.0 + rel))

    def r(self, radii, rel: float = 0.08) -> np.ndarray:
        return np.asarray(radii, float) * self.s(rel)

    def p(self, point, mm: float = 1.5) -> np.ndarray:
        return np.asarray(point, float) + self.rng.uniform(-mm, mm, size=3)


def _canal_y(z: float) -> float:
    """Antero-posterior position of the spinal canal axis at anatomical height z."""
    return 30.0 + 0.0195 * (-14.0 - z)


def _paint_anatomy(cv: _Canvas, j: _Jitter) -> dict:
    """Paint every normal structure; returns the anatomical shapes the targets need."""
    P = cv.paint
    sides = (1.0, -1.0)  # +1 = patient left (x > 0)
    LR = {1.0: "L", -1.0: "R"}

    # --- brain compartments (needed first: the head outline is the brain grown by the scalp)
    cerebrum = ellipsoid(j.p((0, 8, 50)), j.r((60, 70, 32), 0.05))
    fossa = ellipsoid(j.p((0, 46, 6)), j.r((46, 28, 20), 0.06))
    temporal = {s: ellipsoid(j.p((s * 42, -4, 28)), j.r((17, 28, 16))) for s in sides}
    brain_union = _union(cerebrum, fossa, temporal[1.0], temporal[-1.0])
    stem_top, stem_bot = j.p((0, 20, 40), 1.0), np.array([0.0, 30.0, -14.0])
    brainstem = capsule(stem_top, stem_bot, 10.0 * j.s(), 7.0 * j.s()) & halfspace(2, -14.0, 1.0)

    # --- body: head, upper face, face, jaw, occiput/upper neck, neck
    scalp = 14.0
    body = _union(
        brain_union.grow(scalp),
        ellipsoid((0, -28, 28), j.r((64, 52, 32), 0.04)),
        ellipsoid((0, -18, 2), j.r((67, 70, 46), 0.04)),
        ellipsoid((0, -30, -28), j.r((60, 56, 28), 0.04)),
        ellipsoid((0, 22, -10), j.r((60, 52, 40), 0.04)),
        cylinder(0, 10, 54 * j.s(0.06), 50 * j.s(0.06), -400, -10),
    )
    fat_th = 4.0 + 3.0 * j.rng.random()
    P("skin", body, allowed=None)
    P("fat", body.grow(-2.0), allowed=None)
    P("muscle", body.grow(-2.0 - fat_th), allowed=None)
    for s in sides:  # deep fat compartments
        P("fat", ellipsoid((s * 40, 30, -60), j.r((12, 14, 30))), _UNL)
        P("fat", ellipsoid((s * 34, -20, -62), j.r((10, 10, 12))), _UNL)

    # --- great vessels (enhancing, unlabelled)
    for s in sides:
        carotid = [(s * 30, -6, -220), (s * 26, -3, -30), (s * 22, -1, 8)]
        jugular = [(s * 38, 6, -220), (s * 35, 10, -30), (s * 40, 18, 2)]
        P("vessel", tube(carotid, 3.5 * j.s()), _UNL)
        P("vessel", tube(jugular, 5.0 * j.s()), _UNL)

    # --- skull, CSF, brain
    P("bone", brain_union.grow(9.0), _UNL)
    P("csf", brain_union.grow(2.0) | brainstem.grow(2.5), _UNL)
    P("Brain_rest", brain_union)
    for s in sides:
        P(f"TemporalLobe_{LR[s]}", temporal[s])
    for s in sides:
        P(f"Hippocampus_{LR[s]}", ellipsoid(j.p((s * 31, 4, 22), 1.0), j.r((4.5, 12, 4.5), 0.06)))
    P("BrainStem", brainstem)

    # --- skull base (carves the brain where they meet, never another organ)
    clivus_top, clivus_bot = np.array([0.0, 3.0, 18.0]), np.array([0.0, 12.0, -10.0])
    clivus = capsule(clivus_top, clivus_bot, 6.5 * j.s(0.05))
    sphenoid_c = j.p((0, -22, 15), 1.0)
    P("skull_base", clivus, _UNL_BRAIN)
    P("skull_base", ellipsoid(sphenoid_c, j.r((13, 12, 7), 0.05)), _UNL_BRAIN)
    P("airway", ellipsoid(sphenoid_c + (0, -1, 0), j.r((9, 8, 4.5), 0.1)), _UNL)
    for s in sides:
        P("skull_base", capsule((s * 56, 22, 6), (s * 24, 0, 14), 8.0), _UNL_BRAIN)

    # --- orbits, optic pathway, sella
    eye_c = {s: j.p((s * 32, -53, 30), 1.0) for s in sides}
    for s in sides:
        of = ellipsoid(eye_c[s] + (-s * 1, 8, 0), j.r((15, 21, 14), 0.05))
        P("bone", of.grow(2.5) & halfspace(1, eye_c[s][1] - 3.0, 1.0), _UNL_BRAIN)
        P("orbit_fat", of, _UNL_BRAIN)
    chiasm_c = j.p((0, -12, 33), 1.0)
    chiasm = ellipsoid(chiasm_c, j.r((9, 4.5, 3.6), 0.06))
    P("csf", chiasm.grow(2.5), _UNL_BRAIN)
    for s in sides:
        r_eye = 11.5 * j.s(0.05)
        back = eye_c[s] + (-s * 2.0, r_eye - 1.0, 0)
        P(f"OpticNerve_{LR[s]}", capsule(back, chiasm_c + (s * 6.0, -1.0, 0), 2.8 * j.s(0.05)))
        P(f"Eye_rest_{LR[s]}", ellipsoid(eye_c[s], (r_eye, r_eye, r_eye * 0.97)))
        lens_c = eye_c[s] + (0, -(r_eye - 3.5), 0)
        P(f"Lens_{LR[s]}", ellipsoid(lens_c, j.r((4.3, 3.0, 3.8), 0.05)))
    P("Chiasm", chiasm)
    P("Pituitary", ellipsoid(j.p((0, -6, 23), 1.0), j.r((5.5, 5.0, 4.2), 0.06)))

    # --- nasal cavity, paranasal sinuses, palate
    nasal = ellipsoid((0, -52, 10), j.r((11, 26, 13), 0.05))
    P("bone", nasal.grow(2.0), _UNL)
    for s in sides:
        sinus = ellipsoid(j.p((s * 26, -50, 5)), j.r((11, 14, 12)))
        P("bone", sinus.grow(2.0), _UNL)
        P("airway", sinus, _UNL)
    P("airway", nasal, _UNL)
    P("bone", box((0, -52, 10), (0.8, 25, 12)), _UNL)  # septum
    P("bone", box((0, -48, -4), (22, 24, 1.8)), _UNL)  # hard palate

    # --- nasopharynx and parapharyngeal spaces
    for s in sides:
        P("fat", ellipsoid((s * 20, -14, 0), j.r((5.5, 9, 12))), _UNL)  # parapharyngeal fat
        P("muscle", ellipsoid((s * 27, -28, -4), j.r((6, 10, 12))), _UNL)  # pterygoids
    np_mucosa = ellipsoid((0, -20, 2), j.r((16, 12, 11), 0.05))
    P("mucosa", np_mucosa, _UNL)
    P("muscle", ellipsoid((0, -4, -2), j.r((14, 5, 12), 0.05)), _UNL)  # longus capitis
    P("airway", ellipsoid((0, -24, 3), j.r((10, 6, 8), 0.08)), _UNL)  # nasopharyngeal lumen

    # --- oro- / hypopharynx
    oro = cylinder(0, -15, 12 * j.s(), 6 * j.s(), -47, -6)
    hypo = cylinder(0, -1, 10 * j.s(), 2.5, -76, -47)
    const = ((oro.grow(4.0) & halfspace(1, -17.0, 1.0))
             | (hypo.grow(4.0) & halfspace(1, -3.0, 1.0)))
    P("PharynxConst", const & halfspace(2, -76.0, 1.0) & halfspace(2, -8.0, -1.0))
    P("airway", oro | hypo, _UNL | _lut(("PharynxConst",)))

    # --- temporal bones
    for s in sides:
        n = LR[s]
        P("otic", ellipsoid((s * 38, 15, 7), (8, 11, 7)), _UNL_BRAIN)
        P("airway", capsule((s * 53, 12, 6), (s * 72, 10, 6), 3.5), _UNL)  # external auditory canal
        mc, mr = j.p((s * 52, 28, -4)), j.r((9, 11, 12))
        P(f"Mastoid_{n}", ellipsoid(mc, mr))
        for _ in range(14):  # air cells
            cc = mc + j.rng.uniform(-0.65, 0.65, size=3) * mr
            cell = ellipsoid(cc, [j.rng.uniform(1.6, 2.8)] * 3)
            P(f"Mastoid_cells_{n}", cell, _lut((f"Mastoid_{n}",)))
        P(f"ETbone_{n}", capsule((s * 43, 6, 6), (s * 31, -8, 4), 2.6 * j.s(0.05)))
        me_c = j.p((s * 47, 12, 6), 1.0)
        P(f"MiddleEar_rest_{n}", ellipsoid(me_c, j.r((6, 7, 5.5), 0.06)))
        P(f"TympanicCavity_{n}", ellipsoid(me_c, j.r((3.6, 4.5, 3.6), 0.05)))
        P(f"Cochlea_{n}", ellipsoid(j.p((s * 37, 10, 5), 0.8), j.r((3.9, 3.9, 3.9), 0.05)))
        P(f"VestibulSemi_{n}", ellipsoid(j.p((s * 39, 21, 8), 0.8), j.r((4.0, 5.0, 4.5), 0.05)))
        P(f"IAC_{n}", capsule((s * 34, 22, 10), (s * 26, 22, 12), 2.9 * j.s(0.05)))

    # --- salivary glands, oral cavity, mandible, TMJ
    for s in sides:
        P(f"Parotid_{LR[s]}", ellipsoid(j.p((s * 44, 8, -16)), j.r((9, 13, 16))))
        P(f"Submandibular_{LR[s]}", ellipsoid(j.p((s * 30, -26, -48)), j.r((9, 11, 8))))
    P("OralCavity", ellipsoid(j.p((0, -48, -18)), j.r((22, 24, 12), 0.06)))
    jaw = j.s(0.05)
    for s in sides:
        half = halfspace(0, 0.0, s)
        body_pts = [(0, -66, -38), (s * 22, -58, -40), (s * 38, -34, -40), (s * 45, -8, -38)]
        ramus_pts = [(s * 45, -8, -38), (s * 47, -6, -8), (s * 49, -4, -3)]
        alveolar = [(0, -64, -27), (s * 22, -56, -28), (s * 36, -34, -29)]
        scale = lambda pts: [np.asarray(p) * (jaw, jaw, 1.0) for p in pts]  # noqa: E731
        m = tube(scale(body_pts), 5.5) | tube(scale(ramus_pts), 5.0) | tube(scale(alveolar), 4.5)
        P(f"Mandible_{LR[s]}", m & half)
        P(f"TMjoint_{LR[s]}", ellipsoid(j.p((s * 50, -3, 2), 0.8), j.r((7, 5, 5), 0.06)))
    hyoid = [(-20, -24, -48), (-12, -34, -48), (0, -37, -48), (12, -34, -48), (20, -24, -48)]
    P("bone", tube(hyoid, 2.5), _UNL)

    # --- vertebral column and spinal cord
    def canal_shape(r: float, z_top: float) -> Shape:
        return capsule((0, _canal_y(z_top), z_top), (0, _canal_y(-220.0), -220.0), r)

    def vshape(fn2, z0, z1, lo, hi) -> Shape:
        def fn(X, Y, Z):
            Yv = Y - (np.float32(30.0) + np.float32(0.0195) * (np.float32(-14.0) - Z))
            return np.minimum(fn2(X, Yv, Z), np.minimum(Z - np.float32(z0), np.float32(z1) - Z))
        return Shape(fn, lo, hi)

    body_ell = cylinder(0, -17, 12, 9, -400, 400)
    vb = vshape(body_ell.fn, -400, -16, (-12, 0, -400), (12, 32, -16))
    arch = cylinder(0, 0, 13, 12, -400, 400)
    varch = vshape(arch.fn, -400, -18, (-13, 16, -400), (13, 52, -18))
    spinous = box((0, 17, 0), (3, 8, 400))
    vspin = vshape(spinous.fn, -400, -20, (-3, 36, -400), (3, 66, -20))
    P("bone", vb.grow(1.5) | varch | vspin, _UNL)
    P("marrow", vb, _UNL)

    def disc_fn(X, Y, Z):
        ph = np.mod(Z + np.float32(14.0), np.float32(16.0))
        return np.minimum(vb.fn(X, Y, Z), np.minimum(ph - np.float32(0.5), np.float32(4.5) - ph))

    P("disc", Shape(disc_fn, vb.lo, vb.hi), _UNL)
    P("spinal_csf", canal_shape(7.0, -14.0), _UNL)
    P("SpinalCord", canal_shape(4.6 * j.s(0.05), -14.0) & halfspace(2, -14.0, -1.0))

    # --- larynx, thyroid, trachea, oesophagus
    lar = cylinder(0, -20, 17 * j.s(0.06), 14 * j.s(0.06), -78, -48)
    P("Larynx_rest", lar)
    P("Larynx_Supraglot", cylinder(0, -20, 13, 10.5, -62, -50))
    P("Larynx_Glottic", cylinder(0, -20, 13, 10.5, -68, -62))
    lar_lumen = (cylinder(0, -20, 5, 6, -62, -40) | cylinder(0, -20, 2.0, 5.5, -68, -62)
                 | cylinder(0, -21, 5.5, 5.5, -80, -68))
    P("airway", lar_lumen, _UNL | _lut(("Larynx_rest", "Larynx_Glottic", "Larynx_Supraglot")))
    for s in sides:
        P("Thyroid", ellipsoid(j.p((s * 17, -18, -86)), j.r((7, 8, 11))))
    P("Thyroid", ellipsoid(j.p((0, -31, -84), 1.0), j.r((10, 3.5, 4.0), 0.06)))
    P("Trachea_wall", cylinder(0, -21, 9 * j.s(0.05), 8 * j.s(0.05), -400, -78))
    P("Trachea_lumen", cylinder(0, -21, 6.8, 5.8, -400, -78), _lut(("Trachea_wall",)))
    P("Esophagus", cylinder(3, -6, 7 * j.s(0.06), 4.5, -400, -74))

    return {"clivus": (clivus_top, clivus_bot), "eye_c": eye_c}


# ----------------------------------------------------------------------------------------------
# tumour, nodes, T stage


def t_stage_from_extent(lateral_mm: float, skull_base_vox: int, intracranial_vox: int,
                        orbit_vox: int) -> str:
    """The phantom's T-stage rule (a simplification of AJCC 8th edition for nasopharyngeal cancer),
    applied to facts measured on the final GTVp mask:

    - ``intracranial_vox``: GTVp voxels touching the Brain mask (26-neighbourhood; Brain includes
      BrainStem, TemporalLobe_L/R and Hippocampus_L/R) or lying in intracranial CSF;
    - ``orbit_vox``: GTVp voxels inside the orbit (orbital fat compartment);
    - ``skull_base_vox``: GTVp voxels inside skull-base bone (clivus, sphenoid body, petrous ridge);
    - ``lateral_mm``: the largest distance of a GTVp voxel from the midsagittal plane (anatomical
      frame, mm).

    Rule (first match wins, ``MIN_INVASION_VOX`` = 3, ``LATERAL_T2_MM`` = 18 mm):
    T4 if ``intracranial_vox ≥ 3`` or ``orbit_vox ≥ 3`` (intracranial / orbital extension);
    T3 if ``skull_base_vox ≥ 3`` (bony skull-base invasion);
    T2 if ``lateral_mm > 18`` (parapharyngeal extension beyond the nasopharynx box, |x| ≤ 16 mm);
    T1 otherwise (confined to the nasopharynx).
    """
    if intracranial_vox >= MIN_INVASION_VOX or orbit_vox >= MIN_INVASION_VOX:
        return "T4"
    if skull_base_vox >= MIN_INVASION_VOX:
        return "T3"
    if lateral_mm > LATERAL_T2_MM:
        return "T2"
    return "T1"


def _target_stage(seed: int) -> str:
    """Uniform target stage; every aligned block of 4 consecutive seeds holds each stage once."""
    perm = np.random.default_rng([seed // 4, 0x7A9E]).permutation(len(T_STAGES))
    return T_STAGES[int(perm[seed % 4])]


def _clivus_point(clivus, z: float) -> np.ndarray:
    top, bot = clivus
    t = (top[2] - z) / (top[2] - bot[2])
    return top + t * (bot - top)


def _paint_tumour(cv: _Canvas, rng, target: str, anat: dict) -> dict:
    """Paint the GTVp: a base blob confined to the nasopharynx plus stage lobes."""
    s = float(rng.choice([-1.0, 1.0]))
    cb = np.array([s * rng.uniform(2.0, 7.0), rng.uniform(-16.0, -11.0), rng.uniform(-2.0, 6.0)])
    R = rng.uniform(7.5, 10.5)
    centres, radii, rots = [cb], [R * rng.uniform(0.85, 1.15, size=3)], [_random_rotation(rng)]
    for _ in range(int(rng.integers(1, 3))):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        centres.append(cb + d * R * rng.uniform(0.4, 0.7))
        radii.append(R * rng.uniform(0.45, 0.7) * rng.uniform(0.85, 1.15, size=3))
        rots.append(_random_rotation(rng))
    noise = SmoothField.draw(rng, 6, (6.0, 16.0), 0.10 * R)
    base = _blob_shape(Blob(np.array(centres), np.array(radii), np.array(rots), noise, cb.copy()))
    np_box = box((0, -18, 2), (16, 16, 11))  # |x| ≤ 16, y ∈ [-34, -2], z ∈ [-9, 13]
    # lobe draws (always all drawn, used by stage)
    lat_tip = np.array([s * rng.uniform(23.0, 30.0), cb[1] + rng.uniform(-4, 4),
                        cb[2] + rng.uniform(-3, 3)])
    lat_r = rng.uniform(5.0, 7.0)
    zc = rng.uniform(-2.0, 8.0)
    cl_tip = _clivus_point(anat["clivus"], zc) + (s * rng.uniform(0, 3), -1.0, 0)
    cl_r = rng.uniform(4.5, 5.5)
    route = "intracranial" if rng.random() < 0.7 else "orbit"
    ic_tip = np.array([s * rng.uniform(26.0, 31.0), rng.uniform(-10.0, -2.0),
                       rng.uniform(17.0, 21.0)])
    or_tip = anat["eye_c"][s] + (-s * rng.uniform(4.0, 7.0), rng.uniform(13.0, 16.0),
                                 rng.uniform(-4, -1))
    t4_r = rng.uniform(4.5, 5.5)
    with_t2 = rng.random() < 0.5
    with_t3 = rng.random() < 0.5

    k = T_STAGES.index(target)
    allowed_soft = _SOFT
    allowed_bone = _SOFT | _lut(_SKULL_BASE_ZONE + ("bone", "marrow"))
    allowed_all = allowed_bone | _lut(("csf", "orbit_fat", "otic", "disc"))
    cv.paint("GTVp", base & np_box, allowed_soft)
    if k == 1 or (k >= 2 and with_t2):
        cv.paint("GTVp", capsule(cb, lat_tip, lat_r, lat_r * 0.85), allowed_soft)
    if k == 2 or (k == 3 and with_t3):
        cv.paint("GTVp", capsule(cb, cl_tip, cl_r, cl_r * 0.85), allowed_bone)
    if k == 3:
        tip = ic_tip if route == "intracranial" else or_tip
        cv.paint("GTVp", capsule(cb + (0, 0, 3.0), tip, t4_r, t4_r * 0.9), allowed_all)
    return {"side": "L" if s > 0 else "R", "t4_route": route if k == 3 else None}


def _paint_nodes(cv: _Canvas, rng) -> int:
    u = rng.random()
    n = 0 if u < 0.2 else (1 if u < 0.6 else (2 if u < 0.85 else 3))
    placed: list[tuple[np.ndarray, float]] = []
    side0 = float(rng.choice([-1.0, 1.0]))
    for i in range(n):
        for _attempt in range(40):
            side = side0 if (i == 0 or rng.random() < 0.6) else -side0
            if rng.random() < 0.3:  # retropharyngeal
                c = np.array([side * rng.uniform(11.0, 15.0), rng.uniform(-6.0, -1.0),
                              rng.uniform(-14.0, -4.0)])
                r = rng.uniform(4.5, 6.5)
            else:  # level II
                c = np.array([side * rng.uniform(33.0, 42.0), rng.uniform(-4.0, 10.0),
                              rng.uniform(-46.0, -22.0)])
                r = rng.uniform(5.5, 9.5)
            if all(np.linalg.norm(c - c2) > r + r2 + 3.0 for c2, r2 in placed):
                break
        radii = np.array([r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.0),
                          r * rng.uniform(1.0, 1.4)])
        noise = SmoothField.draw(rng, 5, (6.0, 14.0), 0.06 * r)
        blob = Blob(c[None], radii[None], _random_rotation(rng, 0.5)[None], noise, c.copy())
        cv.paint("GTVn", _blob_shape(blob), _NODE_OK)
        placed.append((c, r))
    return n


def _nodal_region() -> Shape:
    """Elective nodal region of CTV63: bilateral retropharyngeal + level II."""
    return _union(*(ellipsoid((s * 13, -3, -4), (7, 6, 14)) for s in (1.0, -1.0)),
                  *(ellipsoid((s * 37, 4, -30), (12, 14, 22)) for s in (1.0, -1.0)))


def _margin(mask: np.ndarray, mm: float, spacing_zyx) -> np.ndarray:
    """Voxels within ``mm`` of ``mask`` (EDT on a crop around it)."""
    out = np.zeros_like(mask)
    bb = fg_bbox(mask)
    if bb is None:
        return out
    pad = [int(math.ceil(mm / sp)) + 1 for sp in spacing_zyx]
    sl = tuple(slice(max(0, int(bb[0][2 - a]) - pad[a]),
                     min(mask.shape[a], int(bb[1][2 - a]) + pad[a] + 1)) for a in range(3))
    d = ndimage.distance_transform_edt(~mask[sl], sampling=spacing_zyx)
    out[sl] = d <= mm
    return out


def _stage_facts(cv: _Canvas, gtvp: np.ndarray, before: np.ndarray) -> dict:
    if not gtvp.any():
        return {"lateral_mm": 0.0, "skull_base_vox": 0, "intracranial_vox": 0, "orbit_vox": 0}
    brain = np.isin(cv.part, [PIECE_IDS[n] for n in _BRAIN_PIECES])
    near_brain = ndimage.binary_dilation(brain, structure=np.ones((3, 3, 3), bool))
    return {
        "lateral_mm": round(float(np.abs(cv.X[gtvp]).max()), 3),
        "skull_base_vox": int(np.count_nonzero(gtvp & _lut(_SKULL_BASE_ZONE)[before])),
        "intracranial_vox": int(np.count_nonzero(gtvp & (near_brain | _lut(("csf",))[before]))),
        "orbit_vox": int(np.count_nonzero(gtvp & _lut(_ORBIT_ZONE)[before])),
    }


# ----------------------------------------------------------------------------------------------
# the case


def _grid_info(img: sitk.Image) -> dict:
    return {"size": list(img.GetSize()), "spacing": [float(v) for v in img.GetSpacing()],
            "origin": [float(v) for v in img.GetOrigin()]}


def make_ct_case(seed: int, case_id: str, *, size=DEFAULT_SIZE,
                 spacing=DEFAULT_SPACING) -> CtPhantomCase:
    """One synthetic CT pair + T1w MRI case with all structures of ``ALL_STRUCTURES``."""
    seed = int(seed)
    case_id = str(case_id)
    size = tuple(int(v) for v in size)
    spacing = tuple(float(v) for v in spacing)
    if len(size) != 3 or len(spacing) != 3 or min(size) < 8 or min(spacing) <= 0:
        raise ValueError(f"size/spacing must be 3 positive values (x, y, z), got {size}, {spacing}")
    rng = np.random.default_rng(seed)
    target = _target_stage(seed)

    # ---- grid and pose
    sp = tuple(round(v * float(rng.uniform(0.95, 1.05)), 4) for v in spacing)
    origin = tuple(round(-(n - 1) * s / 2.0 + float(rng.uniform(-5.0, 5.0)), 3)
                   for n, s in zip(size, sp))
    grid = Grid(size, sp, origin)
    scale = np.array([rng.uniform(0.93, 1.07), rng.uniform(0.93, 1.07), rng.uniform(0.95, 1.05)])
    R = _random_rotation(rng, math.radians(4.0))
    M = R @ np.diag(scale)
    q0 = np.array([0.0, 2.0, -2.0])  # anatomical point placed near the field-of-view centre
    c = -M @ q0 + rng.uniform(-4.0, 4.0, size=3)
    warp = Deformation.draw(rng, rng.uniform(1.0, 2.5), wavelength=(60.0, 160.0))
    cv = _Canvas(grid, c, M, warp)

    # ---- anatomy and targets
    anat = _paint_anatomy(cv, _Jitter(rng))
    before = cv.part.copy()
    tum = _paint_tumour(cv, rng, target, anat)
    n_nodes = _paint_nodes(cv, rng)
    part = cv.part
    gtvp = part == PIECE_IDS["GTVp"]
    gtvn = part == PIECE_IDS["GTVn"]
    facts = _stage_facts(cv, gtvp, before)
    t_stage = t_stage_from_extent(**facts)

    # ---- CTVs (margins in mm on the anisotropic grid)
    sp_zyx = (sp[2], sp[1], sp[0])
    body = part != PIECE_IDS["outside"]
    tissue = body & ~_LUT_AIR[part]
    gtv = gtvp | gtvn
    ctv70 = (_margin(gtv, CTV70_MARGIN_MM, sp_zyx) & tissue) | gtv
    ctv63 = ((_margin(ctv70, CTV63_MARGIN_MM, sp_zyx) | cv.mask(_nodal_region())) & tissue) | ctv70

    # ---- images
    shape = grid.shape
    tex = SmoothField.draw(rng, 8, (4.0, 14.0), 1.0)(cv.X, cv.Y, cv.Z)
    bone_tex = SmoothField.draw(rng, 8, (3.0, 9.0), 1.0)(cv.X, cv.Y, cv.Z)
    low = SmoothField.draw(rng, 3, (80.0, 200.0), 4.0)(cv.X, cv.Y, cv.Z)
    is_bone = _lut(("bone", "marrow", "skull_base", "otic", "Mandible_L", "Mandible_R",
                    "TMjoint_L", "TMjoint_R", "MiddleEar_rest_L", "MiddleEar_rest_R",
                    "Mastoid_L", "Mastoid_R"))[part]
    std = _LUT_TEX[part]
    hu = _LUT_HU[part] + std * np.where(is_bone, bone_tex, tex) + np.where(body, low, 0)
    enh = _LUT_CE[part] * (np.float32(1.0) + np.float32(0.1) * tex)
    sigma = (0.0, 0.5, 0.5)
    noise_sd = float(rng.uniform(10.0, 16.0))
    cts = []
    for img in (hu, hu + enh):
        img = ndimage.gaussian_filter(img.astype(np.float32), sigma=sigma)
        img += rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_sd)
        cts.append(np.clip(np.rint(img), -1024, 3071).astype(np.int16))
    del hu, enh

    # ---- MRI: same pieces, rendered on the CT grid, resampled onto its own grid
    mri_ct = _LUT_MRI[part] + np.float32(0.025) * tex * (std > 0)
    mri_sp = tuple(round(v * float(rng.uniform(0.95, 1.05)), 4) for v in MRI_SPACING)
    lo = np.asarray(origin)
    ext = (np.asarray(size) - 1) * np.asarray(sp)
    m_lo = lo + np.array([0.04, 0.04, 0.22]) * ext + rng.uniform(-4.0, 4.0, size=3)
    m_hi = lo + np.array([0.96, 0.96, 0.98]) * ext
    m_size = tuple(int(max(8, math.floor((h - l) / s) + 1)) for l, h, s in zip(m_lo, m_hi, mri_sp))
    mri_grid = Grid(m_size, mri_sp, tuple(round(float(v), 3) for v in m_lo))
    ref = sitk.Image(list(m_size), sitk.sitkFloat32)
    ref.SetSpacing(mri_grid.spacing)
    ref.SetOrigin(mri_grid.origin)
    ref.SetDirection(mri_grid.direction)
    mri = sitk.Resample(grid.to_image(mri_ct.astype(np.float32)), ref, sitk.Transform(),
                        sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    marr = sitk.GetArrayFromImage(mri)
    bias = SmoothField.draw(rng, 3, (200.0, 400.0), 0.06)(*mri_grid.world())
    marr *= np.exp(bias).astype(np.float32)
    marr += rng.standard_normal(marr.shape, dtype=np.float32) * np.float32(0.015)
    np.clip(marr, 0.0, None, out=marr)
    mri_img = mri_grid.to_image(marr.astype(np.float32))

    # ---- structures
    masks: dict[str, np.ndarray] = {}
    for name in SEGRAP_OARS + ("GTVp", "GTVnd", "GTVn"):
        ids = [PIECE_IDS[p] for p in STRUCTURE_PIECES[name]]
        masks[name] = np.isin(part, ids)
    masks["CTV70"], masks["CTV63"] = ctv70, ctv63
    structures = {n: grid.to_image(masks[n].astype(np.uint8)) for n in ALL_STRUCTURES}

    ct_img, ce_img = grid.to_image(cts[0]), grid.to_image(cts[1])
    info = {
        "case_id": case_id, "seed": seed, "generator": "hnseg.phantoms.ct_anatomy",
        "grid": _grid_info(ct_img), "mri_grid": _grid_info(mri_img),
        "t_stage": t_stage, "target_t_stage": target, "t_extent": facts,
        "tumour_side": tum["side"], "t4_route": tum["t4_route"], "n_nodes": n_nodes,
        "gtvn_components": int(ndimage.label(gtvn)[1]) if gtvn.any() else 0,
        "noise_sd_hu": round(noise_sd, 3), "deformation_rms_mm": round(warp.rms, 3),
        "scale": [round(float(v), 4) for v in scale],
        "voxel_counts": {n: int(np.count_nonzero(masks[n])) for n in ALL_STRUCTURES},
        "volumes_ml": {n: round(float(np.count_nonzero(masks[n])) * float(np.prod(sp)) / 1000.0, 4)
                       for n in ("GTVp", "GTVn", "CTV70", "CTV63")},
        "coordinates": "LPS (x → patient left): *_L structures have larger world x",
    }
    return CtPhantomCase(case_id=case_id, ct=ct_img, ct_contrast=ce_img, mri=mri_img,
                         structures=structures, t_stage=t_stage, info=info)
