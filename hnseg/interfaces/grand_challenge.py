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
from hnseg.io.read import IMAGE_SUFFIXES
from hnseg.io.safe_paths import check_inside, check_regular_file, read_bounded

log = logging.getLogger(__name__)

INPUTS_JSON = "inputs.json"
MAX_JSON_BYTES = 1 << 20  # grand-challenge's inputs.json of an image-only case is a few kB
MAX_JSON_DEPTH = 32


def json_depth(value: object) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion limit to hit)."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [v for item in level if isinstance(item, (list, dict))
                 for v in (item.values() if isinstance(item, dict) else item)]
    return depth - 1


def read_json_bounded(path: Path, error: type[Exception], max_bytes: int = MAX_JSON_BYTES,
                      max_depth: int = MAX_JSON_DEPTH) -> object:
    """A JSON file of at most ``max_bytes`` and ``max_depth`` levels; anything else is ``error``."""
    raw = read_bounded(path, max_bytes, "JSON file", error)
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: expected UTF-8 JSON, found undecodable bytes ({exc.reason} at {exc.start})") from None
    except RecursionError:
        raise error(f"{path}: expected JSON nested at most {max_depth} levels, found far deeper") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: expected a JSON list of socket values, found invalid JSON ({exc})") from None
    if json_depth(value) > max_depth:
        raise error(f"{path}: expected JSON nested at most {max_depth} levels, found {json_depth(value)}")
    return value


def _socket_folders_from_json(input_dir: Path) -> dict[str, Path]:
    path = input_dir / INPUTS_JSON
    check_regular_file(path, input_dir, INPUTS_JSON)
    entries = read_json_bounded(path, InputsJsonError)
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


def _image_name(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and name.endswith(IMAGE_SUFFIXES)


def _single_image(slug: str, folder: Path, root: Path) -> Path | None:
    """The socket's one image file. Links may not lead out of ``root``; an image-named entry that is
    not a regular file (a FIFO, a device, a folder) is refused, not skipped."""
    label = f"socket {slug!r}"
    check_inside(folder, root, label)
    if folder.is_file() or (folder.exists() and not folder.is_dir()):  # a relative_path may name the file
        check_regular_file(folder, root, label)
        return folder
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if _image_name(p))
    for p in files:
        check_regular_file(p, root, f"{label} ({p})")
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
        image = _single_image(slug, folder, input_dir)
        if image is None:
            if source == INPUTS_JSON:
                raise MissingInputError(
                    f"socket {slug!r}: inputs.json lists it, expected one image in {folder}, found none"
                )
            continue
        found[slug] = image
    log.info("inputs from %s: %s", source, ", ".join(sorted(found)) or "none")
    return found
