"""Test-time mirroring axes: the patient's left-right axis in numpy (z, y, x) order and in nnU-Net's
transposed network order."""

from __future__ import annotations

import logging

import pytest
import SimpleITK as sitk

from hnseg.predict.mirroring import left_right_array_axis, mirror_axes

IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)
# columns are index axes in LPS: index axis 0 runs anterior-posterior (y), index axis 1 left-right (x)
AP_LR_SI = (0, 1, 0,
            1, 0, 0,
            0, 0, 1)
FLIP_X = (-1, 0, 0, 0, 1, 0, 0, 0, 1)
# sagittal acquisition: index axis 0 = A-P, index axis 1 = S-I, index axis 2 = L-R
SAGITTAL = (0, 0, 1,
            1, 0, 0,
            0, -1, 0)
# slightly oblique axial: x still mostly left-right
OBLIQUE = (0.98, 0.2, 0.0,
           -0.2, 0.98, 0.0,
           0.0, 0.0, 1.0)


def ref(direction=IDENTITY) -> sitk.Image:
    img = sitk.Image([6, 5, 4], sitk.sitkUInt8)
    img.SetDirection(direction)
    return img


@pytest.mark.parametrize(
    "direction, axis",
    [(IDENTITY, 2), (AP_LR_SI, 1), (FLIP_X, 2), (SAGITTAL, 0), (OBLIQUE, 2)],
    ids=["identity", "ap-lr-si", "flipped-x", "sagittal", "oblique"],
)
def test_left_right_array_axis(direction, axis):
    assert left_right_array_axis(ref(direction)) == axis


def test_left_right_axis_is_a_numpy_axis_of_matching_length():
    img = ref(AP_LR_SI)  # size (x=6, y=5, z=4): index axis 1 (length 5) runs left-right
    arr = sitk.GetArrayFromImage(img)
    assert arr.shape == (4, 5, 6)
    assert arr.shape[left_right_array_axis(img)] == img.GetSize()[1] == 5


@pytest.mark.parametrize("transpose", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
@pytest.mark.parametrize("direction", [IDENTITY, AP_LR_SI, FLIP_X])
def test_off_and_default(transpose, direction):
    r = ref(direction)
    assert mirror_axes("off", (0, 1, 2), transpose, r) is None
    assert mirror_axes("default", (0, 1, 2), transpose, r) == (0, 1, 2)
    assert mirror_axes("default", [1, 2], transpose, r) == (1, 2)
    for mode in ("off", "default", "lr"):  # a checkpoint without mirroring never mirrors
        assert mirror_axes(mode, None, transpose, r) is None
        assert mirror_axes(mode, (), transpose, r) is None


@pytest.mark.parametrize(
    "transpose, direction, expected",
    [
        ((0, 1, 2), IDENTITY, (2,)),
        ((0, 1, 2), AP_LR_SI, (1,)),
        ((0, 1, 2), FLIP_X, (2,)),
        # nnU-Net's network axis i is array axis transpose_forward[i]: array axis 2 sits at position 0
        ((2, 0, 1), IDENTITY, (0,)),
        ((2, 0, 1), AP_LR_SI, (2,)),  # array axis 1 at position 2
        ((1, 2, 0), IDENTITY, (1,)),
        ((1, 2, 0), AP_LR_SI, (0,)),
    ],
)
def test_lr_mode(transpose, direction, expected):
    assert mirror_axes("lr", (0, 1, 2), transpose, ref(direction)) == expected


def test_lr_not_allowed_by_checkpoint(caplog):
    with caplog.at_level(logging.WARNING, logger="hnseg.predict.mirroring"):
        # identity direction, transpose [2,0,1]: left-right is network axis 0, checkpoint mirrors 1, 2
        assert mirror_axes("lr", (1, 2), (2, 0, 1), ref()) is None
        assert mirror_axes("lr", (0, 1), (0, 1, 2), ref()) is None
    assert "left-right axis 0 is not among the checkpoint's mirror axes (1, 2)" in caplog.text
    assert "left-right axis 2 is not among the checkpoint's mirror axes (0, 1)" in caplog.text
    # but allowed when the checkpoint lists it
    assert mirror_axes("lr", (0,), (2, 0, 1), ref()) == (0,)
