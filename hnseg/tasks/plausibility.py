"""What an input image of a head-and-neck task may look like: size limits and intensity rules.

These are task facts (the profile carries them, ``TaskProfile.image_limits`` and
``TaskProfile.intensity_rules``); ``hnseg.load.plausibility`` applies them. The size limits are checked
from the image header alone, before any voxel is read; the intensity rules after reading, before any
compute.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageLimits(_Frozen):
    """Bounds of a plausible head-and-neck scan. The largest real inputs we know: HNTS-MRG T2w
    768×768×116 (68 M voxels) at 0.5×0.5×2 mm; SegRap CT 512×512×~250 at ~1×1×3 mm."""

    max_voxels: int = Field(default=200_000_000, description="voxels per image (≈ 3× the largest real input)")
    max_extent_mm: float = Field(default=1000.0, description="physical extent per axis (size × spacing)")
    min_spacing_mm: float = Field(default=0.05, description="smallest voxel spacing per axis")
    max_spacing_mm: float = Field(default=20.0, description="largest voxel spacing per axis")
    direction_tolerance: float = Field(
        default=1e-3, description="largest |DᵀD − I| entry of an orthonormal direction matrix"
    )

    def describe(self) -> str:
        return (f"at most {self.max_voxels:,} voxels, {self.max_extent_mm:g} mm per axis, spacing "
                f"{self.min_spacing_mm:g}–{self.max_spacing_mm:g} mm")


class IntensityRule(_Frozen):
    """Plausible voxel values of one modality (robust percentiles, so a few outliers pass)."""

    modality: str = Field(description="DICOM modality the rule is for: 'CT' or 'MR'")
    max_abs: float = Field(description="no voxel may exceed this magnitude (floating-point garbage)")
    min_value: float | None = Field(default=None, description="no voxel may lie below this value")
    air_range: tuple[float, float] | None = Field(
        default=None, description="CT: the HU range of air, which every head-and-neck CT shows"
    )
    min_air_fraction: float = Field(default=0.0, description="CT: least share of voxels in air_range")
    max_negative_ratio: float | None = Field(
        default=None,
        description="MRI: the 0.5th percentile may not lie below −ratio × the 99.5th percentile "
        "(magnitude images are non-negative up to noise and interpolation ringing)",
    )

    def describe(self) -> str:
        parts = [f"|value| ≤ {self.max_abs:g}"]
        if self.min_value is not None:
            parts.append(f"value ≥ {self.min_value:g}")
        if self.air_range:
            parts.append(f"≥ {self.min_air_fraction:.1%} of voxels in the air range "
                         f"{self.air_range[0]:g}…{self.air_range[1]:g} HU")
        if self.max_negative_ratio is not None:
            parts.append(f"0.5th percentile ≥ −{self.max_negative_ratio:g} × 99.5th percentile")
        return ", ".join(parts)


# HU are stored in 16 bits by every CT scanner; padding outside the field of view goes down to -32768.
CT_RULE = IntensityRule(modality="CT", max_abs=32768.0, min_value=-32768.0, air_range=(-1200.0, -800.0),
                        min_air_fraction=0.001)
MR_RULE = IntensityRule(modality="MR", max_abs=1e7, max_negative_ratio=0.05)

DEFAULT_INTENSITY_RULES: dict[str, IntensityRule] = {"CT": CT_RULE, "MR": MR_RULE}
