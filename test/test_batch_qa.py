"""``hnseg batch`` increment 3: the per-case QA sheet ``qa.png`` (hnseg.batch.qa) and ``--no-qa``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from hnseg.batch.qa import (
    LABEL_PX, PANEL_PX, QA_FILE, Layout, centre_slices, colour, grid_shape, header_text, qa_sheet, window,
)
from hnseg.cli import main
from hnseg.phantoms import make_mri_case, write_hntsmrg_release
from test_batch import FAST

SHAPE = (40, 64, 64)  # (z, y, x); spacing (x, y, z) = (1, 1, 3) mm
SPACING = (1.0, 1.0, 3.0)
PAD = 2  # pixels between a panel's slot and its axes


def _image() -> sitk.Image:
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(100.0, 20.0, SHAPE).astype(np.float32))
    image.SetSpacing(SPACING)
    return image


def _cube(z: slice, y: slice, x: slice) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[z, y, x] = True
    return mask


A = _cube(slice(10, 20), slice(10, 25), slice(30, 50))  # 10 slices × 15 × 20 voxels = 9 cc
B = _cube(slice(25, 35), slice(40, 55), slice(5, 20))


def _sheet(tmp_path: Path, a: np.ndarray, name: str = "qa.png") -> np.ndarray:
    structures = {"A": a, "B": B, "C": np.zeros(SHAPE, dtype=bool)}
    path = qa_sheet(_image(), structures, tmp_path / name, "synthetic · test")
    assert path == tmp_path / name and path.is_file()
    return imread(path)[..., :3]


def _colour_pixels(rgb: np.ndarray, index: int) -> np.ndarray:
    """(row, column) of the pixels close to structure ``index``'s contour colour."""
    return np.argwhere(np.abs(rgb - np.array(to_rgb(colour(index)))).max(axis=-1) < 0.12)


def _in_panel(pixels: np.ndarray, header_px: int, row: int, column: int) -> np.ndarray:
    """The pixels inside one panel, as coordinates relative to its axes' top-left corner."""
    top, left = header_px + row * PANEL_PX + PAD, LABEL_PX + column * PANEL_PX + PAD
    size = PANEL_PX - 2 * PAD
    rel = pixels - [top, left]
    return rel[(rel >= 0).all(axis=1) & (rel < size).all(axis=1)]


def test_sheet_size_is_rows_times_three_panels(tmp_path):
    rgb = _sheet(tmp_path, A)
    header = 2 * 22 + 10  # title + "not found: C"
    assert rgb.shape[:2] == (header + 2 * PANEL_PX, LABEL_PX + 3 * PANEL_PX) == (454, 730)
    assert Layout(1, 2, 2).size_px == (730, 454)


def test_contours_are_drawn_where_the_cubes_are(tmp_path):
    rgb = _sheet(tmp_path, A)
    header, size = 2 * 22 + 10, PANEL_PX - 2 * PAD
    red, green = _colour_pixels(rgb, 0), _colour_pixels(rgb, 1)
    # the colour bar beside the label and the three panels of row 0; nothing red in row 1's panels
    assert len(_in_panel(red, header, 0, 0)) > 100 and len(_in_panel(green, header, 1, 0)) > 100
    assert len(_in_panel(red, header, 1, 0)) == 0 and len(_in_panel(green, header, 0, 2)) == 0
    # axial (64 × 64 mm fills the panel): x 30–50 mm, y 10–25 mm from the top (anterior up)
    axial = _in_panel(red, header, 0, 0)
    mm = lambda px: px * 64.0 / size  # noqa: E731
    assert mm(axial[:, 1].min()) == pytest.approx(30, abs=2) and mm(axial[:, 1].max()) == pytest.approx(50, abs=2)
    assert mm(axial[:, 0].min()) == pytest.approx(10, abs=2) and mm(axial[:, 0].max()) == pytest.approx(25, abs=2)
    # coronal (z: 40 slices × 3 mm = 120 mm fill the height): z 30–60 mm, superior up
    coronal = _in_panel(red, header, 0, 1)
    z_mm = 120.0 - coronal[:, 0] * 120.0 / size
    assert z_mm.min() == pytest.approx(30, abs=3) and z_mm.max() == pytest.approx(60, abs=3)
    # sagittal: y (anterior left) 10–25 mm, centred horizontally in the 120 mm wide field
    sagittal = _in_panel(red, header, 0, 2)
    y_mm = sagittal[:, 1] * 120.0 / size - (120.0 - 64.0) / 2
    assert y_mm.min() == pytest.approx(10, abs=3) and y_mm.max() == pytest.approx(25, abs=3)


def test_moving_a_structure_changes_the_sheet(tmp_path):
    first = _sheet(tmp_path, A, "a.png")
    assert np.array_equal(first, _sheet(tmp_path, A, "again.png"))  # deterministic
    moved = _sheet(tmp_path, _cube(slice(10, 20), slice(40, 55), slice(30, 50)), "moved.png")
    assert not np.array_equal(first, moved)
    header = 2 * 22 + 10
    rows = lambda rgb: _in_panel(_colour_pixels(rgb, 0), header, 0, 0)[:, 0]  # noqa: E731
    assert rows(moved).mean() - rows(first).mean() == pytest.approx(30 * (PANEL_PX - 2 * PAD) / 64, abs=6)


def test_empty_structures_are_listed_as_not_found():
    assert header_text("case · task", ["C"], 710) == ["case · task", "not found: C"]
    assert header_text("case · task", [], 710) == ["case · task"]
    names = [f"OAR_{i:02d}" for i in range(45)]
    lines = header_text("t", names, 710)
    assert len(lines) > 2 and lines[1].startswith("not found: OAR_00")
    assert " ".join(lines[1:]).replace(", ", ",").split(",")[-1] == "OAR_44"


def test_many_structures_wrap_into_groups_of_columns():
    assert grid_shape(1) == (1, 1) and grid_shape(20) == (1, 20)
    assert grid_shape(21) == (2, 11) and grid_shape(45) == (3, 15)
    width, height = Layout(*grid_shape(45), 1).size_px
    assert width == 3 * (LABEL_PX + 3 * PANEL_PX) and height == 32 + 15 * PANEL_PX


def test_centre_slice_of_a_bilateral_structure_holds_the_structure():
    both = _cube(slice(10, 14), slice(20, 30), slice(2, 8)) | _cube(slice(10, 14), slice(20, 30), slice(56, 62))
    z, y, x = centre_slices(both)
    assert both[z].any() and both[:, y].any() and both[:, :, x].any()
    assert x in (7, 56)  # the centre (x = 31.5) lies between the two parts
    assert centre_slices(A) == (14, 17, 39)  # ties go to the lower slice


def test_grey_window_is_the_1st_to_99th_percentile(tmp_path):
    assert window(np.arange(101, dtype=np.float32)) == pytest.approx((1.0, 99.0))
    assert window(np.full((4, 4, 4), 7.0)) == (7.0, 8.0)  # a flat image still gets a window
    rgb = _sheet(tmp_path, A)
    panel = rgb[54 + PAD + 10: 54 + PANEL_PX - 10, LABEL_PX + 10: LABEL_PX + PANEL_PX - 10]  # axial, row 0
    grey = panel[np.ptp(panel, axis=-1) < 0.02].mean(axis=-1)
    assert 0.4 < grey.mean() < 0.6 and (grey > 0.97).mean() < 0.05 and (grey < 0.03).mean() < 0.05


def test_a_structure_filling_its_slice_draws_without_warnings(tmp_path):
    full = np.zeros(SHAPE, dtype=bool)
    full[:3] = True  # every axial slice through it is filled: no edge there
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = qa_sheet(_image(), {"body": full}, tmp_path / "full.png", "t")
    assert imread(path).shape[:2] == (32 + PANEL_PX, LABEL_PX + 3 * PANEL_PX)


def test_mask_on_another_grid_is_refused(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        qa_sheet(_image(), {"A": np.ones((4, 4, 4), dtype=bool)}, tmp_path / "x.png", "t")


# -- through hnseg batch ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_case(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qa") / "in"
    write_hntsmrg_release([make_mri_case(31, "q1", size=(96, 96, 40), spacing=(2.0, 2.0, 3.0))], root)
    return root


def test_batch_writes_qa_png_and_names_it(one_case, tmp_path):
    out = tmp_path / "out"
    assert main(["batch", "-i", str(one_case), "-o", str(out), *FAST]) == 0
    report = json.loads((out / "q1" / "report.json").read_text())
    assert report["qa_png"] == QA_FILE == "qa.png"
    rgb = imread(out / "q1" / QA_FILE)
    found = [s["name"] for s in report["structures"] if s["voxels"] > 0]
    missing = len(report["structures"]) - len(found)
    assert len(found) >= 1
    width, height = Layout(*grid_shape(len(found)), 1 + (missing > 0)).size_px
    assert rgb.shape[:2] == (height, width)
    assert len(_colour_pixels(rgb[..., :3], 0)) > 100  # GTVp's contour (red) is drawn
    assert sorted(p.name for p in out.iterdir()) == [".hnseg-batch.lock", ".locks", "batch_summary.csv", "q1"]


def test_batch_no_qa_omits_it(one_case, tmp_path):
    out = tmp_path / "out"
    assert main(["batch", "-i", str(one_case), "-o", str(out), "--no-qa", *FAST]) == 0
    assert not (out / "q1" / QA_FILE).exists()
    assert json.loads((out / "q1" / "report.json").read_text())["qa_png"] is None


def test_a_sagittally_stored_case_draws_the_same_sheet(tmp_path):
    """The sheet is drawn in LPS: the same image and masks stored sagittally (SimpleITK's DICOMOrient
    makes the copy) give the identical PNG, and its axial panel is axial."""
    from hnseg.preprocess.orientation import Reorientation

    image, structures = _image(), {"A": A, "B": B}
    want = imread(qa_sheet(image, structures, tmp_path / "lps.png", "t"))
    sag = sitk.DICOMOrient(image, "PIR")
    r = Reorientation.of(image, "PIR")  # checked against DICOMOrient in test_orientation.py
    stored = {n: r.to_canonical(m) for n, m in structures.items()}
    assert stored["A"].shape == sitk.GetArrayViewFromImage(sag).shape != A.shape
    got = imread(qa_sheet(sag, stored, tmp_path / "pir.png", "t"))
    assert np.array_equal(got, want)
