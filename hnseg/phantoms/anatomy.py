"""Deterministic synthetic head-and-neck T2w MRI phantoms (HNTS-MRG tasks 1 and 2).

Everything is defined in physical space (mm, LPS world coordinates: x → patient left, y → posterior,
z → superior), so a phantom looks the same at any spacing. Shapes are implicit functions that are
approximately signed distances in mm (positive inside); a voxel belongs to a mask where the function
is > 0 at its centre, and its intensity weight is ``clip(0.5 + f / h, 0, 1)`` (``h`` ≈ the voxel
size), which gives anti-aliased, partial-volume edges that agree with the mask.

Scans:
- pre-RT: pre-RT anatomy on its own grid (origin shifted by a few mm, maybe a different z size);
- mid-RT: the pre-RT anatomy under a smooth displacement ``u`` (mid point ``p`` shows pre point
  ``p + u(p)``), GTVs shrunk or vanished, optional growth lobe beyond the registered mask's box;
- registered pre-RT: the pre-RT image / mask resampled onto the mid-RT grid through
  ``T(p) = p + u(p) + r(p)`` (``r`` = residual misregistration), linear / nearest neighbour.

Randomness comes only from ``np.random.default_rng(seed)``; draws happen in a fixed order, so the
same seed gives bit-identical images.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hnseg.tasks.hntsmrg import GTV_LABELS

log = logging.getLogger(__name__)

GTVP = next(lb.value for lb in GTV_LABELS if lb.name == "GTVp")
GTVN = next(lb.value for lb in GTV_LABELS if lb.name == "GTVn")

# Tissue classes of the anatomy (``MriPhantomCase.tissue``) and their T2w level relative to muscle
# (fat-saturated T2w: fat intermediate, CSF bright, air / flow voids dark).
TISSUES: dict[str, tuple[int, float]] = {
    "air": (0, 0.0),
    "fat": (1, 0.75),  # fat-suppressed T2w: fat is dark
    "soft": (2, 1.05),
    "muscle": (3, 1.0),
    "bone": (4, 0.7),
    "csf": (5, 3.0),
    "cord": (6, 1.35),
    "gland": (7, 1.45),
    "node": (8, 1.3),  # normal (non-GTV) nodes: small, a little brighter than muscle
    "vessel": (9, 0.3),
    "airway": (10, 0.03),
}
TISSUE_IDS = {k: v[0] for k, v in TISSUES.items()}
# Lesion appearance (relative to muscle).
TUMOUR_RANGE = (1.4, 1.8)
NECROSIS_LEVEL = 2.5
OEDEMA_LEVEL = 1.1
MID_SIGNAL_FACTOR = (0.9, 1.0)
BASE_MUSCLE_SIGNAL = 300.0
BEYOND_BOX_MIN_VOX = 9


# ----------------------------------------------------------------------------------------------
# the case container


@dataclass
class MriPhantomCase:
    case_id: str
    pre_t2: sitk.Image
    pre_mask: sitk.Image
    mid_t2: sitk.Image
    mid_mask: sitk.Image
    reg_t2: sitk.Image
    reg_mask: sitk.Image
    info: dict
    # tissue-class map (ids in TISSUE_IDS) on the pre-RT grid, for tests / inspection; None in
    # real-mask mode.
    tissue: sitk.Image | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------
# grids


@dataclass(frozen=True)
class Grid:
    size: tuple[int, int, int]  # x, y, z
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @classmethod
    def from_image(cls, image: sitk.Image) -> "Grid":
        return cls(
            tuple(int(s) for s in image.GetSize()),
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(s) for s in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )

    @property
    def shape(self) -> tuple[int, int, int]:  # numpy order z, y, x
        return (self.size[2], self.size[1], self.size[0])

    @property
    def matrix(self) -> np.ndarray:
        """index (x, y, z) → world offset: world = origin + matrix @ index."""
        return np.asarray(self.direction, float).reshape(3, 3) * np.asarray(self.spacing, float)

    def to_image(self, array: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def world_of_index(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.origin) + np.asarray(idx, float) @ self.matrix.T

    def index_of_world(self, pts: np.ndarray) -> np.ndarray:
        return (np.asarray(pts, float) - np.asarray(self.origin)) @ np.linalg.inv(self.matrix).T

    def world(self, sl: tuple[slice, slice, slice] | None = None):
        """World coordinates (x, y, z) of the voxel centres of the crop ``sl`` (numpy z, y, x
        slices), as float32 arrays broadcastable to the crop shape (full only when needed)."""
        if sl is None:
            sl = tuple(slice(0, n) for n in self.shape)
        idx = []  # per index axis (x, y, z) a 1D array placed on its numpy axis
        for k in range(3):
            s = sl[2 - k]
            a = np.arange(s.start, s.stop, dtype=np.float64)
            shape = [1, 1, 1]
            shape[2 - k] = a.size
            idx.append(a.reshape(shape))
        m = self.matrix
        out = []
        for r in range(3):
            acc = None
            for k in range(3):
                if abs(m[r, k]) < 1e-12:
                    continue
                t = idx[k] * m[r, k]
                acc = t if acc is None else acc + t
            acc = (acc if acc is not None else np.zeros((1, 1, 1))) + self.origin[r]
            out.append(acc.astype(np.float32))
        return tuple(out)

    def slices_for_box(self, lo, hi, pad_vox: int = 1) -> tuple[slice, slice, slice] | None:
        """Numpy (z, y, x) slices of the voxels covering the world box [lo, hi]; None if empty."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        corners = np.array([[(lo, hi)[b[k]][k] for k in range(3)] for b in np.ndindex(2, 2, 2)])
        idx = self.index_of_world(corners)
        a = np.floor(idx.min(0)).astype(int) - pad_vox
        b = np.ceil(idx.max(0)).astype(int) + pad_vox + 1
        a = np.maximum(a, 0)
        b = np.minimum(b, np.asarray(self.size))
        if np.any(b <= a):
            return None
        return (slice(a[2], b[2]), slice(a[1], b[1]), slice(a[0], b[0]))


# ----------------------------------------------------------------------------------------------
# smooth random fields (sums of plane waves: continuous, evaluable anywhere, deterministic)


def _acc(out, t, op=np.add):
    """``op(out, t)``, in place when the shapes allow it (``out`` is always a private array)."""
    if out is None:
        return t
    if out.shape == np.broadcast_shapes(out.shape, t.shape):
        return op(out, t, out=out)
    return op(out, t)


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass
class SmoothField:
    k: np.ndarray  # (K, 3) rad/mm
    phase: np.ndarray  # (K,)
    amp: np.ndarray  # (K,)

    @classmethod
    def draw(cls, rng, n: int, wavelength: tuple[float, float], std: float) -> "SmoothField":
        dirs = _unit_vectors(rng, n)
        lam = rng.uniform(*wavelength, size=n)
        phase = rng.uniform(0, 2 * np.pi, size=n)
        amp = rng.uniform(0.5, 1.0, size=n)
        amp *= std / math.sqrt(float(np.sum(amp**2)) / 2.0)  # field std ≈ std
        return cls(dirs * (2 * np.pi / lam)[:, None], phase, amp)

    @property
    def bound(self) -> float:
        return float(np.abs(self.amp).sum())

    def __call__(self, x, y, z) -> np.ndarray:
        out = None
        for (kx, ky, kz), ph, a in zip(self.k, self.phase, self.amp):
            t = x * np.float32(kx) + y * np.float32(ky)
            t = t + z * np.float32(kz)
            t += np.float32(ph)
            np.cos(t, out=t)
            t *= np.float32(a)
            out = _acc(out, t)
        return out


@dataclass
class Deformation:
    """Smooth displacement field (mm): three SmoothFields, rms |u| ≈ ``rms``."""

    fields: tuple[SmoothField, SmoothField, SmoothField]
    rms: float

    @classmethod
    def draw(cls, rng, rms: float, wavelength=(80.0, 200.0), n: int = 3) -> "Deformation":
        std = rms / math.sqrt(3.0)
        return cls(tuple(SmoothField.draw(rng, n, wavelength, std) for _ in range(3)), rms)

    @property
    def bound(self) -> float:
        return float(math.sqrt(sum(f.bound**2 for f in self.fields)))

    def apply(self, x, y, z):
        shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
        return tuple(np.broadcast_to(c, shape) + f(x, y, z) for c, f in zip((x, y, z), self.fields))


def soft(f: np.ndarray, h: float) -> np.ndarray:
    """Partial-volume weight of an implicit shape (≈ signed distance in mm, positive inside)."""
    w = f * np.float32(1.0 / h)
    w += np.float32(0.5)
    np.clip(w, 0.0, 1.0, out=w)
    return w


def _random_rotation(rng, max_angle: float | None = None) -> np.ndarray:
    if max_angle is None:
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        return q
    ax = _unit_vectors(rng, 1)[0]
    ang = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    return np.eye(3) + math.sin(ang) * k + (1 - math.cos(ang)) * (k @ k)


# ----------------------------------------------------------------------------------------------
# lesion shapes


@dataclass
class Blob:
    """Union of rotated ellipsoids with low-frequency surface noise (implicit, mm)."""

    centres: np.ndarray  # (n, 3) world mm
    radii: np.ndarray  # (n, 3)
    rots: np.ndarray  # (n, 3, 3), columns = ellipsoid axes in world
    noise: SmoothField | None
    anchor: np.ndarray  # shrink centre

    def field(self, x, y, z) -> np.ndarray:
        out = None
        for c, r, rot in zip(self.centres, self.radii, self.rots):
            dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
            rho2 = None
            for a in range(3):
                u = dx * np.float32(rot[0, a]) + dy * np.float32(rot[1, a])
                u = u + dz * np.float32(rot[2, a])
                u *= np.float32(1.0 / r[a])
                np.square(u, out=u)
                rho2 = _acc(rho2, u)
            f = np.float32(1.0) - np.sqrt(rho2)
            f *= np.float32(r.min())
            out = _acc(out, f, np.maximum)
        if self.noise is not None:
            out += self.noise(x, y, z)
        return out

    def shrunk_field(self, s: float) -> Callable:
        """Field of the blob scaled by ``s`` about its anchor (volume factor s³)."""
        c = self.anchor.astype(np.float32)
        inv = np.float32(1.0 / s)

        def f(x, y, z):
            q = [(v - ci) * inv + ci for v, ci in zip((x, y, z), c)]
            out = self.field(*q)
            out *= np.float32(s)
            return out

        return f

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.radii.max(1)[:, None]
        m = 3.0 * (self.noise.bound if self.noise is not None else 0.0) + 1.0
        return (self.centres - r).min(0) - m, (self.centres + r).max(0) + m

    @property
    def extent_mm(self) -> float:
        lo, hi = self.bounds()
        return float(np.max(hi - lo))


@dataclass
class Lesion:
    """What render_t2 paints over the anatomy inside one crop of the fine grid."""

    slices: tuple[slice, slice, slice]
    weight: np.ndarray  # float32 in [0, 1], crop shape
    level: float  # relative to muscle
    texture: SmoothField | None = None
    name: str = ""


def _capsule_field(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float) -> Callable:
    """Tapered capsule from p0 (radius r0) to p1 (radius r1), ≈ signed distance in mm."""
    d = p1 - p0
    length2 = float(d @ d)

    def f(x, y, z):
        rx, ry, rz = x - np.float32(p0[0]), y - np.float32(p0[1]), z - np.float32(p0[2])
        t = (rx * np.float32(d[0]) + ry * np.float32(d[1]) + rz * np.float32(d[2])) * np.float32(
            1.0 / length2)
        np.clip(t, 0.0, 1.0, out=t)
        ex = rx - t * np.float32(d[0])
        ey = ry - t * np.float32(d[1])
        ez = rz - t * np.float32(d[2])
        dist = np.sqrt(ex * ex + ey * ey + ez * ez)
        return (np.float32(r0) + t * np.float32(r1 - r0)) - dist

    return f


# ----------------------------------------------------------------------------------------------
# anatomy


def _ell2(X, Y, cx, cy, rx, ry, theta: float = 0.0):
    dx, dy = X - np.float32(cx), Y - np.float32(cy)
    if theta:
        c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
        dx, dy = dx * c + dy * s, dy * c - dx * s
    rho = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
    return (np.float32(1.0) - rho) * np.minimum(rx, ry)


def _ell3(X, Y, Z, c, r):
    rho = np.sqrt(((X - np.float32(c[0])) / np.float32(r[0])) ** 2
                  + ((Y - np.float32(c[1])) / np.float32(r[1])) ** 2
                  + ((Z - np.float32(c[2])) / np.float32(r[2])) ** 2)
    return (np.float32(1.0) - rho) * np.float32(min(r))


def _slab(Z, lo: float, hi: float):
    return np.minimum(Z - np.float32(lo), np.float32(hi) - Z)


@dataclass
class NeckAnatomy:
    """Parametric neck: body, fat, muscles, airway, vertebra, canal/cord, vessels, glands, nodes.

    Coordinates are local to ``centre`` (world mm); in-plane coordinates are divided by ``scale``.
    """

    centre: np.ndarray
    a0: float  # body semi-axis left-right (mm)
    b0: float  # body semi-axis antero-posterior
    fat: float  # subcutaneous fat thickness
    phases: np.ndarray  # z-variation phases
    r_airway: float
    normal_nodes: list[tuple[np.ndarray, np.ndarray]]
    texture: SmoothField
    scale: float = 1.0

    @classmethod
    def draw(cls, rng, centre) -> "NeckAnatomy":
        a0 = rng.uniform(64.0, 74.0)
        b0 = rng.uniform(54.0, 64.0)
        fat = rng.uniform(4.0, 8.0)
        phases = rng.uniform(0, 2 * np.pi, size=6)
        r_aw = rng.uniform(6.0, 9.0)
        nodes = []
        for _ in range(int(rng.integers(4, 8))):
            side = rng.choice([-1.0, 1.0])
            c = np.array([side * rng.uniform(0.3, 0.6) * a0, rng.uniform(-0.3, 0.25) * b0,
                          rng.uniform(-45, 40)])
            r = rng.uniform(2.0, 3.6, size=3)
            nodes.append((c, r))
        tex = SmoothField.draw(rng, 6, (10.0, 35.0), 0.05)
        return cls(np.asarray(centre, float), a0, b0, fat, phases, r_aw, nodes, tex)

    # z-dependent parameters (local z in mm)
    def body_axes(self, Z):
        a = self.a0 * (1.0 + 0.07 * np.sin(2 * np.pi * Z / 170.0 + self.phases[0]))
        b = self.b0 * (1.0 + 0.05 * np.sin(2 * np.pi * Z / 150.0 + self.phases[1]))
        return a.astype(np.float32), b.astype(np.float32)

    @property
    def y_vertebra(self) -> float:
        return 0.12 * self.b0

    @property
    def y_airway(self) -> float:
        return self.y_vertebra - 11.0 - 6.0 - self.r_airway

    def airway(self, Z):
        """Airway centre x, y and radius as functions of local z."""
        x = 2.0 * np.sin(2 * np.pi * Z / 90.0 + self.phases[2])
        r = self.r_airway * (1.0 + 0.28 * np.sin(2 * np.pi * Z / 110.0 + self.phases[3]))
        return np.asarray(x, np.float32), np.float32(self.y_airway), np.asarray(r, np.float32)

    def local(self, pts: np.ndarray) -> np.ndarray:
        q = np.asarray(pts, float) - self.centre
        q[..., :2] /= self.scale
        return q

    def body_norm(self, pts: np.ndarray) -> np.ndarray:
        """Elliptic norm of world points w.r.t. the body outline (< 1 inside)."""
        q = self.local(np.atleast_2d(pts))
        a, b = self.body_axes(q[:, 2])
        return np.sqrt((q[:, 0] / a) ** 2 + (q[:, 1] / b) ** 2)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box of the body in-plane (z unbounded)."""
        ext = np.array([self.a0 * 1.08 * self.scale + 4, self.b0 * 1.06 * self.scale + 4, 1e9])
        return self.centre - ext, self.centre + ext

    def render(self, x, y, z, h: float) -> tuple[np.ndarray, np.ndarray]:
        """Relative T2w intensity (muscle = 1) and tissue ids at world points (x, y, z)."""
        s = np.float32(self.scale)
        X = (x - np.float32(self.centre[0])) / s
        Y = (y - np.float32(self.centre[1])) / s
        Z = z - np.float32(self.centre[2])
        shape = np.broadcast_shapes(X.shape, Y.shape, Z.shape)
        X, Y, Z = (np.broadcast_to(v, shape) for v in (X, Y, Z))
        h = h / self.scale
        img = np.zeros(shape, np.float32)
        tissue = np.zeros(shape, np.uint8)

        def paint(f, name, alpha: float = 1.0):
            w = soft(np.asarray(f, np.float32), h)
            if alpha != 1.0:
                w *= np.float32(alpha)
            level = np.float32(TISSUES[name][1])
            img[...] += w * (level - img)
            tissue[w > 0.5] = TISSUE_IDS[name]

        a, b = self.body_axes(Z)
        paint(_ell2(X, Y, 0, 0, a, b), "fat")
        paint(_ell2(X, Y, 0, 0, a - self.fat, b - self.fat), "soft")
        a0, b0 = self.a0, self.b0
        yv = self.y_vertebra
        for sx in (-1.0, 1.0):
            paint(_ell2(X, Y, sx * 0.27 * a0, 0.55 * b0, 0.25 * a0, 0.24 * b0, sx * 0.3), "muscle")
            paint(_ell2(X, Y, sx * 0.45 * a0, 0.8 * b0, 0.3 * a0, 0.09 * b0, -sx * 0.35), "muscle")
            paint(_ell2(X, Y, sx * (a0 - 26), -0.12 * b0, 8.0, 15.0, sx * 0.5), "muscle")
            paint(_ell2(X, Y, sx * 8.0, yv - 14.0, 6.0, 3.5), "muscle")
        paint(_ell2(X, Y, 0, yv, 14.0, 11.0), "bone")
        yc = yv + 11.0 + 8.0
        paint(_ell2(X, Y, 0, yc, 9.0, 7.5), "csf")
        paint(_ell2(X, Y, 0, yc, 5.0, 3.8), "cord")
        xa, ya, ra = self.airway(Z)
        # tongue base (upper neck) and strap muscles (lower neck)
        paint(np.minimum(_ell2(X, Y, 0, ya - self.r_airway - 12.0, 24.0, 14.0),
                         _slab(Z, -8.0, 80.0)), "muscle")
        for sx in (-1.0, 1.0):
            paint(np.minimum(_ell2(X, Y, sx * 11.0, ya - self.r_airway - 9.0, 9.0, 3.5),
                             _slab(Z, -80.0, -6.0)), "muscle")
        paint(_ell2(X, Y, xa, ya, ra * 1.25 + 3.0, ra + 3.0), "muscle")  # pharyngeal wall
        paint(_ell2(X, Y, xa, ya, ra * 1.25, ra), "airway")
        for sx in (-1.0, 1.0):
            paint(_ell2(X, Y, sx * 0.33 * a0, -0.02 * b0, 3.5, 3.5), "vessel")
            rj = 5.0 if sx > 0 else 4.0
            paint(_ell2(X, Y, sx * 0.46 * a0, 0.02 * b0, rj, rj * 0.8), "vessel")
            paint(_ell3(X, Y, Z, (sx * 0.4 * a0, ya - 14.0, 12.0), (11.0, 9.0, 11.0)), "gland")
            paint(_ell3(X, Y, Z, (sx * (a0 - 17.0), 0.1 * b0, 42.0), (11.0, 16.0, 18.0)), "gland")
        for c, r in self.normal_nodes:
            paint(_ell3(X, Y, Z, c, r), "node")
        # mild anatomical texture inside the body
        t = self.texture(X, Y, Z)
        t += np.float32(1.0)
        img *= t
        return img, tissue


# ----------------------------------------------------------------------------------------------
# rendering


def coarse_factor(spacing) -> int:
    """In-plane subsampling of the anatomy render (anatomy is smooth; lesions are rendered fine)."""
    return max(1, int(round(1.5 / min(spacing[0], spacing[1]))))


def add_rician_noise_(img: np.ndarray, sigma: float, scale: float, rng, chunk: int = 8) -> None:
    """In place: ``scale * |img + sigma (n1 + i n2)|`` (magnitude MRI noise), slab by slab."""
    s, g = np.float32(sigma), np.float32(scale)
    for z0 in range(0, img.shape[0], chunk):
        sl = img[z0:z0 + chunk]
        n1 = rng.standard_normal(sl.shape, dtype=np.float32)
        n1 *= s
        n1 += sl
        np.square(n1, out=n1)
        n2 = rng.standard_normal(sl.shape, dtype=np.float32)
        n2 *= s
        np.square(n2, out=n2)
        n1 += n2
        np.sqrt(n1, out=n1)
        n1 *= g
        sl[...] = n1


def render_t2(grid: Grid, anatomy: NeckAnatomy, *, warp: Deformation | None,
              lesions: Sequence[Lesion], bias: SmoothField, snr: float, scale: float, rng,
              want_tissue: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Render one T2w scan on ``grid`` (float32 z, y, x array) and optionally the tissue map."""
    lo, hi = anatomy.box()
    if warp is not None:
        lo, hi = lo - warp.bound, hi + warp.bound
    img = np.zeros(grid.shape, np.float32)
    tissue = np.zeros(grid.shape, np.uint8) if want_tissue else None
    fsl = grid.slices_for_box(lo, hi, pad_vox=2)
    if fsl is not None:
        f = coarse_factor(grid.spacing)
        start = np.array([fsl[2].start, fsl[1].start, fsl[0].start])
        n_fine = np.array([fsl[2].stop, fsl[1].stop, fsl[0].stop]) - start
        sub = Grid(tuple(int(v) for v in n_fine), grid.spacing,
                   tuple(grid.world_of_index(start)), grid.direction)
        fac = np.array([f, f, 1])
        n_c = (np.ceil((n_fine - 1) / fac) + 1).astype(int)
        cgrid = Grid(tuple(int(v) for v in n_c), tuple(np.asarray(grid.spacing) * fac),
                     sub.origin, grid.direction)
        x, y, z = cgrid.world()
        wx, wy, wz = warp.apply(x, y, z) if warp is not None else (x, y, z)
        inten, tis = anatomy.render(wx, wy, wz, h=float(np.mean(cgrid.spacing)))
        del wx, wy, wz
        b = bias(x, y, z)
        np.exp(b, out=b)
        inten *= b
        del b
        if f == 1:
            img[fsl] = inten
            if tissue is not None:
                tissue[fsl] = tis
        else:
            cimg = cgrid.to_image(inten)
            up = sitk.Resample(cimg, sub.size, sitk.Transform(), sitk.sitkLinear, sub.origin,
                               sub.spacing, sub.direction, 0.0, sitk.sitkFloat32)
            img[fsl] = sitk.GetArrayViewFromImage(up)
            del up, cimg
            if tissue is not None:
                timg = cgrid.to_image(tis)
                up = sitk.Resample(timg, sub.size, sitk.Transform(), sitk.sitkNearestNeighbor,
                                   sub.origin, sub.spacing, sub.direction, 0, sitk.sitkUInt8)
                tissue[fsl] = sitk.GetArrayViewFromImage(up)
        del inten, tis
    for les in lesions:
        x, y, z = grid.world(les.slices)
        level = bias(x, y, z)
        np.exp(level, out=level)
        level = np.broadcast_to(level, les.weight.shape).astype(np.float32)
        level *= np.float32(les.level)
        if les.texture is not None:
            t = les.texture(x, y, z)
            t += np.float32(1.0)
            level *= t
        crop = img[les.slices]
        level -= crop
        level *= les.weight
        crop += level
    add_rician_noise_(img, 1.0 / snr, scale, rng)
    return img, tissue


# ----------------------------------------------------------------------------------------------
# mask helpers


def fg_bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Index bounding box (x, y, z order, inclusive) of the non-zero voxels of a (z, y, x) array."""
    lo, hi = [], []
    for ax in (2, 1, 0):  # x, y, z
        other = tuple(a for a in range(3) if a != ax)
        prof = np.flatnonzero(mask.any(axis=other))
        if prof.size == 0:
            return None
        lo.append(int(prof[0]))
        hi.append(int(prof[-1]))
    return np.array(lo), np.array(hi)


def beyond_box_extension(mid_mask: np.ndarray, reg_mask: np.ndarray) -> list[int]:
    """Per axis (x, y, z): how many voxels the mid-RT GTVs reach outside the bounding box of the
    registered pre-RT mask (all labels). With an empty registered mask: the mid-RT GTV extent."""
    mb = fg_bbox(mid_mask > 0)
    if mb is None:
        return [0, 0, 0]
    rb = fg_bbox(reg_mask > 0)
    if rb is None:
        return [int(v) for v in mb[1] - mb[0] + 1]
    ext = np.maximum(np.maximum(rb[0] - mb[0], mb[1] - rb[1]), 0)
    return [int(v) for v in ext]


def _extent_mm(sel: np.ndarray, spacing) -> float:
    bb = fg_bbox(sel)
    if bb is None:
        return 0.0
    return round(float(np.max((bb[1] - bb[0] + 1) * np.asarray(spacing))), 2)


def label_volumes_ml(mask: np.ndarray, spacing) -> dict[str, float]:
    counts = np.bincount(mask.ravel(), minlength=3)
    vox = float(np.prod(spacing)) / 1000.0
    return {"GTVp": round(float(counts[GTVP]) * vox, 4), "GTVn": round(float(counts[GTVN]) * vox, 4)}


def _implicit_lesion(grid: Grid, fn: Callable, lo, hi, level: float, texture, h: float,
                     name: str, alpha: float = 1.0):
    """Evaluate an implicit shape on the crop covering [lo, hi]: (Lesion, hard mask crop, slices)."""
    sl = grid.slices_for_box(lo, hi, pad_vox=2)
    if sl is None:
        return None, None, None
    x, y, z = grid.world(sl)
    f = fn(x, y, z)
    f = np.broadcast_to(f, tuple(s.stop - s.start for s in sl)).astype(np.float32)
    hard = f > 0
    w = soft(f, h)
    if alpha != 1.0:
        w *= np.float32(alpha)
    return Lesion(sl, w, level, texture, name), hard, sl


def _warped(fn: Callable, warp: Deformation | None) -> Callable:
    if warp is None:
        return fn

    def g(x, y, z):
        return fn(*warp.apply(x, y, z))

    return g


def _union(*fns: Callable) -> Callable:
    def g(x, y, z):
        out = None
        for fn in fns:
            v = fn(x, y, z)
            out = v if out is None else np.maximum(out, v)
        return out

    return g


# ----------------------------------------------------------------------------------------------
# the synthetic case


def draw_scan_appearance(rng) -> dict:
    """Per-scan acquisition: smooth bias field, SNR and a global intensity scale."""
    return dict(bias=SmoothField.draw(rng, 3, (180.0, 450.0), 0.08),
                snr=float(rng.uniform(15.0, 25.0)),
                scale=float(BASE_MUSCLE_SIGNAL * math.exp(rng.uniform(-0.7, 0.7))))


def _draw_flag(rng, p: float, forced: bool | None) -> bool:
    u = rng.random()  # always drawn: forcing a flag leaves every other draw unchanged
    return bool(forced) if forced is not None else bool(u < p)


def _draw_gtvp(rng, anatomy: NeckAnatomy) -> Blob:
    zp = rng.uniform(-5.0, 15.0)
    xa, ya, ra = anatomy.airway(np.float32(zp))
    theta = rng.uniform(0, 2 * np.pi)
    R = rng.uniform(7.5, 15.0)
    main_r = R * rng.uniform(0.8, 1.2, size=3)
    off = float(ra) * 1.1 + 0.35 * R
    c0 = anatomy.centre + np.array([float(xa) + off * math.cos(theta),
                                    float(ya) + 0.8 * off * math.sin(theta), zp])
    centres, radii, rots = [c0], [main_r], [_random_rotation(rng)]
    for _ in range(int(rng.integers(1, 4))):
        d = _unit_vectors(rng, 1)[0]
        centres.append(c0 + d * R * rng.uniform(0.4, 0.8))
        radii.append(R * rng.uniform(0.4, 0.75) * rng.uniform(0.8, 1.2, size=3))
        rots.append(_random_rotation(rng))
    noise = SmoothField.draw(rng, 8, (6.0, 16.0), 0.12 * R)
    return Blob(np.array(centres), np.array(radii), np.array(rots), noise, c0.copy())


def _draw_nodes(rng, anatomy: NeckAnatomy, gtvp: Blob, n: int) -> list[Blob]:
    nodes: list[Blob] = []
    plo, phi = gtvp.bounds()
    pc, pr = (plo + phi) / 2, float(np.max(phi - plo)) / 2
    side0 = rng.choice([-1.0, 1.0])
    for i in range(n):
        for _attempt in range(60):
            side = side0 if (i == 0 or rng.random() < 0.7) else -side0
            r = rng.uniform(6.5, 13.0)  # metastatic nodes: ≥ 13 mm across
            radii = np.array([r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.0),
                              min(15.0, r * rng.uniform(1.0, 1.4))])
            c = anatomy.centre + np.array([side * rng.uniform(28.0, 44.0), rng.uniform(-18.0, 6.0),
                                           rng.uniform(-30.0, 12.0)])
            if abs(c[0] - anatomy.centre[0]) + radii[0] > anatomy.a0 - 10:
                continue
            if np.linalg.norm(c - pc) < pr + radii.max() + 2:
                continue
            if any(np.linalg.norm(c - b.anchor) < radii.max() + b.radii.max() + 3 for b in nodes):
                continue
            break
        noise = SmoothField.draw(rng, 6, (6.0, 14.0), 0.05 * r)
        nodes.append(Blob(c[None], radii[None], _random_rotation(rng, 0.5)[None], noise, c.copy()))
    return nodes


def _resample_into(src: np.ndarray, src_grid: Grid, pts_world, order: int) -> np.ndarray:
    """Sample ``src`` (on src_grid) at world points (tuple of x, y, z arrays, one shape)."""
    inv = np.linalg.inv(src_grid.matrix)
    o = np.asarray(src_grid.origin)
    d = [p - np.float32(o[k]) for k, p in enumerate(pts_world)]
    idx = [sum(d[k] * np.float32(inv[r, k]) for k in range(3)) for r in range(3)]  # x, y, z
    coords = np.stack([idx[2], idx[1], idx[0]])
    return ndimage.map_coordinates(src, coords, order=order, mode="constant", cval=0.0,
                                   prefilter=False)


def make_mri_case(seed: int, case_id: str | None = None, *, size=(112, 112, 48),
                  spacing=(1.75, 1.75, 2.5), gtvp_vanished: bool | None = None,
                  gtvn_vanished: bool | None = None,
                  beyond_box: bool | None = None) -> MriPhantomCase:
    """One synthetic pre-RT / mid-RT / registered pre-RT case (see the module docstring)."""
    seed = int(seed)
    case_id = str(case_id) if case_id is not None else f"phantom{seed}"
    rng = np.random.default_rng(seed)
    size = tuple(int(v) for v in size)
    spacing = tuple(float(v) for v in spacing)
    if len(size) != 3 or len(spacing) != 3 or min(size) < 8 or min(spacing) <= 0:
        raise ValueError(f"size/spacing must be 3 positive values (x, y, z), got {size}, {spacing}")
    h = float(np.mean(spacing))

    # flags (always three draws)
    f_p = _draw_flag(rng, 0.20, gtvp_vanished)
    f_n = _draw_flag(rng, 0.10, gtvn_vanished)
    f_b = _draw_flag(rng, 0.20, beyond_box)

    # grids
    mid_origin = tuple(-(n - 1) * s / 2.0 for n, s in zip(size, spacing))
    mid_grid = Grid(size, spacing, mid_origin)
    off = rng.uniform(-5.0, 5.0, size=3)
    dz = int(rng.integers(-3, 5))
    pre_size = (size[0], size[1], max(8, size[2] + dz))
    pre_origin = tuple(np.asarray(mid_origin) + off - np.array([0, 0, (pre_size[2] - size[2])
                                                                  * spacing[2] / 2.0]))
    pre_grid = Grid(pre_size, spacing, tuple(float(v) for v in pre_origin))

    # anatomy and lesions (pre-RT)
    anatomy = NeckAnatomy.draw(rng, rng.uniform(-4.0, 4.0, size=3))
    gtvp = _draw_gtvp(rng, anatomy)
    u_n = rng.random()
    n_nodes = 0 if u_n < 0.10 else (1 if u_n < 0.55 else (2 if u_n < 0.85 else 3))
    nodes = _draw_nodes(rng, anatomy, gtvp, n_nodes)
    necrotic = [bool(rng.random() < 0.3) for _ in nodes]
    if n_nodes == 0:
        f_n = False
    lvl_p = rng.uniform(*TUMOUR_RANGE)
    lvl_n = [float(np.clip(lvl_p + rng.uniform(-0.12, 0.12), *TUMOUR_RANGE)) for _ in nodes]
    mid_fac = rng.uniform(*MID_SIGNAL_FACTOR)
    vf_p = rng.uniform(0.25, 0.9)
    vf_n = [rng.uniform(0.3, 0.9) for _ in nodes]
    oedema_shrunk = bool(rng.random() < 0.5)
    tex_p = SmoothField.draw(rng, 10, (3.0, 10.0), 0.10)
    tex_n = SmoothField.draw(rng, 10, (3.0, 10.0), 0.08)
    u_def = Deformation.draw(rng, rng.uniform(2.0, 5.0))
    r_def = Deformation.draw(rng, rng.uniform(1.0, 2.0), wavelength=(40.0, 120.0))
    scans = {name: draw_scan_appearance(rng) for name in ("pre", "mid")}
    if f_b and f_p and (f_n or n_nodes == 0):
        if gtvp_vanished is None:
            f_p = False
        elif gtvn_vanished is None and n_nodes:
            f_n = False
        else:
            raise ValueError(f"case {case_id}: beyond_box needs a GTV left at mid-RT, but GTVp and "
                             f"GTVn are both vanished (or absent)")

    # ---- pre-RT scan
    pre_mask = np.zeros(pre_grid.shape, np.uint8)
    pre_lesions: list[Lesion] = []
    les, hard, sl = _implicit_lesion(pre_grid, gtvp.field, *gtvp.bounds(), lvl_p, tex_p, h, "GTVp")
    if les is not None:
        pre_lesions.append(les)
        pre_mask[sl][hard] = GTVP
    for b, lv, nec in zip(nodes, lvl_n, necrotic):
        les, hard, sl = _implicit_lesion(pre_grid, b.field, *b.bounds(), lv, tex_n, h, "GTVn")
        if les is None:
            continue
        pre_lesions.append(les)
        pre_mask[sl][hard] = GTVN
        if nec:
            depth = np.float32(0.5 * b.radii.min())
            les2, _, _ = _implicit_lesion(pre_grid, lambda x, y, z, b=b: b.field(x, y, z) - depth,
                                          *b.bounds(), NECROSIS_LEVEL, None, h, "necrosis")
            if les2 is not None:
                pre_lesions.append(les2)
    pre_img, tissue = render_t2(pre_grid, anatomy, warp=None, lesions=pre_lesions, rng=rng,
                                want_tissue=True, **scans["pre"])

    # ---- registered pre-RT (resampled through T(p) = p + u(p) + r(p))
    x, y, z = mid_grid.world()
    tx, ty, tz = u_def.apply(x, y, z)
    rx, ry, rz = r_def.fields
    pts = (tx + rx(x, y, z), ty + ry(x, y, z), tz + rz(x, y, z))
    reg_img = _resample_into(pre_img, pre_grid, pts, order=1).astype(np.float32)
    reg_mask = _resample_into(pre_mask, pre_grid, pts, order=0).astype(np.uint8)
    del pts, tx, ty, tz

    # ---- mid-RT lesions (anatomical coordinates through u)
    pad = u_def.bound + 2.0
    mid_lesions: list[Lesion] = []
    mid_mask = np.zeros(mid_grid.shape, np.uint8)
    structures: list[tuple[str, Callable, np.ndarray, np.ndarray, float]] = []
    plo, phi = gtvp.bounds()
    if not f_p or oedema_shrunk:
        s_oed = 0.8 if f_p else 1.0
        les, _, _ = _implicit_lesion(mid_grid, _warped(gtvp.shrunk_field(s_oed), u_def),
                                     plo - pad, phi + pad, OEDEMA_LEVEL, None, 2.0 * h, "oedema",
                                     alpha=0.7)
        if les is not None:
            mid_lesions.append(les)
    if not f_p:
        s = vf_p ** (1.0 / 3.0)
        structures.append(("GTVp", _warped(gtvp.shrunk_field(s), u_def), plo - pad, phi + pad,
                           lvl_p * mid_fac))
    nec_mid: list[tuple[Callable, np.ndarray, np.ndarray]] = []
    if not f_n:
        for b, lv, vf, nec in zip(nodes, lvl_n, vf_n, necrotic):
            s = vf ** (1.0 / 3.0)
            lo, hi = b.bounds()
            fn = _warped(b.shrunk_field(s), u_def)
            structures.append(("GTVn", fn, lo - pad, hi + pad, lv * mid_fac))
            if nec:
                depth = np.float32(0.5 * b.radii.min() * s)
                nec_mid.append((lambda x, y, z, fn=fn, d=depth: fn(x, y, z) - d, lo - pad, hi + pad))

    def paint_mid(structs):
        mask = np.zeros(mid_grid.shape, np.uint8)
        out = []
        for name, fn, lo, hi, lv in sorted(structs, key=lambda s: s[0] != "GTVp"):
            les, hard, sl = _implicit_lesion(mid_grid, fn, lo, hi, lv,
                                             tex_p if name == "GTVp" else tex_n, h, name)
            if les is None:
                continue
            out.append(les)
            mask[sl][hard] = GTVP if name == "GTVp" else GTVN
        return mask, out

    mid_mask, struct_lesions = paint_mid(structures)
    lobe_info = None
    if f_b:
        structures, lobe_info = _add_growth_lobe(rng, mid_grid, anatomy, structures, mid_mask,
                                                 reg_mask)
        mid_mask, struct_lesions = paint_mid(structures)
        ext = beyond_box_extension(mid_mask, reg_mask)
        if max(ext) < BEYOND_BOX_MIN_VOX:
            raise RuntimeError(f"case {case_id}: growth lobe reached only {ext} voxels")
    mid_lesions += struct_lesions
    for fn, lo, hi in nec_mid:
        les, _, _ = _implicit_lesion(mid_grid, fn, lo, hi, NECROSIS_LEVEL, None, h, "necrosis")
        if les is not None:
            mid_lesions.append(les)
    mid_img, _ = render_t2(mid_grid, anatomy, warp=u_def, lesions=mid_lesions, rng=rng,
                           **scans["mid"])

    ext = beyond_box_extension(mid_mask, reg_mask)
    muscle = pre_img[tissue == TISSUE_IDS["muscle"]]
    core = ndimage.binary_erosion(pre_mask == GTVP, iterations=1)
    contrast = {"muscle_mean": round(float(muscle.mean()), 3) if muscle.size else None,
                "gtvp_mean": round(float(pre_img[core].mean()), 3) if core.any() else None}
    if contrast["muscle_mean"] and contrast["gtvp_mean"]:
        contrast["ratio"] = round(contrast["gtvp_mean"] / contrast["muscle_mean"], 4)
    info = {
        "case_id": case_id, "mode": "synthetic", "seed": seed,
        "size": list(size), "spacing": list(spacing), "mid_origin": list(mid_grid.origin),
        "pre_size": list(pre_size), "pre_origin": [float(v) for v in pre_grid.origin],
        "gtvp_vanished": f_p, "gtvn_vanished": f_n,
        "beyond_box": bool(max(ext) >= BEYOND_BOX_MIN_VOX), "beyond_box_vox": ext,
        "beyond_box_lobe": lobe_info,
        "n_nodes": n_nodes, "necrotic_nodes": int(sum(necrotic)),
        "gtvp_extent_mm": _extent_mm(pre_mask == GTVP, spacing),
        "gtvp_volume_factor": round(vf_p, 4), "gtvn_volume_factors": [round(v, 4) for v in vf_n],
        "oedema": bool(f_p or oedema_shrunk),
        "tumour_muscle_ratio_pre": round(lvl_p, 4),
        "tumour_muscle_ratio_mid": round(lvl_p * mid_fac, 4),
        "deformation_rms_mm": round(u_def.rms, 3), "misregistration_rms_mm": round(r_def.rms, 3),
        "snr_pre": round(scans["pre"]["snr"], 3), "snr_mid": round(scans["mid"]["snr"], 3),
        "scale_pre": round(scans["pre"]["scale"], 3), "scale_mid": round(scans["mid"]["scale"], 3),
        "contrast_pre": contrast,
        "volumes_ml": {"pre": label_volumes_ml(pre_mask, spacing),
                       "mid": label_volumes_ml(mid_mask, spacing),
                       "reg": label_volumes_ml(reg_mask, spacing)},
    }
    if f_b and not info["beyond_box"]:  # pragma: no cover - guarded above
        raise RuntimeError(f"case {case_id}: beyond_box requested but not realised")
    if not f_b and info["beyond_box"]:
        log.warning("case %s: mid-RT GTV reaches %s voxels beyond the registered box without a "
                    "growth lobe", case_id, ext)
    return MriPhantomCase(
        case_id=case_id,
        pre_t2=pre_grid.to_image(pre_img), pre_mask=pre_grid.to_image(pre_mask),
        mid_t2=mid_grid.to_image(mid_img), mid_mask=mid_grid.to_image(mid_mask),
        reg_t2=mid_grid.to_image(reg_img), reg_mask=mid_grid.to_image(reg_mask),
        info=info, tissue=pre_grid.to_image(tissue),
    )


def _add_growth_lobe(rng, grid: Grid, anatomy: NeckAnatomy, structures, mid_mask, reg_mask):
    """Add a tapered growth lobe to the mid-RT GTVp (or a node) that reaches at least
    BEYOND_BOX_MIN_VOX (+2) voxels outside the registered mask's bounding box."""
    rb = fg_bbox(reg_mask > 0)
    if rb is None:
        rb = fg_bbox(mid_mask > 0)
    src_idx = next((i for i, s in enumerate(structures) if s[0] == "GTVp"), 0)
    if not structures:
        raise ValueError("beyond_box needs a GTV left at mid-RT")
    name, fn, lo, hi, lv = structures[src_idx]
    sl = grid.slices_for_box(lo, hi, pad_vox=2)
    x, y, z = grid.world(sl)
    inside = np.broadcast_to(fn(x, y, z), tuple(s.stop - s.start for s in sl)) > 0
    pts = np.argwhere(inside)  # z, y, x within crop
    if pts.size == 0:
        raise ValueError("beyond_box: the source GTV has no voxel at mid-RT")
    pts = pts[:, ::-1] + np.array([sl[2].start, sl[1].start, sl[0].start])  # x, y, z index
    size = np.asarray(grid.size)
    target = BEYOND_BOX_MIN_VOX + 2
    cands = []
    for strict in (True, False):
        for ax in (1, 2, 0):  # prefer antero-posterior and cranio-caudal growth
            for sgn in (-1, 1):
                tip = (rb[1][ax] + target) if sgn > 0 else (rb[0][ax] - target)
                if not (2 <= tip <= size[ax] - 3):
                    continue
                start = pts[np.argmax(pts[:, ax] * sgn)].astype(float)
                tip_pt = start.copy()
                tip_pt[ax] = tip
                if strict and anatomy.body_norm(grid.world_of_index(tip_pt))[0] > 0.9:
                    continue
                cands.append((ax, sgn, start, tip_pt))
        if cands:
            break
    if not cands:
        raise ValueError("beyond_box: no room in the field of view for a growth lobe")
    ax, sgn, start, tip_pt = cands[int(rng.integers(len(cands)))]
    r0 = float(rng.uniform(4.5, 7.0))
    r1 = max(2.5, 0.9 * max(grid.spacing[k] for k in range(3) if k != ax))
    back = start.copy()
    back[ax] -= sgn * 4.0 / grid.spacing[ax]
    p0, p1 = grid.world_of_index(back), grid.world_of_index(tip_pt)
    lobe = _capsule_field(p0, p1, r0, r1)
    m = max(r0, r1) + 2.0
    new = list(structures)
    new[src_idx] = (name, _union(fn, lobe), np.minimum(lo, np.minimum(p0, p1) - m),
                    np.maximum(hi, np.maximum(p0, p1) + m), lv)
    info = {"structure": name, "axis": "xyz"[ax] + ("+" if sgn > 0 else "-"),
            "length_mm": round(float(np.linalg.norm(p1 - p0)), 2)}
    return new, info
