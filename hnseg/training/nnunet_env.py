"""nnU-Net reads its folders from environment variables at import time; set them before importing."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def set_nnunet_dirs(work: Path) -> dict[str, Path]:
    work = Path(work).resolve()
    dirs = {
        "nnUNet_raw": work / "nnUNet_raw",
        "nnUNet_preprocessed": work / "nnUNet_preprocessed",
        "nnUNet_results": work / "nnUNet_results",
    }
    if any(m.startswith("nnunetv2") for m in sys.modules) and os.environ.get("nnUNet_raw") != str(dirs["nnUNet_raw"]):
        raise RuntimeError("nnunetv2 was imported before its folders were set; run training in a fresh process")
    for k, v in dirs.items():
        v.mkdir(parents=True, exist_ok=True)
        os.environ[k] = str(v)
    return dirs
