"""Task-2 prior channel (box = seed's gradient map, band = box-free), winner's overlap rule, CLI."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pytest
import SimpleITK as sitk
from pydantic import ValidationError
from scipy import ndimage

from hnseg.errors import GridMismatchError
from hnseg.postprocess.prior_overlap import drop_components_without_prior
from hnseg.preprocess import prior_cli
from hnseg.preprocess.priors import PriorSpec, compute_prior, compute_prior_array

ISO = (1.0, 1.0, 1.0)


def ref_map(crop: np.ndarray, sigma: float = 1.0, region: np.ndarray | None = None) -> np.ndarray:
    """Independent re-statement of the seed recipe on one crop."""
    c = crop.astype(np.float64)
    r = np.ones(c.shape, bool) if region is None else region
    rng_ = c[r].max() - c[r].min()
    c = (c - c[r].min()) / rng_ if rng_ > 0 else np.zeros_like(c)
    g = ndimage.gaussian_gradient_magnitude(c, sigma=sigma)
    gr = g[r].max() - g[r].min()
    g = (g - g[r].min()) / gr if gr > 0 else np.ones_like(g)
    return np.clip(2 * g, 0, 1)


def nonzero_extent(a: np.ndarray) -> list[tuple[int, int]]:
    idx = np.argwhere(a != 0)
    return [(int(lo), int(hi)) for lo, hi in zip(idx.min(0), idx.max(0))]


def noise(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape) * scale


# ----------------------------------------------------------------------------------------- box


def test_box_extents_per_axis_margin_minus_one_above_and_zero_outside():
    shape = (30, 40, 50)  # z, y, x
    mask = np.zeros(shape, np.uint8)
    mask[10:13, 20:26, 30:32] = 1  # z 10..12, y 20..25, x 30..31
    img = np.full(shape, 7.0)  # constant crop -> ones exactly inside the box
    spec = PriorSpec(margin=(2, 3, 4))  # x, y, z
    out = compute_prior_array(img, mask, ISO, spec)
    assert out.dtype == np.float32
    # below: first - m; above: exclusive end last + m -> inclusive last + m - 1
    assert nonzero_extent(out) == [(10 - 4, 12 + 3), (20 - 3, 25 + 2), (30 - 2, 31 + 1)]
    box = out[6:16, 17:28, 28:33]
    assert np.all(box == 1.0)
    assert out.sum() == box.size  # zero outside


def test_box_clipped_at_image_border():
    shape = (12, 12, 12)
    mask = np.zeros(shape, np.uint8)
    mask[0:2, 5:6, 9:11] = 1  # z at low border, x last index 10 = n-2
    out = compute_prior_array(np.ones(shape), mask, ISO, PriorSpec(margin=(5, 1, 5)))
    # z: max(0, 0-5)=0 .. min(12, 1+5)=6 -> 0..5 ; y: 5-1=4 .. 5+1-1=5 ; x: 4 .. min(12, 15)=12 -> 11
    assert nonzero_extent(out) == [(0, 5), (4, 5), (4, 11)]


def test_box_values_random_image_match_recipe_and_bounds():
    shape = (24, 24, 24)
    img = noise(shape, 1) * 100 + 50
    mask = np.zeros(shape, np.uint8)
    mask[8:14, 9:12, 10:15] = 1
    out = compute_prior_array(img, mask, ISO, PriorSpec(margin=(5, 5, 5)))
    box = (slice(3, 18), slice(4, 16), slice(5, 19))
    np.testing.assert_allclose(out[box], ref_map(img[box]), rtol=1e-6, atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1 and out.max() == 1
    outside = np.ones(shape, bool)
    outside[box] = False
    assert np.all(out[outside] == 0)


def test_box_two_gtvn_components_normalised_independently():
    shape = (20, 20, 60)
    img = noise(shape, 2)
    img[:, :, 30:] *= 1000.0  # second box has a 1000x larger scale
    mask = np.zeros(shape, np.uint8)
    mask[8:11, 8:11, 8:11] = 2
    mask[8:11, 8:11, 45:48] = 2
    spec = PriorSpec(margin=(3, 3, 3))
    out = compute_prior_array(img, mask, ISO, spec)
    b1 = (slice(5, 13), slice(5, 13), slice(5, 13))
    b2 = (slice(5, 13), slice(5, 13), slice(42, 50))
    for b in (b1, b2):
        assert out[b].max() == 1.0
        assert out[b].mean() > 0.2  # a global normalisation would leave the small-scale box near 0
        np.testing.assert_allclose(out[b], ref_map(img[b]), rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(out) > 0
    rest = np.ones(shape, bool)
    rest[b1] = rest[b2] = False
    assert np.all(out[rest] == 0)


def test_box_gtvn_overwrites_gtvp_where_boxes_overlap():
    shape = (20, 20, 30)
    img = noise(shape, 3)
    img[:, :, 15:] *= 20  # make the two boxes' statistics differ
    mask = np.zeros(shape, np.uint8)
    mask[8:12, 8:12, 6:12] = 1  # GTVp box x: 2..15 (exclusive end 11+5=16)
    mask[8:12, 8:12, 15:18] = 2  # GTVn box x: 10..21
    spec = PriorSpec(margin=(4, 4, 4))
    out = compute_prior_array(img, mask, ISO, spec)
    bp = (slice(4, 15), slice(4, 15), slice(2, 15))
    bn = (slice(4, 15), slice(4, 15), slice(11, 21))
    exp_n = ref_map(img[bn])
    exp_p = ref_map(img[bp])
    np.testing.assert_allclose(out[bn], exp_n, rtol=1e-6, atol=1e-6)
    # GTVp-only part keeps the GTVp computation
    np.testing.assert_allclose(out[4:15, 4:15, 2:11], exp_p[:, :, :9], rtol=1e-6, atol=1e-6)
    # and on the overlap the two computations really differ (so the test is meaningful)
    assert not np.allclose(exp_p[:, :, 9:13], exp_n[:, :, 0:4], atol=1e-3)


def test_box_constant_crop_gives_ones():
    shape = (16, 16, 16)
    img = noise(shape, 4)
    img[2:14, 2:14, 2:14] = 3.0
    mask = np.zeros(shape, np.uint8)
    mask[7:9, 7:9, 7:9] = 1
    out = compute_prior_array(img, mask, ISO, PriorSpec(margin=(2, 2, 2)))
    assert np.all(out[5:10, 5:10, 5:10] == 1.0)
    assert np.count_nonzero(out) == 125


def test_empty_mask_gives_zeros():
    for kind in ("box", "band"):
        empty = np.zeros((8, 9, 10), np.uint8)
        out = compute_prior_array(noise((8, 9, 10)), empty, ISO, PriorSpec(kind=kind))
        assert out.shape == (8, 9, 10) and out.dtype == np.float32 and not out.any()


def test_labels_other_than_1_2_are_ignored():
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[4:6, 4:6, 4:6] = 3
    assert not compute_prior_array(noise((10, 10, 10)), mask, ISO, PriorSpec()).any()


def test_kind_none_raises():
    img = sitk.Image(4, 4, 4, sitk.sitkFloat32)
    with pytest.raises(ValueError, match="none"):
        compute_prior(img, sitk.Image(4, 4, 4, sitk.sitkUInt8), PriorSpec(kind="none"))
    with pytest.raises(ValueError):
        compute_prior_array(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), ISO, PriorSpec(kind="none"))


def test_spec_frozen_forbid_and_json_roundtrip():
    spec = PriorSpec(kind="band", margin=(5, 5, 2), band_mm=12.5)
    assert PriorSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValidationError):
        PriorSpec(unknown=1)
    with pytest.raises(ValidationError):
        spec.band_mm = 3.0
    with pytest.raises(ValidationError):
        PriorSpec(train_margin_range=(7, 4))
    with pytest.raises(ValidationError):
        PriorSpec(sigma_vox=0)
    d = PriorSpec()
    assert (d.kind, d.sigma_vox, d.margin, d.train_margin_range, d.band_mm, d.train_band_mm_range) == (
        "box", 1.0, (5, 5, 5), (4, 7), 10.0, (6.0, 14.0))


def test_training_seeded_reproducible_and_inference_deterministic():
    shape = (30, 30, 30)
    img = noise(shape, 5)
    mask = np.zeros(shape, np.uint8)
    mask[10:14, 10:14, 10:14] = 1
    mask[20:23, 5:8, 20:24] = 2
    for kind in ("box", "band"):
        spec = PriorSpec(kind=kind)
        a = compute_prior_array(img, mask, ISO, spec, np.random.default_rng(11))
        b = compute_prior_array(img, mask, ISO, spec, np.random.default_rng(11))
        np.testing.assert_array_equal(a, b)
        differs = any(
            not np.array_equal(a, compute_prior_array(img, mask, ISO, spec, np.random.default_rng(s)))
            for s in (12, 13, 14)
        )
        assert differs
        i1 = compute_prior_array(img, mask, ISO, spec)
        i2 = compute_prior_array(img, mask, ISO, spec)
        np.testing.assert_array_equal(i1, i2)


def test_training_margins_within_range_per_axis():
    shape = (21, 21, 21)
    img = np.ones(shape)
    mask = np.zeros(shape, np.uint8)
    mask[10, 10, 10] = 1
    spec = PriorSpec(train_margin_range=(4, 7))
    below, above = set(), set()
    rng = np.random.default_rng(0)
    per_axis_below = [set(), set(), set()]
    for _ in range(150):
        out = compute_prior_array(img, mask, ISO, spec, rng)
        for ax, (lo, hi) in enumerate(nonzero_extent(out)):
            below.add(10 - lo)
            above.add(hi - 10)
            per_axis_below[ax].add(10 - lo)
    assert below == {4, 5, 6, 7}
    assert above == {3, 4, 5, 6}  # exclusive end: m - 1 above
    assert all(s == {4, 5, 6, 7} for s in per_axis_below)  # drawn independently per axis


def test_training_margins_drawn_per_component():
    shape = (21, 21, 64)
    img = np.ones(shape)
    mask = np.zeros(shape, np.uint8)
    centres = [8, 24, 40, 56]  # boxes cannot touch (|margin| <= 7)
    for c in centres:
        mask[10, 10, c] = 2
    out = compute_prior_array(img, mask, ISO, PriorSpec(), np.random.default_rng(3))
    lab, n = ndimage.label(out > 0)
    assert n == 4
    ext = [nonzero_extent(out[:, :, c:c + 1])[:2] for c in centres]  # z, y extents per box
    assert len({tuple(e) for e in ext}) > 1  # components got their own draws


# ---------------------------------------------------------------------------------------- band


def test_band_region_is_physical_distance_on_anisotropic_grid():
    spacing = (2.0, 0.5, 0.5)  # z, y, x
    shape = (21, 61, 61)
    mask = np.zeros(shape, np.uint8)
    mask[10, 30, 30] = 1
    spec = PriorSpec(kind="band", band_mm=10.0)
    out = compute_prior_array(np.full(shape, 4.0), mask, spacing, spec)  # constant -> ones in band
    zz, yy, xx = np.indices(shape)
    d = np.sqrt(((zz - 10) * 2.0) ** 2 + ((yy - 30) * 0.5) ** 2 + ((xx - 30) * 0.5) ** 2)
    np.testing.assert_array_equal(out > 0, d <= 10.0)
    assert np.all(out[d <= 10.0] == 1.0)
    # 10 mm = 5 voxels along z, 20 voxels in plane
    assert nonzero_extent(out) == [(5, 15), (10, 50), (10, 50)]


def test_band_random_image_zero_beyond_band_and_values_bounded():
    spacing = (2.0, 0.5, 0.5)
    shape = (20, 60, 60)
    img = noise(shape, 6) * 30 + 100
    mask = np.zeros(shape, np.uint8)
    mask[8:11, 25:35, 20:30] = 2
    spec = PriorSpec(kind="band", band_mm=6.0)
    out = compute_prior_array(img, mask, spacing, spec)
    region = ndimage.distance_transform_edt(mask == 0, sampling=spacing) <= 6.0
    assert np.all(out[~region] == 0)
    assert out.min() >= 0 and out.max() == 1.0
    assert np.count_nonzero(out[region]) >= region.sum() - 1  # only the gradient minimum may be 0
    # normalisation statistics over the region, gradient on the crop (= bbox grown by 3, 12, 12)
    crop = (slice(5, 14), slice(13, 47), slice(8, 42))
    exp = ref_map(img[crop], region=region[crop])
    np.testing.assert_allclose(out[crop][region[crop]], exp[region[crop]], rtol=1e-6, atol=1e-6)


def test_band_training_width_in_range():
    spacing = (1.0, 1.0, 1.0)
    shape = (41, 41, 41)
    mask = np.zeros(shape, np.uint8)
    mask[20, 20, 20] = 1
    spec = PriorSpec(kind="band", train_band_mm_range=(6.0, 14.0))
    rng = np.random.default_rng(1)
    radii = []
    for _ in range(30):
        out = compute_prior_array(np.ones(shape), mask, spacing, spec, rng)
        radii.append(20 - nonzero_extent(out)[0][0])
    assert min(radii) >= 6 and max(radii) <= 14 and len(set(radii)) > 3


def test_tumour_extension_8_slices_inside_20mm_band_outside_seed_box():
    spacing = (2.0, 0.5, 0.5)
    shape = (40, 40, 80)
    img = np.full(shape, 1.0)
    mask = np.zeros(shape, np.uint8)
    mask[10:15, 15:25, 15:25] = 1
    ext = (14 + 8, 20, 20)  # 8 slices (16 mm) above the mask's last slice
    band = compute_prior_array(img, mask, spacing, PriorSpec(kind="band", band_mm=20.0))
    box = compute_prior_array(img, mask, spacing, PriorSpec(kind="box", margin=(5, 5, 5)))
    assert band[ext] > 0
    assert box[ext] == 0
    # in plane the band reaches 40 voxels (20 mm), the box 4 voxels (2 mm): 3 mm out is missed
    assert band[12, 20, 24 + 30] > 0 and box[12, 20, 24 + 6] == 0


# ------------------------------------------------------------------------------------ geometry


def _geom_image(arr: np.ndarray, pixel=sitk.sitkFloat32) -> sitk.Image:
    im = sitk.Cast(sitk.GetImageFromArray(arr), pixel)
    im.SetSpacing((0.5, 0.6, 2.0))
    im.SetOrigin((-12.5, 30.25, 7.0))
    c, s = np.cos(0.3), np.sin(0.3)
    im.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    return im


@pytest.mark.parametrize("kind", ["box", "band"])
def test_compute_prior_geometry_and_values(kind):
    arr = noise((12, 20, 24), 7).astype(np.float32)
    m = np.zeros(arr.shape, np.uint8)
    m[5:7, 8:12, 10:14] = 1
    image = _geom_image(arr)
    mask = sitk.GetImageFromArray(m)
    mask.CopyInformation(image)
    spec = PriorSpec(kind=kind)
    out = compute_prior(image, mask, spec)
    assert out.GetPixelID() == sitk.sitkFloat32
    assert out.GetSize() == image.GetSize()
    assert out.GetSpacing() == image.GetSpacing()
    assert out.GetOrigin() == image.GetOrigin()
    assert out.GetDirection() == image.GetDirection()
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(out), compute_prior_array(arr, m, (2.0, 0.6, 0.5), spec)
    )


# ---------------------------------------------------------------------------------- post rule


def test_drop_components_without_prior(caplog):
    pred = np.zeros((10, 10, 30), np.uint8)
    prior = np.zeros_like(pred)
    pred[2:4, 2:4, 2:4] = 1  # class 1 touching class-1 prior -> kept
    prior[3, 3, 3] = 1
    pred[2:4, 2:4, 8:10] = 1  # class 1 touching no prior -> dropped
    pred[2:4, 2:4, 14:16] = 1  # class 1 touching only class-2 prior -> dropped
    prior[2:4, 2:4, 14:16] = 2
    pred[6:8, 6:8, 20:22] = 2  # class 2 touching class-2 prior at one voxel -> kept
    prior[7, 7, 21] = 2
    pred[6:8, 6:8, 25:27] = 2  # class 2 with class-1 prior only -> dropped
    prior[6:8, 6:8, 25:27] = 1
    with caplog.at_level(logging.INFO, logger="hnseg.postprocess.prior_overlap"):
        out = drop_components_without_prior(pred, prior)
    assert out.dtype == pred.dtype and out is not pred
    assert np.all(out[2:4, 2:4, 2:4] == 1)
    assert not out[:, :, 8:10].any()
    assert not out[:, :, 14:16].any()
    assert np.all(out[6:8, 6:8, 20:22] == 2)
    assert not out[:, :, 25:27].any()
    assert int((out > 0).sum()) == 16
    assert pred[2, 2, 8] == 1  # input untouched
    text = caplog.text
    assert "class 1: dropped 2 of 3" in text and "class 2: dropped 1 of 2" in text


def test_drop_components_face_connectivity_and_labels_subset():
    pred = np.zeros((6, 6, 6), np.int16)
    pred[1, 1, 1] = 1
    pred[2, 2, 2] = 1  # diagonal neighbour: a separate component under face connectivity
    pred[4, 4, 4] = 2
    prior = np.zeros_like(pred)
    prior[1, 1, 1] = 1
    out = drop_components_without_prior(pred, prior, labels=(1,))
    assert out[1, 1, 1] == 1 and out[2, 2, 2] == 0
    assert out[4, 4, 4] == 2  # class 2 not processed
    with pytest.raises(ValueError):
        drop_components_without_prior(pred, prior[:5])


# ------------------------------------------------------------------------------------------ CLI


def _parse(argv):
    p = argparse.ArgumentParser()
    prior_cli.configure_parser(p)
    return p.parse_args(argv)


def _write_pair(tmp_path, mask_spacing=None, mask_size=None):
    arr = noise((10, 16, 18), 8).astype(np.float32)
    image = _geom_image(arr)
    m = np.zeros((10, 16, 18) if mask_size is None else mask_size, np.uint8)
    m[4:6, 6:9, 7:10] = 1
    m[1:3, 1:3, 1:3] = 2
    mask = sitk.GetImageFromArray(m)
    if mask_size is None:
        mask.CopyInformation(image)
    else:
        mask.SetSpacing(image.GetSpacing())
    if mask_spacing is not None:
        mask.SetSpacing(mask_spacing)
    ip, mp = tmp_path / "img.nii.gz", tmp_path / "mask.nii.gz"
    sitk.WriteImage(image, str(ip))
    sitk.WriteImage(mask, str(mp))
    return ip, mp


@pytest.mark.parametrize(
    "extra,spec",
    [
        ([], PriorSpec()),
        (["--margin", "5,5,2"], PriorSpec(margin=(5, 5, 2))),
        (
            ["--kind", "band", "--band-mm", "4", "--sigma", "1.5"],
            PriorSpec(kind="band", band_mm=4.0, sigma_vox=1.5),
        ),
    ],
)
def test_cli_writes_prior_on_image_grid(tmp_path, extra, spec):
    ip, mp = _write_pair(tmp_path)
    out = tmp_path / "sub" / "prior.nii.gz"
    args = _parse(["--image", str(ip), "--mask", str(mp), "--out", str(out), *extra])
    assert prior_cli.spec_from_args(args) == spec
    assert prior_cli.run(args) == 0
    got = sitk.ReadImage(str(out))
    image = sitk.ReadImage(str(ip))
    assert got.GetSize() == image.GetSize()
    np.testing.assert_allclose(got.GetSpacing(), image.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(got.GetOrigin(), image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(got.GetDirection(), image.GetDirection(), atol=1e-6)
    expected = compute_prior(image, sitk.ReadImage(str(mp)), spec)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(expected))
    assert sitk.GetArrayFromImage(got).max() == 1.0
    assert [p.name for p in out.parent.iterdir()] == ["prior.nii.gz"]  # no temp file left


def test_cli_margin_parsing():
    assert _parse(["--image", "a", "--mask", "b", "--out", "c", "--margin", "3"]).margin == (3, 3, 3)
    with pytest.raises(SystemExit):
        _parse(["--image", "a", "--mask", "b", "--out", "c", "--margin", "1,2"])


def test_cli_grid_mismatch_spacing(tmp_path):
    ip, mp = _write_pair(tmp_path, mask_spacing=(0.5, 0.6, 2.5))
    args = _parse(["--image", str(ip), "--mask", str(mp), "--out", str(tmp_path / "o.nii.gz")])
    with pytest.raises(GridMismatchError) as ei:
        prior_cli.run(args)
    msg = str(ei.value)
    assert str(ip) in msg and str(mp) in msg and "spacing" in msg
    assert not (tmp_path / "o.nii.gz").exists()


def test_cli_grid_mismatch_size(tmp_path):
    ip, mp = _write_pair(tmp_path, mask_size=(10, 16, 17))
    args = _parse(["--image", str(ip), "--mask", str(mp), "--out", str(tmp_path / "o.nii.gz")])
    with pytest.raises(GridMismatchError, match="size"):
        prior_cli.run(args)


def test_grid_check_tolerates_tiny_float_noise():
    image = _geom_image(np.zeros((4, 5, 6), np.float32))
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.SetSpacing(tuple(s * (1 + 1e-6) for s in image.GetSpacing()))
    mask.SetOrigin(tuple(o + 1e-6 for o in image.GetOrigin()))
    mask.SetDirection(image.GetDirection())
    prior_cli.check_same_grid(image, mask, "i", "m")  # no raise
    mask.SetOrigin(tuple(o + 0.01 for o in image.GetOrigin()))
    with pytest.raises(GridMismatchError, match="origin"):
        prior_cli.check_same_grid(image, mask, "i", "m")
