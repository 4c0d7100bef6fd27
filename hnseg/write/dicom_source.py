"""The source DICOM series of a case, as the DICOM writers (SEG, RTSTRUCT) need it: the header of
every slice in the volume's slice order (``hnseg.io.dicom.sort_series``), so that z index k of a mask
on the series grid is the frame / contour of ``datasets[k]``'s SOPInstanceUID."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from hnseg.errors import DicomSeriesError
from hnseg.io.dicom import sort_series

# DICOM RT ROI Interpreted Type / SEG property category per kind of structure
TARGET_PREFIXES = ("GTV", "CTV", "PTV")


def is_target(name: str) -> bool:
    """GTVp, GTVnd, CTV70 … are targets; everything else is an organ at risk."""
    return name.upper().startswith(TARGET_PREFIXES)


@dataclass(frozen=True)
class SourceSeries:
    folder: Path
    datasets: tuple[pydicom.Dataset, ...]  # headers only, slice order of the volume
    label: str

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
    return SourceSeries(folder=Path(folder), datasets=tuple(datasets), label=series.label)
