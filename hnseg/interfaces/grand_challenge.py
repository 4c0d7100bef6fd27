"""Find the file behind each input socket of a grand-challenge case folder.

Grand-challenge writes ``/input/inputs.json`` (a list of socket values; the socket is under the key
``socket`` in new templates, ``interface`` in legacy ones) and puts each image in
``/input/<relative_path>/``. Older templates only glob ``/input/images/<slug>/``; we fall back to that
when ``inputs.json`` is absent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hnseg.errors import AmbiguousInputError, InputsJsonError, MissingInputError
from hnseg.io.read import is_image_file

log = logging.getLogger(__name__)

INPUTS_JSON = "inputs.json"


def _socket_folders_from_json(input_dir: Path) -> dict[str, Path]:
    path = input_dir / INPUTS_JSON
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputsJsonError(f"{path}: cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputsJsonError(
            f"{path}: expected a JSON list of socket values, found invalid JSON ({exc})"
        ) from None
    if not isinstance(entries, list):
        raise InputsJsonError(
            f"{path}: expected a JSON list of socket values, found {type(entries).__name__}"
        )
    folders: dict[str, Path] = {}
    for i, entry in enumerate(entries):
        socket = entry.get("socket", entry.get("interface")) if isinstance(entry, dict) else None
        if not isinstance(socket, dict) or not isinstance(socket.get("slug"), str):
            raise InputsJsonError(
                f"{path}: entry {i} expected an object with 'socket' (or legacy 'interface') holding "
                f"a 'slug', found {json.dumps(entry)[:200]}"
            )
        slug = socket["slug"]
        rel = socket.get("relative_path") or f"images/{slug}"
        if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise InputsJsonError(
                f"{path}: socket {slug!r} expected a relative_path inside the input folder, found {rel!r}"
            )
        if slug in folders:
            raise InputsJsonError(f"{path}: socket {slug!r} is listed twice")
        folders[slug] = input_dir / rel
    return folders


def _socket_folders_from_glob(input_dir: Path) -> dict[str, Path]:
    images = input_dir / "images"
    if not images.is_dir():
        return {}
    return {d.name: d for d in sorted(images.iterdir()) if d.is_dir()}


def _single_image(slug: str, folder: Path) -> Path | None:
    if folder.is_file():  # a relative_path may name the file itself
        return folder
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if len(files) > 1:
        raise AmbiguousInputError(
            f"socket {slug!r} ({folder}): expected exactly one image file, found {len(files)}: "
            + ", ".join(p.name for p in files)
        )
    return files[0] if files else None


def discover_inputs(input_dir: str | Path) -> dict[str, Path]:
    """Map every socket slug present in ``input_dir`` to its single image file."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise MissingInputError(f"input folder {input_dir}: expected a folder, found nothing there")
    if (input_dir / INPUTS_JSON).exists():
        folders = _socket_folders_from_json(input_dir)
        source = INPUTS_JSON
    else:
        folders = _socket_folders_from_glob(input_dir)
        source = "images/<slug>/ folders"
    found: dict[str, Path] = {}
    for slug, folder in folders.items():
        image = _single_image(slug, folder)
        if image is None:
            if source == INPUTS_JSON:
                raise MissingInputError(
                    f"socket {slug!r}: inputs.json lists it, expected one image in {folder}, found none"
                )
            continue
        found[slug] = image
    log.info("inputs from %s: %s", source, ", ".join(sorted(found)) or "none")
    return found
