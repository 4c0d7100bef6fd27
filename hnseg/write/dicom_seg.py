"""DICOM SEG output (highdicom): one binary segment per structure, frames referencing the source
series' slices (``SourceSeries``: mask z index k ↔ ``datasets[k]``), on its FrameOfReferenceUID.

Segment codes: category SCT 49755003 "Morphologically abnormal structure" for targets (GTV / CTV),
SCT 123037004 "Anatomical structure" for organs at risk; the type is the structure's own name in the
private coding scheme ``99HNSEG`` (the SegRap / NPC structure lists have no agreed code set). Empty
structures stay as segments without frames, so segment numbers follow the task's structure order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

import hnseg
from hnseg.errors import OutputFormatError
from hnseg.io.write import write_dicom_atomic
from hnseg.write.dicom_source import SourceSeries, is_target

log = logging.getLogger(__name__)

PRIVATE_SCHEME = "99HNSEG"
ANATOMICAL_STRUCTURE = hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure")
ABNORMAL_STRUCTURE = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")


def segment_description(number: int, name: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=name,
        segmented_property_category=ABNORMAL_STRUCTURE if is_target(name) else ANATOMICAL_STRUCTURE,
        segmented_property_type=hd.sr.CodedConcept(name[:16], PRIVATE_SCHEME, name),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="hnseg", version=hnseg.__version__, family=codes.cid7162.ArtificialIntelligence),
    )


def check_masks(masks: list[tuple[str, np.ndarray]], source: SourceSeries, what: str) -> None:
    for name, mask in masks:
        if mask.shape != source.shape:
            raise OutputFormatError(f"{what}: expected the {name} mask on the source series grid "
                                    f"{source.shape} (slices, rows, columns) of {source.label}, found {mask.shape}")


def write_dicom_seg(masks: list[tuple[str, np.ndarray]], source: SourceSeries, path: str | Path, *,
                    series_description: str = "hnseg segmentation", series_number: int = 901) -> str:
    """Write the (name, boolean (z, y, x) mask) pairs as one DICOM SEG at ``path`` (atomically);
    returns its SOPInstanceUID."""
    check_masks(masks, source, str(path))
    pixels = np.stack([m for _, m in masks], axis=-1).astype(np.uint8)  # (frames, rows, columns, segments)
    seg = hd.seg.Segmentation(
        source_images=list(source.datasets), pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(i + 1, n) for i, (n, _) in enumerate(masks)],
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="hnseg", manufacturer_model_name="hnseg", software_versions=hnseg.__version__,
        device_serial_number="0", series_description=series_description,
    )
    write_dicom_atomic(seg, path)
    log.debug("DICOM SEG %s: %d segments over %d frames", path, len(masks), len(source.datasets))
    return str(seg.SOPInstanceUID)
