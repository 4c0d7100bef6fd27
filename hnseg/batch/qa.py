"""The per-case QA sheet ``qa.png``: one row per structure found, three panels (axial, coronal,
sagittal) through the structure, the input image in grey with the structure's contour on top.

Layout: a header (title, then ``not found: …`` listing the empty structures), then one row per
non-empty structure: a label column (name, volume in cc) and three square panels of ``PANEL_PX``
pixels. More than ``MAX_ROWS`` structures wrap into side-by-side groups of columns (45 OARs: 3 groups
of 15 rows), so the sheet is at most ``MAX_ROWS`` panels tall.

The image and masks are first brought to the canonical LPS orientation (``preprocess.orientation``:
voxel axes x, y, z ≈ patient L, P, S), so any storage (coronal, sagittal series) draws the same: the
axial panel shows a fixed z with y (anterior) at the top, the coronal and sagittal panels a fixed
y / x with z (superior) up. Pixel aspect follows the voxel spacing. Rendering uses matplotlib's Agg
canvas only (no pyplot, no global backend state).
"""

from __future__ import annotations

import logging
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hnseg.preprocess.orientation import CANONICAL, Reorientation

log = logging.getLogger(__name__)

QA_FILE = "qa.png"
DPI = 100
PANEL_PX = 200  # one square panel
LABEL_PX = 130  # the name / volume column left of each row
HEADER_LINE_PX = 22
MAX_ROWS = 20  # more structures wrap into another group of columns
VIEWS = ("axial", "coronal", "sagittal")
# saturated colours, one per structure (cycled), none of them grey
COLOURS = ("#ff3030", "#30d030", "#3090ff", "#ffd000", "#ff40ff", "#00e0e0", "#ff8c00", "#a060ff")


@dataclass(frozen=True)
class Layout:
    """Pixel geometry of a sheet."""

    groups: int
    rows: int
    header_lines: int

    @property
    def header_px(self) -> int:
        return HEADER_LINE_PX * self.header_lines + 10

    @property
    def group_px(self) -> int:
        return LABEL_PX + len(VIEWS) * PANEL_PX

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of the PNG."""
        return self.groups * self.group_px, self.header_px + self.rows * PANEL_PX


def grid_shape(n_present: int) -> tuple[int, int]:
    """(groups, rows): at most ``MAX_ROWS`` rows, groups balanced (45 → 3 groups of 15 rows)."""
    groups = max(1, math.ceil(n_present / MAX_ROWS))
    return groups, math.ceil(n_present / groups)


def colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def header_text(title: str, missing: list[str], width_px: int) -> list[str]:
    """The title, then ``not found: …`` (wrapped to the sheet width) when structures are empty."""
    lines = [title]
    if missing:
        chars = max(40, width_px // 7)
        lines += textwrap.wrap("not found: " + ", ".join(missing), width=chars)
    return lines


def window(array: np.ndarray) -> tuple[float, float]:
    """Grey window: the image's 1st–99th percentile."""
    lo, hi = (float(v) for v in np.percentile(array, [1, 99]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def centre_slices(mask: np.ndarray) -> tuple[int, int, int]:
    """(z, y, x) indices through the centre of mass; per axis the nearest slice holding the mask (a
    bilateral structure's centre can fall between its parts)."""
    coords = np.nonzero(mask)
    picks = []
    for c in coords:
        slices = np.unique(c)
        picks.append(int(slices[np.argmin(np.abs(slices - c.mean()))]))
    return picks[0], picks[1], picks[2]


def _view(volume: np.ndarray, view: str, index: int, spacing: tuple[float, float, float]):
    """(2D slice, origin, extent in mm) of one view; ``spacing`` is (x, y, z)."""
    nz, ny, nx = volume.shape
    sx, sy, sz = spacing
    if view == "axial":
        return volume[index], "upper", (0, nx * sx, ny * sy, 0)
    if view == "coronal":
        return volume[:, index, :], "lower", (0, nx * sx, 0, nz * sz)
    return volume[:, :, index], "lower", (0, ny * sy, 0, nz * sz)


def _panel(ax, image: np.ndarray, mask: np.ndarray, view: str, index: int, spacing, grey: tuple[float, float],
           col: str) -> None:
    picture, origin, extent = _view(image, view, index, spacing)
    outline = _view(mask, view, index, spacing)[0]
    ax.set_facecolor("black")
    ax.imshow(picture, cmap="gray", vmin=grey[0], vmax=grey[1], origin=origin, extent=extent,
              interpolation="bilinear", aspect="equal")
    ax.contour(outline.astype(np.float32), levels=[0.5], colors=[col], linewidths=1.2, origin=origin,
               extent=extent)
    ax.set_adjustable("datalim")  # keep the square panel, pad the picture with black
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.02, 0.98, f"{view} {'zyx'[VIEWS.index(view)]}={index}", transform=ax.transAxes, color="white",
            fontsize=7, va="top", ha="left", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})


def _axes_rect(layout: Layout, slot: int, column: int) -> list[float]:
    """Figure-fraction rectangle of one panel (``column`` 0–2) of the ``slot``-th structure."""
    width, height = layout.size_px
    group, row = divmod(slot, layout.rows)
    left = group * layout.group_px + LABEL_PX + column * PANEL_PX
    top = layout.header_px + row * PANEL_PX
    pad = 2
    return [(left + pad) / width, 1 - (top + PANEL_PX - pad) / height,
            (PANEL_PX - 2 * pad) / width, (PANEL_PX - 2 * pad) / height]


def _label(fig: Figure, rect: list[float], text: str, col: str, width: int) -> None:
    """Name and volume left of a row, with a bar of the contour's colour."""
    x0, y0, _, h = rect
    size = 9 if max(len(t) for t in text.splitlines()) <= 13 else 8  # "Larynx_Supraglot" still fits
    fig.text(x0 - 10 / width, y0 + h / 2, text, ha="right", va="center", fontsize=size, fontweight="bold")
    fig.add_artist(Rectangle((x0 - 7 / width, y0), 4 / width, h, transform=fig.transFigure, color=col))


def qa_sheet(image: sitk.Image, structures: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Draw the QA sheet of ``structures`` (name → boolean (z, y, x) mask on ``image``'s grid) over the
    3D ``image`` and write it as a PNG to ``path``."""
    if image.GetDimension() != 3:
        raise ValueError(f"QA sheet: expected a 3D image, found {image.GetDimension()}D")
    # drawn in LPS whatever the storage, so the axial panel is axial for a coronal or sagittal series
    r = Reorientation.of(image, CANONICAL)
    array = r.to_canonical(sitk.GetArrayFromImage(image).astype(np.float32))
    for name, m in structures.items():
        if m.shape != tuple(reversed(image.GetSize())):
            raise ValueError(f"QA sheet: mask {name!r} has shape {m.shape}, image {tuple(reversed(image.GetSize()))}")
    structures = {name: r.to_canonical(m) for name, m in structures.items()}
    present = [n for n, m in structures.items() if m.any()]
    missing = [n for n, m in structures.items() if not m.any()]
    groups, rows = grid_shape(len(present))
    width = groups * Layout(groups, rows, 1).group_px
    lines = header_text(title, missing, width)
    layout = Layout(groups, rows, len(lines))
    width, height = layout.size_px
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    for i, line in enumerate(lines):
        fig.text(6 / width, 1 - (6 + (i + 0.5) * HEADER_LINE_PX) / height, line, va="center", ha="left",
                 fontsize=11 if i == 0 else 9, fontweight="bold" if i == 0 else "normal")
    grey = window(array)
    spacing = r.geometry(image)[1]
    voxel_cc = float(np.prod(spacing)) / 1000.0
    for slot, name in enumerate(present):
        mask = structures[name]
        col = colour(list(structures).index(name))
        for column, (view, index) in enumerate(zip(VIEWS, centre_slices(mask))):
            ax = fig.add_axes(_axes_rect(layout, slot, column))
            _panel(ax, array, mask, view, index, spacing, grey, col)
        _label(fig, _axes_rect(layout, slot, 0), f"{name}\n{mask.sum() * voxel_cc:.2f} cc", col, width)
    path = Path(path)
    fig.savefig(path, dpi=DPI, format="png")
    log.debug("QA sheet %s: %d structure(s), %d not found", path, len(present), len(missing))
    return path
