"""The source DICOM series of a case, as the DICOM writers (SEG, RTSTRUCT) need it: the header of
every slice in the volume's slice order (``hnseg.io.dicom.sort_series``), so that z index k of a mask
on the series grid is the frame / contour of ``datasets[k]``'s SOPInstanceUID, and the slice step
measured from the sorted positions (a header's SpacingBetweenSlices may be absent or wrong).

The structures' standard codes (SEG segment codes, RT ROI Interpreted Type) come from
``hnseg.tasks.codes``; a structure without one is refused (``structure_codes``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from hnseg.errors import DicomSeriesError, OutputFormatError
from hnseg.io.dicom import sort_series
from hnseg.tasks.codes import StructureCode, structure_code

# display colour of structure number n (1-based): RTSTRUCT ROIDisplayColor (RGB), SEG CIELab of the same
COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230))


def display_colour(number: int) -> tuple[int, int, int]:
    return COLOURS[(number - 1) % len(COLOURS)]


def structure_codes(names, what: str) -> list[StructureCode]:
    """The standard codes of ``names`` (``hnseg.tasks.codes``), in order; ``OutputFormatError`` naming
    ``what`` (the output file) for a structure the table lacks."""
    codes = [structure_code(n) for n in names]
    missing = [n for n, c in zip(names, codes) if c is None]
    if missing:
        raise OutputFormatError(f"{what}: expected structures with a standard (SNOMED CT) code in "
                                f"hnseg/tasks/codes.py, found {missing} without one")
    return codes


@dataclass(frozen=True)
class SourceSeries:
    folder: Path
    datasets: tuple[pydicom.Dataset, ...]  # headers only, slice order of the volume
    label: str
    step: float  # mm between slices, measured from the sorted ImagePositionPatient values

    @property
    def first(self) -> pydicom.Dataset:
        return self.datasets[0]

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.first.FrameOfReferenceUID)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns): the (z, y, x) shape of a mask on the series grid."""
        return len(self.datasets), int(self.first.Rows), int(self.first.Columns)

    def slice_frame(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """Slice k's ImagePositionPatient, row cosine (direction of increasing column index), column
        cosine (increasing row index), row spacing and column spacing (mm)."""
        ds = self.datasets[k]
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
        return np.array([float(v) for v in ds.ImagePositionPatient]), iop[:3], iop[3:], row_spacing, col_spacing


def load_source_series(folder: str | Path, what: str, modality: str | None = None) -> SourceSeries:
    """The headers of the series ``read_dicom_series(folder, what, modality)`` reads, in its slice order."""
    series = sort_series(Path(folder), what, modality)
    datasets = []
    for f in series.files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        missing = [k for k in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID",
                               "FrameOfReferenceUID") if not str(ds.get(k, "")).strip()]
        if missing:
            raise DicomSeriesError(f"{series.label}: expected {', '.join(missing)} in every slice (DICOM SEG and "
                                   f"RTSTRUCT must reference them), found none in {f}")
        datasets.append(ds)
    return SourceSeries(folder=Path(folder), datasets=tuple(datasets), label=series.label, step=series.step)
