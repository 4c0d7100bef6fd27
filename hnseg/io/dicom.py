"""Reading a DICOM image series (one folder of single-frame slices) with SimpleITK / GDCM.

Series choice: the folder's series are listed with ``GetGDCMSeriesIDs``; when a modality is asked for
(CT sockets → ``CT``, MRI sockets → ``MR``) only the series of that Modality (0008,0060) are kept.
Exactly one left → it is read; several → ``AmbiguousInputError`` listing each SeriesInstanceUID with
its description and file count; none → ``MissingInputError``.

Geometry: slices are sorted by their position along the slice normal (row cosine × column cosine of
ImageOrientationPatient; position = ImagePositionPatient · normal). Every slice must share the
orientation (within 1e-4), rows / columns and PixelSpacing, lie on the normal through the first slice,
and the positions must increase with one uniform step (tolerance: 1 % of the step or 0.01 mm,
whichever is larger). A missing slice, an uneven step or a duplicate position is a ``DicomSeriesError``
(SimpleITK only warns there). The image's origin is the first sorted slice's position, its direction
(row, column, normal), its spacing (PixelSpacing column, row, measured step).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hnseg.errors import AmbiguousInputError, DicomSeriesError, MissingInputError, UnreadableImageError

log = logging.getLogger(__name__)

MODALITY, SERIES_UID, SERIES_DESCRIPTION = "0008|0060", "0020|000e", "0008|103e"
POSITION, ORIENTATION, PIXEL_SPACING = "0020|0032", "0020|0037", "0028|0030"
ROWS, COLUMNS, FRAMES = "0028|0010", "0028|0011", "0028|0008"
ORIENTATION_TOL = 1e-4
SPACING_TOL = 1e-4  # relative, PixelSpacing


@dataclass(frozen=True)
class SliceInfo:
    """The geometry tags of one DICOM file."""

    file: str
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _header(file: str, label: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(file)
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "no detail")
        raise UnreadableImageError(f"{label}: expected a readable DICOM file, {file} is not: {detail}") from None
    return reader


def _floats(reader: sitk.ImageFileReader, key: str, n: int, file: str, label: str, name: str) -> np.ndarray:
    text = _tag(reader, key)
    try:
        values = np.array([float(v) for v in text.split("\\")], dtype=float)
    except ValueError:
        values = np.array([])
    if values.size != n or not np.all(np.isfinite(values)):
        raise DicomSeriesError(f"{label}: expected {name} ({key.replace('|', ',')}) with {n} numbers in "
                               f"{file}, found {text!r}")
    return values


def _slice_info(file: str, label: str) -> SliceInfo:
    r = _header(file, label)
    frames = _tag(r, FRAMES)
    if frames and frames.isdigit() and int(frames) > 1:
        raise DicomSeriesError(f"{label}: expected single-frame slices, found a multi-frame (enhanced) "
                               f"file with {frames} frames: {file}")
    ps = _floats(r, PIXEL_SPACING, 2, file, label, "PixelSpacing")
    rows, cols = _tag(r, ROWS), _tag(r, COLUMNS)
    return SliceInfo(file=file, position=_floats(r, POSITION, 3, file, label, "ImagePositionPatient"),
                     orientation=_floats(r, ORIENTATION, 6, file, label, "ImageOrientationPatient"),
                     pixel_spacing=(float(ps[0]), float(ps[1])),
                     rows=int(rows) if rows.isdigit() else -1, columns=int(cols) if cols.isdigit() else -1)


# -- series choice ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesEntry:
    uid: str
    modality: str
    description: str
    files: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.uid} ({self.modality or 'no modality'}, {self.description or 'no description'!r}, " \
               f"{len(self.files)} file(s))"


def list_series(folder: Path, label: str) -> list[SeriesEntry]:
    """Every DICOM series directly in ``folder`` with its modality, description and files."""
    entries = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        if not files:
            continue
        r = _header(files[0], label)
        entries.append(SeriesEntry(uid=uid, modality=_tag(r, MODALITY), description=_tag(r, SERIES_DESCRIPTION),
                                   files=files))
    return entries


def choose_series(folder: Path, label: str, modality: str | None) -> SeriesEntry:
    """The one series of ``folder`` (of ``modality`` when given); see the module docstring."""
    entries = list_series(folder, label)
    if not entries:
        n = sum(1 for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        raise MissingInputError(f"{label}: expected a folder holding one DICOM series, found no DICOM series "
                                f"among its {n} file(s)")
    kept = [e for e in entries if modality is None or e.modality.upper() == modality.upper()]
    if not kept:
        raise MissingInputError(f"{label}: expected a DICOM series of modality {modality}, found only: "
                                + "; ".join(e.describe() for e in entries))
    if len(kept) > 1:
        raise AmbiguousInputError(f"{label}: expected exactly one DICOM series"
                                  f"{f' of modality {modality}' if modality else ''}, found {len(kept)}: "
                                  + "; ".join(e.describe() for e in kept))
    return kept[0]


# -- geometry --------------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _check_uniform_slices(slices: list[SliceInfo], label: str) -> None:
    first = slices[0]
    for s in slices[1:]:
        if np.max(np.abs(s.orientation - first.orientation)) > ORIENTATION_TOL:
            raise DicomSeriesError(f"{label}: expected one ImageOrientationPatient for every slice, found "
                                   f"{list(first.orientation)} in {first.file} and {list(s.orientation)} in {s.file}")
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise DicomSeriesError(f"{label}: expected {first.rows} rows × {first.columns} columns in every "
                                   f"slice (as {first.file}), found {s.rows} × {s.columns} in {s.file}")
        if np.any(np.abs(np.subtract(s.pixel_spacing, first.pixel_spacing)) > SPACING_TOL * np.abs(first.pixel_spacing)):
            raise DicomSeriesError(f"{label}: expected PixelSpacing {first.pixel_spacing} in every slice (as "
                                   f"{first.file}), found {s.pixel_spacing} in {s.file}")


def _cosines(orientation: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise DicomSeriesError(f"{label}: expected ImageOrientationPatient to hold two orthogonal unit "
                               f"vectors, found {list(orientation)}")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def sort_slices(slices: list[SliceInfo], label: str) -> tuple[list[SliceInfo], float, np.ndarray]:
    """Slices sorted along the normal, the uniform step (mm) and the direction matrix (columns row,
    column, normal); raises ``DicomSeriesError`` for any gap, uneven step or duplicate position."""
    if len(slices) < 2:
        raise DicomSeriesError(f"{label}: expected a 3D series of at least 2 slices, found {len(slices)}")
    _check_uniform_slices(slices, label)
    row, col, normal = _cosines(slices[0].orientation, label)
    ordered = sorted(slices, key=lambda s: float(s.position @ normal))
    pos = np.array([float(s.position @ normal) for s in ordered])
    steps = np.diff(pos)
    step = float(np.median(steps))
    tol = max(0.01 * abs(step), 0.01)
    for i, d in enumerate(steps):
        a, b = _fmt(pos[i]), _fmt(pos[i + 1])
        if d <= tol:
            raise DicomSeriesError(f"{label}: expected one slice per position, found duplicate position {a} mm "
                                   f"({ordered[i].file}, {ordered[i + 1].file})")
        if abs(d - step) > tol:
            k = d / step
            if round(k) >= 2 and abs(d - round(k) * step) <= tol:
                raise DicomSeriesError(f"{label}: expected slices every {_fmt(step)} mm, found a missing slice "
                                       f"between positions {a} and {b} mm (step {_fmt(step)} mm, "
                                       f"{round(k) - 1} slice(s) missing)")
            raise DicomSeriesError(f"{label}: expected a uniform slice spacing of {_fmt(step)} mm, found "
                                   f"non-uniform spacing: {_fmt(d)} mm between positions {a} and {b} mm")
    offsets = np.array([s.position - ordered[0].position for s in ordered])
    off_axis = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    if off_axis.max() > tol:
        i = int(off_axis.argmax())
        raise DicomSeriesError(f"{label}: expected slices stacked along their normal {list(np.round(normal, 4))}, "
                               f"found {ordered[i].file} {_fmt(off_axis[i])} mm off that line (tilted stack)")
    mean_step = round(float((pos[-1] - pos[0]) / (len(pos) - 1)), 6)  # DS strings: drop rounding noise
    return ordered, mean_step, np.column_stack([row, col, normal])


def keeps_locale(fn):
    """GDCM switches the process's C locale to "C" (to parse numbers) and leaves it there, which
    turns Python's preferred encoding into ASCII for everything after (a subprocess's UTF-8 output
    then fails to decode): restore the caller's locale after ``fn``."""
    import functools
    import locale

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        saved = locale.setlocale(locale.LC_ALL)
        try:
            return fn(*args, **kwargs)
        finally:
            locale.setlocale(locale.LC_ALL, saved)

    return wrapper


@dataclass(frozen=True)
class SortedSeries:
    """One DICOM series of a folder, its files sorted along the slice normal: file k holds slice k
    (z index k) of the volume ``read_dicom_series`` returns."""

    uid: str
    files: tuple[str, ...]
    pixel_spacing: tuple[float, float]  # PixelSpacing (row spacing, column spacing)
    step: float  # mm between slices along the normal
    direction: np.ndarray  # columns: row cosine, column cosine, normal
    origin: tuple[float, float, float]  # ImagePositionPatient of file 0
    label: str  # for error messages


@keeps_locale
def sort_series(folder: Path, what: str, modality: str | None = None) -> SortedSeries:
    """The one series of ``folder`` (of ``modality`` when given), checked and sorted (module docstring)."""
    folder = Path(folder)
    label = f"{what} ({folder})" if what else str(folder)
    if not folder.is_dir():
        raise MissingInputError(f"{label}: expected a folder of DICOM files, found nothing there")
    series = choose_series(folder, label, modality)
    label = f"{label}, series {series.uid}"
    ordered, step, direction = sort_slices([_slice_info(f, label) for f in series.files], label)
    return SortedSeries(uid=series.uid, files=tuple(s.file for s in ordered), pixel_spacing=ordered[0].pixel_spacing,
                        step=step, direction=direction, origin=tuple(float(v) for v in ordered[0].position),
                        label=label)


@keeps_locale
def read_dicom_series(folder: Path, what: str, modality: str | None = None) -> sitk.Image:
    """Read the one DICOM series of ``folder`` (of ``modality`` when given: "CT", "MR") as a 3D image;
    ``what`` (a socket slug or role) goes into error messages."""
    series = sort_series(folder, what, modality)
    label, direction = series.label, series.direction
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(list(series.files))
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("Description")),
                      str(exc).strip().splitlines()[-1] if str(exc).strip() else "no detail")
        raise UnreadableImageError(f"{label}: expected readable DICOM slices, SimpleITK failed: {detail}") from None
    found = np.array(image.GetDirection()).reshape(3, 3)
    if image.GetDimension() != 3 or np.max(np.abs(found - direction)) > ORIENTATION_TOL:
        raise DicomSeriesError(f"{label}: expected the read volume to have direction {direction.ravel().tolist()} "
                               f"(ImageOrientationPatient and its normal), SimpleITK gave {found.ravel().tolist()}")
    ps = series.pixel_spacing
    image.SetSpacing((ps[1], ps[0], series.step))  # PixelSpacing is (row spacing, column spacing)
    image.SetOrigin(series.origin)
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    log.debug("%s: %d slices, step %.4g mm, size %s", label, len(series.files), series.step, image.GetSize())
    return image
