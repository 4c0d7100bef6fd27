"""The names ``hnseg batch`` itself keeps in its output folder, and the rule for case ids that follows.

::

    OUT/<case_id>/                      a finished case (report.json written last)
    OUT/.<case_id>.tmp-XXXX/            the case in progress (renamed to OUT/<case_id> when complete)
    OUT/.<case_id>.old-XXXX/            an older OUT/<case_id> moved aside while the new one is renamed in
    OUT/batch_summary.csv               the run's summary (batch_summary_shard-i-of-N.csv for a shard)
    OUT/.hnseg-batch.lock               the run lock (hnseg.batch.locks), holder's host / pid / start
    OUT/.hnseg-batch.plan.json          the plan the shards sharing the folder belong to
    OUT/.locks/<case_id>.lock           one lock per case

A case id is a folder name in ``OUT``: it must not start with '.', hold a path separator or NUL, or be
one of the summary names (compared case-insensitively, for case-insensitive file systems).
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from hnseg.errors import SettingsError

SUMMARY_FILE = "batch_summary.csv"
LOCK_FILE = ".hnseg-batch.lock"
PLAN_FILE = ".hnseg-batch.plan.json"
CASE_LOCK_DIR = ".locks"
TEMP_TAG, OLD_TAG = ".tmp-", ".old-"

_SUMMARY_RE = re.compile(r"^batch_summary(_shard-\d+-of-\d+)?\.csv$", re.IGNORECASE)


def summary_name(shard: tuple[int, int] | None) -> str:
    return SUMMARY_FILE if shard is None else f"batch_summary_shard-{shard[0]}-of-{shard[1]}.csv"


def temp_prefix(case_id: str) -> str:
    return f".{case_id}{TEMP_TAG}"


def old_prefix(case_id: str) -> str:
    return f".{case_id}{OLD_TAG}"


def temp_folders(output_dir: Path, case_id: str) -> list[Path]:
    """``OUT/.<case_id>.tmp-*``: the case in progress, or left by a process that died (see ``hnseg.batch.locks``)."""
    return sorted(Path(p) for p in glob.glob(str(Path(output_dir) / f"{glob.escape(temp_prefix(case_id))}*")))


def old_folders(output_dir: Path, case_id: str) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(Path(output_dir) / f"{glob.escape(old_prefix(case_id))}*")))


def check_case_id(case_id: str, where: str) -> str:
    """The case id if it can name ``OUT/<case_id>``; else a ``SettingsError`` naming it and ``where``."""
    if not case_id or case_id.startswith(".") or any(c in case_id for c in "/\\\0"):
        raise SettingsError(f"{where}: expected a case id usable as a folder name (no '/', '\\' or NUL, not "
                            f"starting with '.'), found {case_id!r}")
    if _SUMMARY_RE.match(case_id):
        raise SettingsError(f"{where}: case id {case_id!r} is a file name hnseg batch writes into the output "
                            f"folder itself ({SUMMARY_FILE}, batch_summary_shard-i-of-N.csv); rename the case")
    return case_id


def check_distinct(case_ids: list[str], where: str) -> None:
    """Two ids that differ only in letter case would share one folder on a case-insensitive file system."""
    seen: dict[str, str] = {}
    for case_id in case_ids:
        other = seen.setdefault(case_id.casefold(), case_id)
        if other != case_id:
            raise SettingsError(f"{where}: case ids {other!r} and {case_id!r} differ only in letter case; "
                                "expected ids that stay distinct on a case-insensitive file system")
