"""Shared fixtures. The real HNTS-MRG masks live in ../shared beside the repository (never skipped:
a missing folder is a broken checkout and fails loudly)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_hntsmrg_dir() -> Path:
    root = Path(os.environ.get("HNSEG_SHARED", REPO.parent / "shared"))
    d = root / "data" / "hntsmrg2024"
    if not d.is_dir():
        raise FileNotFoundError(f"real HNTS-MRG masks not found at {d} (set HNSEG_SHARED)")
    return d


@pytest.fixture(scope="session")
def hntsmrg_real() -> Path:
    return shared_hntsmrg_dir()


# -- DICOM outputs: one `hnseg batch` run over a phantom MR written as a DICOM series in three layouts
DICOM_LAYOUTS = ("axial", "coronal", "flipped-rows")


@pytest.fixture(scope="session")
def dicom_batch(tmp_path_factory) -> tuple[Path, Path]:
    """(input folder, output folder) of ``hnseg batch`` (hntsmrg-task1 demo weights, fold 0, no TTA,
    CPU) over cases ``axial``, ``coronal`` and ``flipped-rows``: the same phantom T2 as a DICOM MR
    series stored in each layout (``hnseg.phantoms.dicom``). Used by test_dicom_outputs.py and
    test_dicom_conformance.py (one run for both)."""
    import SimpleITK as sitk

    from hnseg.cli import main
    from hnseg.phantoms import make_mri_case
    from hnseg.phantoms.dicom import write_dicom_series
    from hnseg.tasks.hntsmrg import PRE_T2

    root = tmp_path_factory.mktemp("dicom_out")
    t2 = sitk.Cast(sitk.Round(make_mri_case(5300, "d", size=(96, 96, 40), spacing=(2.0, 2.0, 3.0)).pre_t2),
                   sitk.sitkInt16)
    for o in DICOM_LAYOUTS:
        write_dicom_series(t2, root / "in" / o / PRE_T2, "MR", orientation=o, series_description=f"T2 {o}",
                           uids={"seed": f"dicom-out-{o}"})
    rc = main(["batch", "-i", str(root / "in"), "-o", str(root / "out"), "--task", "hntsmrg-task1",
               "--weights", str(REPO / "weights" / "hntsmrg-task1"), "--device", "cpu", "--tta", "off",
               "--folds", "0", "--no-qa"])
    assert rc == 0
    return root / "in", root / "out"
