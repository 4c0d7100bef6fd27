"""(Re)build the bundled example cases under test/: grand-challenge inputs, ground truth, and the
expected output of the demo weights.

    .venv/bin/python scripts/make_test_cases.py [CASE ...]   (default: all)

test/input/<case>/            inputs.json + images/<slug>/<uuid>.mha (grand-challenge layout)
test/ground_truth/<case>/     images/<output slug>/output.mha (the phantom's truth: label map or 4D stack)
test/expected_output/<case>/  images/<output slug>/output.mha (inference.py, demo weights)
test/run_env/<case>.env       HNSEG_TASK=<task> where the inputs fit several tasks (SegRap 1 and 2);
                              test.sh hands it to the container, test_bundled_cases.py to inference.py

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
         "hntsmrg-task1-5101": ("hntsmrg-task1", 5101, {}),
         "segrap-task2-9500": ("segrap-task2", 9500, {}),  # CT held-out seeds: 9000+
         "segrap-task1-9501": ("segrap-task1", 9501, {}),
         "npc-targets-9502": ("npc-targets", 9502, {})}
SIZE, SPACING = (96, 96, 40), (2.0, 2.0, 3.0)  # small, to keep the repository light
CT_SIZE = (112, 112, 48)  # the CT phantom's field of view cropped (1.5 × 1.5 × 3 mm) to stay light
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


def output_rel(task: str) -> Path:
    """The case's image output: the task's label-map or binary-stack socket."""
    from hnseg.tasks import get_task

    (slug,) = [o.slug for o in get_task(task).image_outputs]
    return Path("images") / slug / "output.mha"


def ambiguous(task: str) -> bool:
    """Whether the task's input sockets also fit another task (then it must be named)."""
    from hnseg.tasks import TASKS

    slugs = set(TASKS[task].required_slugs)
    return any(t != task and set(p.required_slugs) == slugs for t, p in TASKS.items())


def make_case(name: str, task: str, seed: int, forced: dict) -> None:
    from hnseg.io.write import write_image_atomic
    from hnseg.phantoms import make_mri_case, write_gc_case
    from hnseg.phantoms.ct_anatomy import make_ct_case
    from hnseg.phantoms.ct_layouts import CT_TASKS, ground_truth_stack
    from hnseg.phantoms.ct_layouts import write_gc_case as write_ct_gc_case

    for sub in ("input", "ground_truth", "expected_output"):
        shutil.rmtree(REPO / "test" / sub / name, ignore_errors=True)
    env_file = REPO / "test/run_env" / f"{name}.env"
    env_file.unlink(missing_ok=True)
    gt = REPO / "test" / "ground_truth" / name / output_rel(task)
    if task in CT_TASKS:
        case = make_ct_case(seed, name, size=CT_SIZE, **forced)
        write_ct_gc_case(case, REPO / "test" / "input" / name, task)
        write_image_atomic(ground_truth_stack(case, task), gt)
    else:
        case = make_mri_case(seed, name, size=SIZE, spacing=SPACING, **forced)
        write_gc_case(case, REPO / "test" / "input" / name, task, ground_truth_path=gt)
    cmd = [sys.executable, str(REPO / "inference.py"), "--input", str(REPO / "test/input" / name),
           "--output", str(REPO / "test/expected_output" / name), "--device", "cpu"]
    if ambiguous(task):
        env_file.parent.mkdir(exist_ok=True)
        env_file.write_text(f"HNSEG_TASK={task}\n")
        cmd += ["--task", task]
    subprocess.run(cmd, check=True)
    print(f"{name}: {case.info.get('beyond_box')=} {case.info.get('gtvp_vanished')=} "
          f"{case.info.get('t_stage')=}")


def main(argv: list[str]) -> int:
    unknown = set(argv) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; bundled cases: {sorted(CASES)}")
    for name, (task, seed, forced) in CASES.items():
        if not argv or name in argv:
            make_case(name, task, seed, forced)
    if not argv or BAD_FROM in argv:
        make_bad_case()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
