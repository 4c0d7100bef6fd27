"""Reading hnseg's DICOM SEG and RTSTRUCT back onto their source series (``SourceSeries``), as
boolean (z, y, x) masks by structure name: the round-trip check of the DICOM outputs, and a way to
compare them with the NIfTI masks of the same run.

RTSTRUCT contours are rasterised slice by slice with the even-odd rule (holes are their own
contours): a pixel belongs to the ROI when its centre lies inside an odd number of the ROI's
contours on that slice (``skimage.draw.polygon``).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from skimage.draw import polygon as fill_polygon

from hnseg.errors import OutputFormatError
from hnseg.write.dicom_source import SourceSeries


def read_seg_masks(path: str | Path, source: SourceSeries) -> dict[str, np.ndarray]:
    """Every segment of the SEG at ``path`` on the slices of ``source`` (by their SOPInstanceUIDs)."""
    seg = hd.seg.segread(str(path))
    numbers = [int(d.SegmentNumber) for d in seg.SegmentSequence]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=source.sop_instance_uids,
                                               segment_numbers=numbers, assert_missing_frames_are_empty=True)
    return {str(d.SegmentLabel): pixels[..., i] > 0 for i, d in enumerate(seg.SegmentSequence)}


def _slice_index(contour: pydicom.Dataset, points: np.ndarray, source: SourceSeries,
                 index_of: dict[str, int], path: str) -> int:
    refs = contour.get("ContourImageSequence")
    if refs:
        uid = str(refs[0].ReferencedSOPInstanceUID)
        if uid not in index_of:
            raise OutputFormatError(f"{path}: a contour references SOPInstanceUID {uid}, which is not a slice "
                                    f"of {source.label}")
        return index_of[uid]
    ipp0, row_cos, col_cos, *_ = source.slice_frame(0)
    normal = np.cross(row_cos, col_cos)
    heights = [float((source.slice_frame(k)[0] - ipp0) @ normal) for k in range(len(source.datasets))]
    return int(np.argmin(np.abs(np.array(heights) - float((points[0] - ipp0) @ normal))))


def rasterize_contour(points: np.ndarray, frame, shape2d: tuple[int, int]) -> np.ndarray:
    """Pixels of one slice whose centres lie inside the planar contour (patient mm, n × 3)."""
    ipp, row_cos, col_cos, d_row, d_col = frame
    d = points - ipp
    off_plane = np.abs(d @ np.cross(row_cos, col_cos))
    if off_plane.max() > 0.5 * min(d_row, d_col):
        raise OutputFormatError(f"expected a contour in its slice's plane, found points {off_plane.max():.3g} mm off it")
    rr, cc = fill_polygon((d @ col_cos) / d_row, (d @ row_cos) / d_col, shape2d)
    out = np.zeros(shape2d, bool)
    out[rr, cc] = True
    return out


def read_rtstruct_masks(path: str | Path, source: SourceSeries) -> dict[str, np.ndarray]:
    """Every ROI of the RTSTRUCT at ``path`` rasterised onto ``source`` (even-odd rule per slice)."""
    ds = pydicom.dcmread(str(path))
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    index_of = {uid: k for k, uid in enumerate(source.sop_instance_uids)}
    n, rows, cols = source.shape
    masks = {name: np.zeros((n, rows, cols), bool) for name in names.values()}
    for item in ds.get("ROIContourSequence", []):
        mask = masks[names[int(item.ReferencedROINumber)]]
        for contour in item.get("ContourSequence", []):
            points = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
            k = _slice_index(contour, points, source, index_of, str(path))
            mask[k] ^= rasterize_contour(points, source.slice_frame(k), (rows, cols))
    return masks
