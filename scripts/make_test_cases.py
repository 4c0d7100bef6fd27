"""(Re)build the bundled example cases under test/: grand-challenge inputs, ground truth, and the
expected output of the demo weights.

    .venv/bin/python scripts/make_test_cases.py

test/input/<case>/            inputs.json + images/<slug>/<uuid>.mha (grand-challenge layout)
test/ground_truth/<case>/     images/mri-head-neck-segmentation/output.mha (the phantom's true mask)
test/expected_output/<case>/  images/mri-head-neck-segmentation/output.mha (inference.py, demo weights)

plus one bad-input case, test/input/bad-input-unregistered-mask/: the task-2 case with the pre-RT mask
(pre-RT grid) given as the registered one; test/expected_output/<it>/EXPECTED_ERROR names the error the
container must exit with (and /output must stay empty).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# held-out seeds (training uses 0…N-1): a task-2 case whose tumour extends beyond the box, a task-1 case
CASES = {"hntsmrg-task2-5100": ("hntsmrg-task2", 5100, {"beyond_box": True}),
         "hntsmrg-task1-5101": ("hntsmrg-task1", 5101, {})}
SIZE, SPACING = (96, 96, 40), (2.0, 2.0, 3.0)  # small, to keep the repository light
OUT_REL = Path("images/mri-head-neck-segmentation/output.mha")
BAD_CASE, BAD_FROM, BAD_ERROR = "bad-input-unregistered-mask", "hntsmrg-task2-5100", "GridMismatchError"


def make_bad_case() -> None:
    """Copy the task-2 case and put the unregistered pre-RT mask where the registered one belongs."""
    src, dst = REPO / "test/input" / BAD_FROM, REPO / "test/input" / BAD_CASE
    shutil.rmtree(dst, ignore_errors=True)
    shutil.rmtree(REPO / "test/expected_output" / BAD_CASE, ignore_errors=True)
    shutil.copytree(src, dst)
    (registered,) = (dst / "images/registered-pre-rt-head-neck-segmentation").glob("*.mha")
    (pre_rt,) = (dst / "images/pre-rt-head-neck-segmentation").glob("*.mha")
    shutil.copyfile(pre_rt, registered)
    marker = REPO / "test/expected_output" / BAD_CASE / "EXPECTED_ERROR"
    marker.parent.mkdir(parents=True)
    marker.write_text(BAD_ERROR + "\n")


def main() -> int:
    from hnseg.phantoms import make_mri_case, write_gc_case

    for name, (task, seed, forced) in CASES.items():
        case = make_mri_case(seed, name, size=SIZE, spacing=SPACING, **forced)
        for sub in ("input", "ground_truth", "expected_output"):
            shutil.rmtree(REPO / "test" / sub / name, ignore_errors=True)
        write_gc_case(case, REPO / "test" / "input" / name, task,
                      ground_truth_path=REPO / "test" / "ground_truth" / name / OUT_REL)
        subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(REPO / "test/input" / name),
                        "--output", str(REPO / "test/expected_output" / name), "--device", "cpu"], check=True)
        print(f"{name}: {case.info.get('beyond_box')=} {case.info.get('gtvp_vanished')=}")
    make_bad_case()
    return 0


if __name__ == "__main__":
    sys.exit(main())
