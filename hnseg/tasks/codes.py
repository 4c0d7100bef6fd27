"""Standard codes of every structure hnseg segments: the DICOM SEG segment's property category and
type (SNOMED CT, scheme ``SCT``), its laterality modifier, and the RTSTRUCT RT ROI Interpreted Type.

One table for every task (a structure name means the same organ in every task); each task profile
checks at import that all its structures are here (``TaskProfile.structure_codes``).

Sources, in this order:
- pydicom's code dictionary (``pydicom.sr.codedict.codes.SCT``, DICOM PS3.16): value and meaning as
  it spells them (test_dicom_conformance checks every code it holds);
- the AAPM TG-263 → SNOMED CT map of HL7 mCODE (ConceptMap TG263CM) for the two it lacks: Cochlea
  80169004 and the pharyngeal constrictor muscle 4866005;
- SNOMED CT's "Tympanic cavity structure" 51837005 for the tympanic cavity.

Choices:
- Organs at risk: category Anatomical Structure (SCT 91723000); left / right organs carry the organ's
  code plus a Segmented Property Type Modifier Left (SCT 7771000) / Right (SCT 24028007), as TG-263's
  map does (``Parotid_L`` = parotid gland + left).
- Targets: category Morphologically Abnormal Structure (SCT 49755003); type GTV (SCT 228791009) or
  CTV (SCT 228792002) from DICOM CID 9534 "Radiotherapy Target". SCT has no primary / nodal GTV
  (DICOM's DCM 130052 / 130051 do, outside SCT): GTVp and GTVn differ by their segment label only.
- SegRap's ``VestibulSemi`` (vestibule + semicircular canals) has no code of its own in pydicom's
  dictionary or TG-263: it gets Inner ear (SCT 22945000), the structure holding both.
  ``ETbone`` (the bony Eustachian tube) gets the pharyngotympanic tube (SCT 91207004).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Coded(BaseModel):
    """One coded concept (a DICOM Code Sequence item)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    value: str
    meaning: str
    scheme: str = "SCT"


class StructureCode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    category: Coded
    type: Coded
    laterality: Coded | None = None
    rt_roi_type: Literal["ORGAN", "GTV", "CTV", "PTV"]


ANATOMICAL_STRUCTURE = Coded(value="91723000", meaning="Anatomical Structure")
ABNORMAL_STRUCTURE = Coded(value="49755003", meaning="Morphologically Abnormal Structure")
LEFT = Coded(value="7771000", meaning="Left")
RIGHT = Coded(value="24028007", meaning="Right")
GTV = Coded(value="228791009", meaning="GTV")
CTV = Coded(value="228792002", meaning="CTV")

# organ → (SCT value, meaning); a name ending in _L / _R is the organ plus a laterality modifier
ORGANS: dict[str, tuple[str, str]] = {
    "Brain": ("12738006", "Brain"),
    "BrainStem": ("119238007", "Brain Stem"),
    "Chiasm": ("244453006", "Optic chiasm"),
    "TemporalLobe": ("78277001", "Temporal lobe"),
    "Hippocampus": ("5366008", "Hippocampus"),
    "Eye": ("81745001", "Eye"),
    "Lens": ("78076003", "Lens"),
    "OpticNerve": ("18234004", "optic nerve"),
    "MiddleEar": ("25342003", "Middle ear"),
    "IAC": ("361078006", "Internal Auditory Canal"),
    "TympanicCavity": ("51837005", "Tympanic cavity structure"),
    "VestibulSemi": ("22945000", "Inner ear"),
    "Cochlea": ("80169004", "Cochlear structure"),
    "ETbone": ("91207004", "pharyngotympanic tube"),
    "Pituitary": ("56329008", "Pituitary"),
    "OralCavity": ("74262004", "oral cavity"),
    "Mandible": ("91609006", "Mandible"),
    "Submandibular": ("54019009", "Submandibular gland"),
    "Parotid": ("45289007", "Parotid gland"),
    "Mastoid": ("59066005", "Mastoid bone"),
    "TMjoint": ("53620006", "Temporomandibular joint"),
    "SpinalCord": ("2748008", "Spinal cord"),
    "Esophagus": ("32849002", "Esophagus"),
    "Larynx": ("4596009", "Larynx"),
    "Larynx_Glottic": ("1307006", "glottis"),
    "Larynx_Supraglot": ("119255006", "supraglottis"),
    "PharynxConst": ("4866005", "Constrictor muscle of pharynx structure"),
    "Thyroid": ("69748006", "Thyroid"),
    "Trachea": ("44567001", "Trachea"),
}
# target name → (type, RT ROI Interpreted Type)
TARGETS: dict[str, tuple[Coded, Literal["GTV", "CTV"]]] = {
    "GTVp": (GTV, "GTV"), "GTVn": (GTV, "GTV"), "GTVnd": (GTV, "GTV"),
    "CTV70": (CTV, "CTV"), "CTV63": (CTV, "CTV"),
}


def _organ_code(name: str) -> StructureCode | None:
    side = {"_L": LEFT, "_R": RIGHT}.get(name[-2:])
    organ = name[:-2] if side else name
    if organ not in ORGANS:
        return None
    value, meaning = ORGANS[organ]
    return StructureCode(category=ANATOMICAL_STRUCTURE, type=Coded(value=value, meaning=meaning),
                         laterality=side, rt_roi_type="ORGAN")


def structure_code(name: str) -> StructureCode | None:
    """The codes of structure ``name`` (None when the table has no entry)."""
    if name in TARGETS:
        code, rt_type = TARGETS[name]
        return StructureCode(category=ABNORMAL_STRUCTURE, type=code, rt_roi_type=rt_type)
    return _organ_code(name)
