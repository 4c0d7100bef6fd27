"""Write a case's outputs to the task's grand-challenge output sockets (atomically)."""

from __future__ import annotations

import logging
from pathlib import Path

import SimpleITK as sitk

from hnseg.io.write import check_target, created_folders, write_image_atomic, write_json_atomic
from hnseg.tasks import TaskProfile

log = logging.getLogger(__name__)


def output_path(output_dir: Path, task: TaskProfile, slug: str) -> Path:
    socket = next(o for o in task.outputs if o.slug == slug)
    if socket.kind == "json":
        return Path(output_dir) / f"{socket.relative_path}.json"
    return Path(output_dir) / socket.relative_path / socket.filename


def check_output_targets(output_dir: Path, task: TaskProfile) -> None:
    """Before compute: every output file of the task can be placed (no file where a folder goes)."""
    for socket in task.outputs:
        check_target(output_path(output_dir, task, socket.slug), output_dir)


def write_outputs(output_dir: Path, task: TaskProfile, values: dict[str, object]) -> list[Path]:
    """``values`` maps output slug → SimpleITK image (label map / stack) or JSON-able value. All or
    nothing: when one output cannot be written, those written before it and the folders made for them
    are removed again."""
    missing = {o.slug for o in task.outputs} - set(values)
    if missing:
        raise ValueError(f"outputs {sorted(missing)} were not produced")
    output_dir = Path(output_dir)
    written: list[Path] = []
    made: list[Path] = []
    try:
        for socket in task.outputs:
            path = output_path(output_dir, task, socket.slug)
            made += created_folders(path, output_dir)
            value = values[socket.slug]
            if socket.kind == "json":
                write_json_atomic(value, path)
            else:
                assert isinstance(value, sitk.Image)
                write_image_atomic(value, path)
            log.info("wrote %s", path)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in sorted(set(made), key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return written
