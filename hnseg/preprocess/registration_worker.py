"""The registration child process: ``python -m hnseg.preprocess.registration_worker WORK PARENT_PID``.

``hnseg.preprocess.registration.register_pre_to_mid`` starts it, so that elastix (minutes of C++ that a
Python signal handler cannot interrupt) runs in a process that can be killed. ``WORK`` is the parent's
private temporary folder: ``job.json`` (settings and the three grids) and ``fixed.npy``, ``moving.npy``,
``mask.npy`` in; ``out_image.npy``, ``out_mask.npy``, ``elastix/elastix.log`` and, last, ``result.json``
(``{"seconds": …}`` or ``{"error": {"name", "message"}}``) out. The parent removes the folder.

Signals: the parent decides. SIGTERM keeps its default action, so that the parent's SIGTERM ends the
child at once, even inside elastix; SIGINT is ignored, so that Ctrl-C, which a terminal sends to the
whole process group, reaches the parent only, which then stops the child (a child dying first would
look like a failed registration rather than an interrupted one). The child does
not outlive its parent: on Linux it asks the kernel for SIGKILL when the parent dies
(``prctl(PR_SET_PDEATHSIG)``, which also covers a parent killed by SIGKILL, where no clean-up code can
run), then checks that the parent has not already gone (``os.getppid()``). Elsewhere a daemon thread
polls ``os.getppid()`` (best effort: it runs only while elastix releases the GIL).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` ends (see the module docstring)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except OSError:
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _write_result(work: Path, result: dict) -> None:
    tmp = work / "result.json.part"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, work / "result.json")


def run(work: Path) -> dict:
    """The registration of the job in ``work``; returns ``result.json``'s content."""
    import numpy as np  # noqa: PLC0415 - after the signal set-up
    import SimpleITK as sitk  # noqa: PLC0415

    from hnseg.preprocess import registration as reg  # noqa: PLC0415

    job = json.loads((work / "job.json").read_text())
    settings = reg.RegistrationSettings.model_validate(job["settings"])
    arrays = {name: np.load(work / f"{name}.npy", allow_pickle=False) for name in ("fixed", "moving", "mask")}
    elastix_dir = work / "elastix"
    elastix_dir.mkdir()
    image, mask, seconds = reg._register_arrays(
        arrays["fixed"], reg._grid_image(job["fixed"]), arrays["moving"], reg._grid_image(job["moving"]),
        arrays["mask"], reg._grid_image(job["mask"]), settings, elastix_dir)
    np.save(work / "out_image.npy", sitk.GetArrayFromImage(image), allow_pickle=False)
    np.save(work / "out_mask.npy", sitk.GetArrayFromImage(mask), allow_pickle=False)
    return {"seconds": seconds}


def main(argv: list[str]) -> int:
    work, parent_pid = Path(argv[0]), int(argv[1])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent acts on Ctrl-C (see the module docstring)
    _die_with_parent(parent_pid)
    if hasattr(signal, "pthread_sigmask"):  # a blocked mask is inherited: the parent must be able to stop us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        result = run(work)
    except Exception as exc:  # reported to the parent, which raises RegistrationError
        from hnseg.errors import HnsegError  # noqa: PLC0415

        name = exc.name if isinstance(exc, HnsegError) else type(exc).__name__
        traceback.print_exc()  # into the child's log, read by the parent only when no result came
        _write_result(work, {"error": {"name": name, "message": str(exc)}})
        return 1
    _write_result(work, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
