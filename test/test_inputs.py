"""Bad grand-challenge inputs: each gives its NAMED error, exit code 2, the error name and the
offending socket/file on stderr, and nothing under the output folder.

Validation runs before weights are looked up, so no weights are needed. A handful of cases run the
real entry point (``inference.py``) in a subprocess; the rest call ``hnseg.cli.main`` in-process
(same code path after argv parsing, ~50x cheaper).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]

MID_T2 = "mid-rt-t2w-head-neck"
REG_MASK = "registered-pre-rt-head-neck-segmentation"
REG_T2 = "registered-pre-rt-head-neck"
PRE_T2 = "pre-rt-t2w-head-neck"
PRE_MASK = "pre-rt-head-neck-segmentation"

SIZE = (16, 16, 8)  # sitk x, y, z → numpy (8, 16, 16)
SPACING = (0.5, 0.5, 2.0)
ORIGIN = (-4.0, -4.0, 10.0)


# --- building inputs -----------------------------------------------------------------------------
def t2(values: np.ndarray | None = None, spacing=SPACING, origin=ORIGIN) -> sitk.Image:
    if values is None:
        rng = np.random.default_rng(0)
        values = rng.normal(100.0, 20.0, SIZE[::-1]).astype(np.float32)
    img = sitk.GetImageFromArray(values)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def mask(values: np.ndarray | None = None, spacing=SPACING, origin=ORIGIN) -> sitk.Image:
    if values is None:
        values = np.zeros(SIZE[::-1], np.uint8)
        values[2:5, 3:7, 3:7] = 1
        values[3:6, 9:12, 9:12] = 2
    img = sitk.GetImageFromArray(values)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def task2_sockets(**overrides) -> dict[str, object]:
    """The two required task-2 sockets (plus whatever ``overrides`` adds or replaces)."""
    sockets: dict[str, object] = {MID_T2: t2(), REG_MASK: mask()}
    for slug, value in overrides.items():
        sockets[slug.replace("_", "-")] = value
    return {k: v for k, v in sockets.items() if v is not None}


def write_case(
    in_dir: Path,
    sockets: dict[str, object],
    layout: str = "json",
    inputs_json: str | None = None,
) -> Path:
    """Write ``sockets`` (slug → sitk.Image | bytes | list of those | [] for an empty folder).

    layout: 'json' (``socket`` key), 'legacy' (``interface`` key), 'glob' (no inputs.json).
    ``inputs_json`` replaces the generated inputs.json text verbatim.
    """
    entries = []
    for slug, value in sockets.items():
        folder = in_dir / "images" / slug
        folder.mkdir(parents=True, exist_ok=True)
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            name = "x.mha" if i == 0 else f"x{i}.mha"
            if isinstance(v, bytes):
                (folder / name).write_bytes(v)
            else:
                sitk.WriteImage(v, str(folder / name))
        key = "interface" if layout == "legacy" else "socket"
        entries.append({key: {"slug": slug, "relative_path": f"images/{slug}",
                              "kind": "Image", "super_kind": "Image"}, "value": None})
    if inputs_json is not None:
        (in_dir / "inputs.json").write_text(inputs_json)
    elif layout != "glob":
        (in_dir / "inputs.json").write_text(json.dumps(entries))
    return in_dir


def bad_weights(tmp_path: Path) -> Path:
    """An explicit weights folder whose metadata is unusable: ``locate`` (which runs only after
    validation) raises WeightsError there, whatever baked or /opt/ml/model weights exist."""
    w = tmp_path / "badweights"
    w.mkdir()
    (w / "hnseg_weights.json").write_text("{}")
    return w


def nothing_written(out_dir: Path) -> bool:
    return not out_dir.exists() or not any(out_dir.rglob("*"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HNSEG_")}


# --- running -------------------------------------------------------------------------------------
@dataclass
class Result:
    rc: int
    stderr: str


def run_subprocess(in_dir: Path, out_dir: Path, weights: Path, extra: list[str]) -> Result:
    cmd = [sys.executable, str(REPO / "inference.py"), "--input", str(in_dir), "--output", str(out_dir),
           "--weights", str(weights), "--device", "cpu", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=REPO, timeout=120)
    return Result(p.returncode, p.stderr)


def run_inprocess(in_dir: Path, out_dir: Path, weights: Path, extra: list[str], capsys) -> Result:
    capsys.readouterr()
    rc = cli_main(["predict", "--input", str(in_dir), "--output", str(out_dir),
                   "--weights", str(weights), "--device", "cpu", *extra])
    return Result(rc, capsys.readouterr().err)


# --- the cases -----------------------------------------------------------------------------------
def nan_t2() -> sitk.Image:
    a = sitk.GetArrayFromImage(t2()).copy()
    a[3, 4, 5] = np.nan
    return t2(a)


def inf_t2() -> sitk.Image:
    a = sitk.GetArrayFromImage(t2()).copy()
    a[1, 2, 3] = np.inf
    a[6, 7, 8] = -np.inf
    return t2(a)


def image_2d() -> sitk.Image:
    img = sitk.GetImageFromArray(np.ones((16, 16), np.float32))
    img.SetSpacing((0.5, 0.5))
    return img


def image_4d() -> sitk.Image:
    img = sitk.Image([16, 16, 8, 2], sitk.sitkFloat32)
    img.SetSpacing((0.5, 0.5, 2.0, 1.0))
    return img


def vector_image() -> sitk.Image:
    img = sitk.GetImageFromArray(np.ones((8, 16, 16, 2), np.float32), isVector=True)
    img.SetSpacing(SPACING)
    return img


def label3_mask() -> sitk.Image:
    a = sitk.GetArrayFromImage(mask()).copy()
    a[0, 0, 0] = 3
    return mask(a)


@dataclass
class Bad:
    id: str
    sockets: Callable[[], dict[str, object]]
    error: str
    must_mention: tuple[str, ...]  # substrings of the error line (socket slugs, file names, facts)
    extra: list[str] = field(default_factory=list)
    layout: str = "json"
    inputs_json: str | None = None
    subprocess: bool = False


CASES = [
    Bad("missing-required-socket", lambda: {MID_T2: t2()}, "MissingInputError",
        (REG_MASK, "hntsmrg-task2"), extra=["--task", "hntsmrg-task2"], subprocess=True),
    Bad("two-files-in-one-socket", lambda: task2_sockets(**{REG_MASK: [mask(), mask()]}),
        "AmbiguousInputError", (REG_MASK, "x.mha", "x1.mha", "found 2")),
    Bad("unreadable-file", lambda: task2_sockets(**{MID_T2: b"this is not an image\x00\x01\x02" * 10}),
        "UnreadableImageError", (MID_T2, str(Path("images") / MID_T2 / "x.mha")), subprocess=True),
    Bad("grid-origin-shifted-1mm",
        lambda: task2_sockets(**{REG_MASK: mask(origin=(ORIGIN[0] + 1.0, ORIGIN[1], ORIGIN[2]))}),
        "GridMismatchError", (REG_MASK, MID_T2, "origin differ", "origin (-3, -4, 10)", "origin (-4, -4, 10)"),
        subprocess=True),
    Bad("grid-spacing-differs", lambda: task2_sockets(**{REG_MASK: mask(spacing=(0.5, 0.5, 2.5))}),
        "GridMismatchError", (REG_MASK, MID_T2, "spacing differ", "spacing (0.5, 0.5, 2.5)")),
    Bad("float-mask",
        lambda: task2_sockets(**{REG_MASK: mask(sitk.GetArrayFromImage(mask()).astype(np.float32))}),
        "MaskLabelError", (REG_MASK, "32-bit float", "[0, 1, 2]")),
    Bad("mask-label-3", lambda: task2_sockets(**{REG_MASK: label3_mask()}), "MaskLabelError",
        (REG_MASK, "found [3]", "[0, 1, 2]")),
    Bad("nan-in-image", lambda: task2_sockets(**{MID_T2: nan_t2()}), "NonFiniteImageError",
        (MID_T2, "1 NaN/Inf voxel", "z,y,x = (3, 4, 5)"), subprocess=True),
    Bad("inf-in-image", lambda: task2_sockets(**{MID_T2: inf_t2()}), "NonFiniteImageError",
        (MID_T2, "2 NaN/Inf voxel", "z,y,x = (1, 2, 3)")),
    Bad("optional-socket-nan", lambda: task2_sockets(**{REG_T2: nan_t2()}), "NonFiniteImageError",
        (REG_T2,)),
    Bad("2d-image", lambda: task2_sockets(**{MID_T2: image_2d()}), "ImageDimensionError",
        (MID_T2, "found 2D")),
    Bad("4d-image", lambda: task2_sockets(**{MID_T2: image_4d()}), "ImageDimensionError",
        (MID_T2, "found 4D")),
    Bad("vector-image", lambda: task2_sockets(**{MID_T2: vector_image()}), "ImageDimensionError",
        (MID_T2, "2 component(s)")),
    Bad("inputs-json-invalid", task2_sockets, "InputsJsonError", ("inputs.json", "invalid JSON"),
        inputs_json='[{"socket": {"slug": ', subprocess=True),
    Bad("inputs-json-dict", task2_sockets, "InputsJsonError", ("inputs.json", "found dict"),
        inputs_json=json.dumps({"socket": {"slug": MID_T2}})),
    Bad("inputs-json-entry-without-slug", task2_sockets, "InputsJsonError",
        ("inputs.json", "entry 1", "'slug'"),
        inputs_json=json.dumps([{"socket": {"slug": MID_T2, "relative_path": f"images/{MID_T2}"}},
                                {"socket": {"relative_path": f"images/{REG_MASK}"}}])),
    Bad("inputs-json-empty-socket-folder", lambda: task2_sockets(**{REG_T2: []}), "MissingInputError",
        (REG_T2, "inputs.json lists it")),
    Bad("no-matching-task", lambda: {REG_T2: t2()}, "TaskSelectionError",
        ("no task matches", REG_T2, "hntsmrg-task1", "hntsmrg-task2")),
    Bad("unknown-task-flag", task2_sockets, "TaskSelectionError",
        ("unknown task 'hntsmrg-task9'", "hntsmrg-task1"), extra=["--task", "hntsmrg-task9"],
        subprocess=True),
]


def _check_failure(res: Result, case: Bad, out_dir: Path) -> None:
    assert res.rc == 2, f"exit code {res.rc}, stderr:\n{res.stderr}"
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{case.error}: ")]
    assert lines, f"no '{case.error}: ' line on stderr:\n{res.stderr}"
    line = lines[-1]
    for needle in case.must_mention:
        assert needle in line, f"{needle!r} not in error line: {line}"
    assert "Traceback" not in res.stderr
    assert nothing_written(out_dir), f"files written under {out_dir}: {list(out_dir.rglob('*'))}"


@pytest.fixture(autouse=True)
def _no_hnseg_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("HNSEG_"):
            monkeypatch.delenv(k)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_named_error(case: Bad, tmp_path, capsys):
    in_dir = write_case(tmp_path / "in", case.sockets(), case.layout, case.inputs_json)
    out_dir = tmp_path / "out"
    weights = tmp_path / "noweights"
    if case.subprocess:
        res = run_subprocess(in_dir, out_dir, weights, case.extra)
    else:
        res = run_inprocess(in_dir, out_dir, weights, case.extra, capsys)
    _check_failure(res, case, out_dir)


def test_existing_empty_output_folder_stays_empty(tmp_path, capsys):
    in_dir = write_case(tmp_path / "in", task2_sockets(**{REG_MASK: label3_mask()}))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = run_inprocess(in_dir, out_dir, tmp_path / "noweights", [], capsys)
    assert res.rc == 2 and "MaskLabelError: " in res.stderr
    assert out_dir.is_dir() and not any(out_dir.iterdir())


def test_missing_input_folder(tmp_path, capsys):
    res = run_inprocess(tmp_path / "nope", tmp_path / "out", tmp_path / "noweights", [], capsys)
    assert res.rc == 2
    assert f"MissingInputError: input folder {tmp_path / 'nope'}" in res.stderr
    assert nothing_written(tmp_path / "out")


# --- valid inputs get past validation (and then fail on the weights) ------------------------------
VALID_LAYOUTS = [
    pytest.param("legacy", True, id="legacy-interface-key-subprocess"),
    pytest.param("glob", True, id="glob-fallback-subprocess"),
    pytest.param("json", False, id="socket-key"),
    pytest.param("legacy", False, id="legacy-interface-key"),
    pytest.param("glob", False, id="glob-fallback"),
]


@pytest.mark.parametrize("layout, via_subprocess", VALID_LAYOUTS)
def test_valid_inputs_pass_validation(layout, via_subprocess, tmp_path, capsys):
    sockets = task2_sockets(**{REG_T2: t2(), PRE_T2: t2(origin=(0.0, 0.0, 0.0)),
                               PRE_MASK: mask(origin=(0.0, 0.0, 0.0))})
    in_dir = write_case(tmp_path / "in", sockets, layout)
    assert (in_dir / "inputs.json").exists() == (layout != "glob")
    out_dir = tmp_path / "out"
    weights = bad_weights(tmp_path)
    if via_subprocess:
        res = run_subprocess(in_dir, out_dir, weights, [])
    else:
        res = run_inprocess(in_dir, out_dir, weights, [], capsys)
    assert res.rc == 2, res.stderr
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("WeightsError: ")]
    assert line, f"expected WeightsError (validation passed), got:\n{res.stderr}"
    assert str(weights / "hnseg_weights.json") in line[-1]
    assert nothing_written(out_dir)


def test_valid_inputs_without_weights_report_where_they_looked(tmp_path):
    """No weights anywhere (explicit, /opt/ml/model, baked): WeightsError lists every candidate."""
    from hnseg.errors import WeightsError
    from hnseg.pipeline import run_grand_challenge
    from hnseg.settings import RunSettings

    in_dir = write_case(tmp_path / "in", task2_sockets(), "legacy")
    settings = RunSettings(input_dir=in_dir, output_dir=tmp_path / "out", weights_dir=tmp_path / "noweights",
                           model_dir=tmp_path / "nomodel", baked_weights_dir=tmp_path / "nobaked")
    with pytest.raises(WeightsError) as info:
        run_grand_challenge(settings)
    line = str(info.value)
    assert line.startswith("weights for hntsmrg-task2: expected hnseg_weights.json")
    for tried in (tmp_path / "noweights", tmp_path / "noweights" / "hntsmrg-task2",
                  tmp_path / "nomodel" / "hntsmrg-task2", tmp_path / "nobaked" / "hntsmrg-task2"):
        assert str(tried) in line
    assert nothing_written(tmp_path / "out")


def test_unknown_sockets_are_ignored_not_fatal(tmp_path, capsys):
    sockets = task2_sockets(**{"some-other-socket": b"garbage"})
    in_dir = write_case(tmp_path / "in", sockets)
    res = run_inprocess(in_dir, tmp_path / "out", bad_weights(tmp_path), [], capsys)
    assert "WeightsError: " in res.stderr, res.stderr


def test_grid_mismatch_names_every_difference(tmp_path, capsys):
    moved = mask(spacing=(0.5, 0.5, 2.5), origin=(ORIGIN[0] + 1.0, ORIGIN[1], ORIGIN[2]))
    in_dir = write_case(tmp_path / "in", task2_sockets(**{REG_MASK: moved}))
    res = run_inprocess(in_dir, tmp_path / "out", tmp_path / "noweights", [], capsys)
    assert res.rc == 2 and "GridMismatchError: " in res.stderr
    assert nothing_written(tmp_path / "out")
    assert "spacing/origin differ(s)" in res.stderr


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
def test_truncated_image_is_a_named_error_not_garbage(suffix, tmp_path):
    """ITK reads a truncated NIfTI silently (the missing voxels are garbage); hnseg refuses it, and a
    truncated MHA's error says the file exists instead of ITK's stale 'No such file or directory'."""
    import SimpleITK as sitk

    from hnseg.errors import UnreadableImageError
    from hnseg.io.read import read_image

    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(20 * 32 * 32, dtype=np.float32).reshape(20, 32, 32)),
                    str(path), suffix != ".nii")
    assert read_image(path, "head-neck-ct").GetSize() == (32, 32, 20)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError) as err:
        read_image(path, "head-neck-ct")
    msg = str(err.value)
    assert msg.startswith(f"head-neck-ct ({path}): expected ")
    assert {".nii.gz": "truncated one", ".nii": "the file holds", ".mha": "the file exists"}[suffix] in msg, msg
