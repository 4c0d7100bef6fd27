"""Pre-RT -> mid-RT registration with itk-elastix (hnseg.preprocess.registration).

The phantom pair has a KNOWN smooth deformation (rotation + shift + smooth displacement, other grid
at pre-RT; ``hnseg.phantoms.deformed_pair``), so the true mid-RT mask is the answer. The grid is
small (48 x 48 x 20 voxels of 4 x 4 x 6 mm) and the iterations few (20 per resolution): on one core
the organizers' B-spline stage costs ~0.2 s per iteration plus ~10 s of step-size estimation per
registration, whatever the iteration count, and importing ``itk`` takes ~10 s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math

import numpy as np
import pytest
import SimpleITK as sitk

from hnseg.errors import GridMismatchError, MaskLabelError
from hnseg.load.grid import describe_grid
from hnseg.phantoms.deformed_pair import dice_scores, make_deformed_pair, resample_identity
from hnseg.preprocess.registration import (
    PARAMETER_FILE, RegistrationRecord, RegistrationSettings, _itk, _to_itk, _to_sitk, _warp_mask,
    register_pre_to_mid,
)

SEED = 7  # both GTVs present and large enough (GTVp 125, GTVn 72 voxels at mid-RT)
SIZE, SPACING = (48, 48, 20), (4.0, 4.0, 6.0)
SETTINGS = RegistrationSettings(max_iterations=20, random_seed=0, threads=1)


@pytest.fixture(scope="module")
def pair():
    return make_deformed_pair(SEED, size=SIZE, spacing=SPACING)


@pytest.fixture(scope="module")
def registered(pair):
    return register_pre_to_mid(pair.pre_image, pair.pre_mask, pair.mid_image, SETTINGS)


def test_bundled_parameter_file_is_the_organizers_file(hntsmrg_real):
    organizers = hntsmrg_real / "Elastix_parameterset_23.txt"
    assert PARAMETER_FILE.read_bytes() == organizers.read_bytes()


def test_pair_is_what_the_test_needs(pair):
    # the pre-RT scan is on another grid and visibly misaligned: otherwise the Dice test is empty
    assert pair.pre_image.GetSize() != pair.mid_image.GetSize()
    assert pair.pre_image.GetSpacing() != pair.mid_image.GetSpacing()
    assert pair.info["displacement_mm_in_pre_mask_mean"] > 4.0
    assert set(np.unique(sitk.GetArrayViewFromImage(pair.pre_mask)).tolist()) == {0, 1, 2}


def test_outputs_lie_on_the_mid_rt_grid(pair, registered):
    mid = pair.mid_image
    for out in (registered.mask, registered.image):
        assert out.GetSize() == mid.GetSize()
        assert out.GetSpacing() == mid.GetSpacing()
        assert out.GetOrigin() == mid.GetOrigin()
        assert out.GetDirection() == mid.GetDirection()
    assert registered.mask.GetPixelID() == sitk.sitkUInt8
    assert registered.image.GetPixelID() == sitk.sitkFloat32
    labels_in = set(np.unique(sitk.GetArrayViewFromImage(pair.pre_mask)).tolist())
    labels_out = set(np.unique(sitk.GetArrayViewFromImage(registered.mask)).tolist())
    assert labels_out <= labels_in
    assert labels_out == {0, 1, 2}  # nearest neighbour keeps both GTVs (no label lost or merged)


def test_registration_recovers_the_known_deformation(pair, registered):
    unregistered = dice_scores(pair.mid_mask, resample_identity(pair.pre_mask, pair.mid_image))
    reg = dice_scores(pair.mid_mask, registered.mask)
    # measured (20 iterations): foreground 0.51 -> 0.86, GTVp 0.59 -> 0.90, GTVn 0.36 -> 0.79
    assert reg["foreground"] >= 0.75, (unregistered, reg)
    assert reg["foreground"] >= unregistered["foreground"] + 0.2, (unregistered, reg)
    for label in ("GTVp", "GTVn"):
        assert unregistered[label] is not None
        assert reg[label] >= 0.65, (label, unregistered, reg)
        assert reg[label] >= unregistered[label] + 0.15, (label, unregistered, reg)
    # the image moved with the mask: its decorrelation from the mid-RT image (1 - Pearson r, blind
    # to the pair's gain) drops (measured 0.087 -> 0.051; noise keeps it above 0)
    mid = sitk.GetArrayFromImage(pair.mid_image).ravel()
    before = sitk.GetArrayFromImage(sitk.Resample(pair.pre_image, pair.mid_image)).ravel()
    after = sitk.GetArrayFromImage(registered.image).ravel()
    assert 1 - np.corrcoef(mid, after)[0, 1] <= 0.7 * (1 - np.corrcoef(mid, before)[0, 1])


def test_same_seed_gives_the_same_mask_quietly(pair, registered, capfd, caplog):
    caplog.set_level(logging.INFO, logger="hnseg.preprocess.registration")
    capfd.readouterr()
    again = register_pre_to_mid(pair.pre_image, pair.pre_mask, pair.mid_image, SETTINGS)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # elastix's console log is off
    summaries = [r for r in caplog.records if r.name == "hnseg.preprocess.registration"]
    assert len(summaries) == 1 and "itk-elastix" in summaries[0].getMessage()
    assert np.array_equal(sitk.GetArrayViewFromImage(again.mask),
                          sitk.GetArrayViewFromImage(registered.mask))
    assert np.array_equal(sitk.GetArrayViewFromImage(again.image),
                          sitk.GetArrayViewFromImage(registered.image))
    assert again.record.final_metric == registered.record.final_metric


def test_record_describes_the_run(registered):
    rec = registered.record
    assert rec.method == "itk-elastix"
    assert "itk-elastix" in rec.elastix_version and "elastix 5." in rec.elastix_version
    assert rec.parameter_file == "Elastix_parameterset_23.txt"
    assert rec.parameter_file_sha256 == hashlib.sha256(PARAMETER_FILE.read_bytes()).hexdigest()
    assert rec.stages == ["rigid (elastix default map)", "bspline (Elastix_parameterset_23.txt)"]
    assert (rec.max_iterations, rec.random_seed, rec.threads) == (20, 0, 1)
    assert rec.seconds > 0
    assert rec.final_metric is not None and math.isfinite(rec.final_metric)
    assert RegistrationRecord.model_validate(json.loads(rec.model_dump_json())) == rec


def test_mask_off_the_pre_rt_grid_is_refused_naming_both_grids(pair):
    moved = sitk.Image(pair.pre_mask)
    moved.SetOrigin(tuple(o + d for o, d in zip(moved.GetOrigin(), (5.0, 0.0, 0.0))))
    with pytest.raises(GridMismatchError) as err:
        register_pre_to_mid(pair.pre_image, moved, pair.mid_image, SETTINGS)
    msg = str(err.value)
    assert "origin" in msg
    assert describe_grid(pair.pre_image) in msg and describe_grid(moved) in msg


def test_non_integer_mask_is_refused(pair):
    frac = sitk.Cast(pair.pre_mask, sitk.sitkFloat32) * 0.5  # labels 0, 0.5, 1
    with pytest.raises(MaskLabelError, match="non-integer"):
        register_pre_to_mid(pair.pre_image, frac, pair.mid_image, SETTINGS)


def test_itk_conversion_keeps_oblique_geometry():
    img = sitk.GetImageFromArray(np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7))
    img.SetSpacing((0.7, 1.1, 2.5))
    img.SetOrigin((-12.5, 30.25, 7.0))
    c, s = math.cos(0.3), math.sin(0.3)
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    converted = _to_itk(sitk.GetArrayFromImage(img), img)
    idx = (6, 1, 3)
    assert np.allclose(converted.TransformIndexToPhysicalPoint(idx),
                       img.TransformIndexToPhysicalPoint(idx), atol=1e-9)
    back = _to_sitk(converted, img, "round trip")
    assert back.GetDirection() == img.GetDirection() and back.GetOrigin() == img.GetOrigin()
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))


def test_mask_warp_is_nearest_neighbour_through_the_given_transform():
    # transformix on a hand-written elastix translation map (T(x) = x + t, fixed -> moving) from an
    # oblique source grid onto another grid must equal SimpleITK's nearest-neighbour resampling
    # through the same translation, voxel for voxel; linear interpolation would invent labels 3 … 6
    a = np.zeros((12, 14, 16), np.uint8)
    a[2:9, 3:11, 4:12] = 1
    a[4:7, 5:8, 6:9] = 2
    a[8:11, 9:13, 2:6] = 7
    src = sitk.GetImageFromArray(a)
    src.SetSpacing((1.5, 1.2, 2.0))
    src.SetOrigin((-3.0, 4.0, 1.0))
    c, s = math.cos(0.2), math.sin(0.2)
    src.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    ref = sitk.Image(18, 15, 11, sitk.sitkUInt8)
    ref.SetSpacing((1.1, 1.3, 2.3))
    ref.SetOrigin((-4.0, 2.5, 0.2))
    t = (0.37, -0.81, 1.13)
    pmap = {
        "Transform": ["TranslationTransform"], "NumberOfParameters": ["3"],
        "TransformParameters": [repr(v) for v in t],
        "InitialTransformParameterFileName": ["NoInitialTransform"],
        "HowToCombineTransforms": ["Compose"], "FixedImageDimension": ["3"],
        "MovingImageDimension": ["3"], "FixedInternalImagePixelType": ["float"],
        "MovingInternalImagePixelType": ["float"], "UseDirectionCosines": ["true"],
        "Size": [str(v) for v in ref.GetSize()], "Index": ["0", "0", "0"],
        "Spacing": [repr(v) for v in ref.GetSpacing()], "Origin": [repr(v) for v in ref.GetOrigin()],
        "Direction": [repr(v) for v in ref.GetDirection()], "Resampler": ["DefaultResampler"],
        "ResampleInterpolator": ["FinalBSplineInterpolator"], "FinalBSplineInterpolationOrder": ["3"],
        "DefaultPixelValue": ["0"], "ResultImagePixelType": ["float"],
    }
    params = _itk().ParameterObject.New()
    params.AddParameterMap(pmap)
    warped = _warp_mask(a, src, params, ref)
    expected = sitk.Resample(src, ref, sitk.TranslationTransform(3, t), sitk.sitkNearestNeighbor, 0,
                             sitk.sitkUInt8)
    got, want = sitk.GetArrayViewFromImage(warped), sitk.GetArrayViewFromImage(expected)
    assert warped.GetPixelID() == sitk.sitkUInt8
    assert np.count_nonzero(want) > 400
    assert np.array_equal(got, want)
    assert set(np.unique(got).tolist()) == {0, 1, 2, 7}
