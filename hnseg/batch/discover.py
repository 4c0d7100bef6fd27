"""Case discovery: one sub-folder per patient under the input folder, or a CSV manifest.

In a case folder each input socket of the task is matched by file name (``{id}`` = the folder's
name; each pattern with ``.nii.gz``, ``.nii`` or ``.mha``, or as a sub-folder of DICOM files read as
one series by ``hnseg.io.dicom``):

- the task's release naming (``RELEASE_PATTERNS``: HNTS-MRG ``preRT/{id}_preRT_T2`` …, SegRap
  ``image`` / ``image_contrast``, NPC ``ct`` / ``mri``);
- the generic naming: the socket slug as file stem (``head-neck-ct.mha``);
- a grand-challenge case folder (``inputs.json`` or ``images/<slug>/``) is read as ``hnseg predict``
  reads it.

Two files for one socket → ``AmbiguousInputError``; a required socket without one →
``MissingInputError``. Both are raised when the case is resolved, so they fail that case only.

A case id that cannot name ``OUT/<case_id>`` (a name batch writes itself, such as
``batch_summary.csv``; ids differing only in letter case), a manifest with NUL bytes or a malformed
row: ``SettingsError`` for the whole run, before anything is written (``hnseg.batch.layout``).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from hnseg.batch.layout import check_case_id, check_distinct
from hnseg.errors import AmbiguousInputError, MissingInputError, ResourceLimitError, SettingsError
from hnseg.interfaces.grand_challenge import INPUTS_JSON, discover_inputs
from hnseg.io.read import is_image_file
from hnseg.io.safe_paths import check_regular_file, read_bounded
from hnseg.tasks import TaskProfile
from hnseg.tasks import hntsmrg
from hnseg.training.releases import hntsmrg as hntsmrg_release
from hnseg.training.releases import segrap as segrap_release

log = logging.getLogger(__name__)

EXTENSIONS = (".nii.gz", ".nii", ".mha")
MANIFEST_ID = "case_id"
MANIFEST_MAX_BYTES = 64 * 2**20  # ~300 000 rows of long paths

_HNTSMRG_SOCKETS = {hntsmrg.MID_T2: "mid_t2", hntsmrg.REG_MASK: "reg_mask", hntsmrg.REG_T2: "reg_t2",
                    hntsmrg.PRE_T2: "pre_t2", hntsmrg.PRE_MASK: "pre_mask"}
# task → socket slug → release file names relative to the case folder, without extension: the
# training readers' own names (hnseg.training.releases)
RELEASE_PATTERNS: dict[str, dict[str, tuple[str, ...]]] = {
    "hntsmrg-task1": {hntsmrg.PRE_T2: (hntsmrg_release.STEMS["pre_t2"],)},
    "hntsmrg-task2": {slug: (hntsmrg_release.STEMS[key],) for slug, key in _HNTSMRG_SOCKETS.items()},
    **{task: {slug: (name.removesuffix(".nii.gz"),) for slug, name in images.items()}
       for task, (_prefix, images) in segrap_release.LAYOUTS.items()},
}


def socket_patterns(task: TaskProfile, slug: str) -> tuple[str, ...]:
    """File-name stems (with ``{id}``) accepted for one socket: release naming, then the slug."""
    return RELEASE_PATTERNS.get(task.name, {}).get(slug, ()) + (slug,)


def is_dicom_folder(path: Path) -> bool:
    """A non-hidden folder holding at least one non-hidden file (read as a DICOM series)."""
    return (path.is_dir() and not path.name.startswith(".")
            and any(p.is_file() and not p.name.startswith(".") for p in path.iterdir()))


@dataclass(frozen=True)
class CaseSource:
    """One case: its id and where its inputs come from (a case folder, or manifest paths)."""

    case_id: str
    folder: Path | None = None
    given: dict[str, Path] | None = field(default=None)

    def resolve(self, task: TaskProfile) -> dict[str, Path]:
        """Socket slug → image file; raises ``MissingInputError`` / ``AmbiguousInputError``."""
        if self.given is not None:
            return _check_given(task, self.case_id, self.given)
        assert self.folder is not None
        return find_case_files(task, self.folder)


def _is_gc_folder(folder: Path) -> bool:
    return (folder / INPUTS_JSON).is_file() or (folder / "images").is_dir()


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix() + ("/" if path.is_dir() else "")


def _images_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if is_image_file(p))[:20]


def find_case_files(task: TaskProfile, folder: Path) -> dict[str, Path]:
    """Match the task's input sockets to the image files of one case folder."""
    folder = Path(folder)
    if _is_gc_folder(folder):
        return discover_inputs(folder)
    found: dict[str, Path] = {}
    for socket in task.inputs:
        stems = [p.format(id=folder.name) for p in socket_patterns(task, socket.slug)]
        hits = [folder / f"{s}{ext}" for s in stems for ext in EXTENSIONS if (folder / f"{s}{ext}").is_file()]
        hits += [folder / s for s in stems if is_dicom_folder(folder / s)]
        if len(hits) > 1:
            raise AmbiguousInputError(
                f"case {folder}: socket {socket.slug!r} expected exactly one image file or DICOM folder, "
                f"found {len(hits)}: {', '.join(_rel(h, folder) for h in hits)}"
            )
        if hits:
            found[socket.slug] = hits[0]
    missing = task.missing_inputs(found, allow_registration=True)
    if missing:
        expected = "; ".join(
            f"{s}: " + " or ".join(f"{p.format(id=folder.name)}{{{','.join(EXTENSIONS)},/}}"
                                   for p in socket_patterns(task, s))
            for s in missing
        )
        raise MissingInputError(
            f"case {folder}: {task.name} expected an image or a DICOM folder for socket(s) {missing} "
            f"({expected}){_registration_hint(task)}, found image files {_images_in(folder) or 'none'}"
        )
    log.debug("case %s: %s", folder.name, {k: v.name for k, v in found.items()})
    return found


def discover_cases(input_dir: Path) -> list[CaseSource]:
    """Every non-hidden sub-folder of ``input_dir`` is a case (id = folder name), sorted by id."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise SettingsError(f"input folder {input_dir}: expected a folder of case folders, found nothing there")
    cases, ignored = [], []
    for entry in sorted(input_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            check_case_id(entry.name, f"input folder {input_dir}")
            cases.append(CaseSource(case_id=entry.name, folder=entry))
        else:
            ignored.append(entry.name)
    if ignored:
        log.warning("input folder %s: %d file(s) outside case folders ignored: %s", input_dir, len(ignored),
                    ", ".join(ignored[:5]))
    if not cases:
        raise SettingsError(f"input folder {input_dir}: expected one sub-folder per case, found none")
    check_distinct([c.case_id for c in cases], f"input folder {input_dir}")
    return cases


def read_manifest(path: Path, task: TaskProfile) -> list[CaseSource]:
    """CSV with columns ``case_id,<slug>,…``; paths relative to the CSV's folder, empty = not given."""
    path = Path(path)
    _refuse_nul(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SettingsError(f"manifest {path}: cannot be read as CSV: {exc}") from None
    slugs = {s.slug for s in task.inputs}
    if MANIFEST_ID not in header:
        raise SettingsError(f"manifest {path}: expected a header row with {MANIFEST_ID!r} and socket columns "
                            f"{sorted(slugs)}, found {header or 'no rows'}")
    unknown = sorted(set(header) - slugs - {MANIFEST_ID})
    if unknown:
        raise SettingsError(f"manifest {path}: columns {unknown} are not input sockets of {task.name}; "
                            f"expected {MANIFEST_ID!r} and some of {sorted(slugs)}")
    cases: dict[str, CaseSource] = {}
    for n, row in enumerate(rows, start=2):
        if None in row:
            raise SettingsError(f"manifest {path} line {n}: expected {len(header)} columns, found more")
        row = {k.strip(): (v or "").strip() for k, v in row.items()}
        case_id = check_case_id(row.get(MANIFEST_ID, "").strip(), f"manifest {path} line {n}")
        if case_id in cases:
            raise SettingsError(f"manifest {path} line {n}: case id {case_id!r} is listed twice")
        given = {s: (path.parent / v) for s, v in row.items() if s in slugs and v}
        cases[case_id] = CaseSource(case_id=case_id, given=given)
    if not cases:
        raise SettingsError(f"manifest {path}: expected at least one case row, found none")
    check_distinct(list(cases), f"manifest {path}")
    return sorted(cases.values(), key=lambda c: c.case_id)


def _refuse_nul(path: Path) -> None:
    """NUL bytes (a binary file, UTF-16 text): Python's csv reads them, but no path or folder name may hold one."""
    data = read_bounded(path, MANIFEST_MAX_BYTES, "manifest", SettingsError, ResourceLimitError)
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise SettingsError(f"manifest {path} line {line}: expected CSV text, found a NUL byte (a binary or "
                            "UTF-16 file?)")


def _registration_hint(task: TaskProfile) -> str:
    reg = task.registration
    return f" or, to register them here, {' + '.join(reg.sources)}" if reg else ""


def _check_given(task: TaskProfile, case_id: str, given: dict[str, Path]) -> dict[str, Path]:
    missing = task.missing_inputs(given, allow_registration=True)
    if missing:
        raise MissingInputError(f"case {case_id}: {task.name} expected manifest paths for socket(s) "
                                f"{missing}{_registration_hint(task)}, found only {sorted(given)}")
    for slug, p in given.items():
        if p.exists():  # a device or FIFO named in a manifest is refused, not read
            check_regular_file(p, None, f"case {case_id}: socket {slug!r}", allow_folder=True)
        if not (p.is_file() or p.is_dir()):
            raise MissingInputError(f"case {case_id}: socket {slug!r} expected an image file or a DICOM "
                                    f"folder at {p}, found nothing")
    return dict(given)
