"""DICOM SEG output (highdicom): one binary segment per structure, frames referencing the source
series' slices (``SourceSeries``: mask z index k ↔ ``datasets[k]``), on its FrameOfReferenceUID.

- Segment codes: SNOMED CT property category and type from ``hnseg.tasks.codes`` (organs at risk:
  Anatomical Structure + the organ, left / right as a Segmented Property Type Modifier; targets:
  Morphologically Abnormal Structure + GTV / CTV).
- Pixel Measures: SpacingBetweenSlices is the step hnseg measured from the sorted slice positions
  (``SourceSeries.step``), not the source header's, which highdicom would copy (a wrong one makes
  readers rebuild the volume with the wrong number of slices).
- Empty structures stay as segments without frames, so segment numbers follow the task's structure
  order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.valuerep import format_number_as_ds

import hnseg
from hnseg.errors import OutputFormatError
from hnseg.io.write import write_dicom_atomic
from hnseg.tasks.codes import Coded, StructureCode
from hnseg.write.dicom_source import SourceSeries, display_colour, structure_codes

log = logging.getLogger(__name__)

CONTENT_CREATOR = "hnseg^"  # ContentCreatorName (PN, family name only): the algorithm, no person


def _concept(c: Coded) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(c.value, c.scheme, c.meaning)


def segment_description(number: int, name: str, code: StructureCode) -> hd.seg.SegmentDescription:
    description = hd.seg.SegmentDescription(
        segment_number=number, segment_label=name,
        segmented_property_category=_concept(code.category), segmented_property_type=_concept(code.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="hnseg", version=hnseg.__version__, family=codes.cid7162.ArtificialIntelligence),
        display_color=hd.color.CIELabColor.from_rgb(*display_colour(number)),
    )
    if code.laterality is not None:  # highdicom's SegmentDescription has no parameter for the modifier
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _concept(code.laterality)]
    return description


def set_slice_step(seg: hd.seg.Segmentation, source: SourceSeries) -> None:
    """Pixel Measures: SpacingBetweenSlices = the measured step (SliceThickness = the step where the
    source has none). Set on the built SEG: highdicom replaces given pixel measures by the source's
    whenever the PixelSpacing agrees, and so copies the source header's SpacingBetweenSlices."""
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.SpacingBetweenSlices = format_number_as_ds(source.step)
    if not str(measures.get("SliceThickness", "")).strip():
        measures.SliceThickness = format_number_as_ds(source.step)


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
    names = [n for n, _ in masks]
    codes_ = structure_codes(names, str(path))
    descriptions = [segment_description(i + 1, n, c) for i, (n, c) in enumerate(zip(names, codes_))]
    pixels = np.stack([m for _, m in masks], axis=-1).astype(np.uint8)  # (frames, rows, columns, segments)
    seg = hd.seg.Segmentation(
        source_images=list(source.datasets), pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        content_creator_name=CONTENT_CREATOR, content_label="HNSEG",
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="hnseg", manufacturer_model_name="hnseg", software_versions=hnseg.__version__,
        device_serial_number="0", series_description=series_description,
    )
    set_slice_step(seg, source)
    write_dicom_atomic(seg, path)
    log.debug("DICOM SEG %s: %d segments over %d frames", path, len(masks), len(source.datasets))
    return str(seg.SOPInstanceUID)
