"""Long-axis spacing normalisation: grid, round trips, identity, dictionary form and its inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atso_med.errors import ConfigError
from atso_med.metrics.dice import dice_score
from atso_med.transforms import LongAxisSpacing, LongAxisSpacingd, long_axis_slices, resample_long_axis


def _blob(shape=(24, 20, 33), spacing=(1.0, 1.0, 2.5), radii=(8.0, 7.0, 30.0)) -> np.ndarray:
    """A smooth ellipsoid (radii in mm) centred in the volume, as a uint8 label."""
    grid = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    return (sum((g / r) ** 2 for g, r in zip(grid, radii, strict=True)) <= 1.0).astype(np.uint8)


def test_slice_count_keeps_the_extent():
    # 17 slices 2.5 mm apart span 40 mm: 1 mm -> 41 slices, 0.75 mm -> 54 (40 / 0.75 = 53.3).
    assert long_axis_slices(17, 2.5, 1.0) == 41
    assert long_axis_slices(17, 2.5, 0.75) == 54
    assert long_axis_slices(17, 2.5, 2.5) == 17
    assert long_axis_slices(1, 2.5, 1.0) == 1
    spacing = LongAxisSpacing(0.75)
    assert spacing.effective_spacing(17, 2.5) == pytest.approx(40 / 53)


def test_linear_resampling_is_exact_on_a_ramp_and_keeps_the_end_slices():
    ramp = np.broadcast_to(np.arange(5, dtype=np.float32) * 3.0, (2, 3, 5)).copy()
    out = LongAxisSpacing(1.0)(ramp, 3.0)  # 5 slices 3 mm apart -> 13 slices 1 mm apart
    assert out.shape == (2, 3, 13) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], np.arange(13, dtype=np.float32), atol=1e-5)
    back = LongAxisSpacing(1.0).inverse(out, 5)
    np.testing.assert_allclose(back, ramp, atol=1e-5)


def test_round_trip_shape_is_exact_for_images_and_probabilities():
    rng = np.random.default_rng(0)
    for slices, spacing, target in [(17, 2.5, 1.0), (30, 0.8, 2.0), (9, 1.25, 1.0), (2, 5.0, 1.0)]:
        image = rng.random((6, 5, slices), dtype=np.float32)
        t = LongAxisSpacing(target)
        forward = t(image, spacing)
        assert forward.shape == (6, 5, long_axis_slices(slices, spacing, target))
        back = t.inverse(forward, slices)
        assert back.shape == image.shape
        mask = t.inverse(forward, slices, threshold=0.5)
        assert mask.shape == image.shape and mask.dtype == np.uint8
    # The input is never modified.
    image = rng.random((4, 4, 7), dtype=np.float32)
    before = image.copy()
    LongAxisSpacing(1.0)(image, 2.0)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("target", [1.0, 0.7, 4.0])
def test_label_there_and_back_agrees_on_a_smooth_blob(target):
    label = _blob()
    t = LongAxisSpacing(target, mode="nearest")
    there = t(label, 2.5)
    assert there.dtype == np.uint8 and set(np.unique(there)) <= {0, 1}
    nearest = t.inverse(there, label.shape[-1], mode="nearest")
    linear = t.inverse(there.astype(np.float32), label.shape[-1], mode="linear", threshold=0.5)
    assert nearest.shape == linear.shape == label.shape
    assert dice_score(nearest, label) > 0.95
    assert dice_score(linear, label) > 0.95
    # Upsampling and coming back by nearest neighbour is lossless: every original slice is hit.
    if target < 2.5:
        assert dice_score(nearest, label) == 1.0


def test_probabilities_go_back_linearly_then_threshold():
    rng = np.random.default_rng(1)
    probability = rng.random((5, 5, 11)).astype(np.float32)
    t = LongAxisSpacing(1.0)
    there = t(probability, 2.0)
    # Output slice 2n lies on input slice n; odd ones halfway between two slices.
    np.testing.assert_allclose(there[..., 2], probability[..., 1], atol=1e-6)
    np.testing.assert_allclose(there[..., 3], (probability[..., 1] + probability[..., 2]) / 2, atol=1e-6)
    mask = t.inverse(there, 11, threshold=0.5)
    np.testing.assert_array_equal(mask, (probability >= 0.5).astype(np.uint8))


def test_identity_when_the_spacing_already_matches():
    image = np.random.default_rng(2).random((4, 4, 9)).astype(np.float32)
    t = LongAxisSpacing(2.5)
    assert t(image, 2.5) is image
    assert t(image, 2.5 * (1 + 1e-6)) is image  # float32 header rounding counts as equal
    np.testing.assert_array_equal(t.inverse(image, 9), image)


def test_torch_tensors_and_channel_axis():
    image = torch.rand(1, 4, 4, 6)
    out = LongAxisSpacing(1.0)(image, 2.0)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 4, 4, 11)
    back = LongAxisSpacing(1.0).inverse(out, 6)
    assert isinstance(back, torch.Tensor)
    torch.testing.assert_close(back, image)


def test_bad_settings_are_refused():
    for bad in (0, -1.0, float("nan"), "thin"):
        with pytest.raises(ConfigError):
            LongAxisSpacing(bad)
    with pytest.raises(ConfigError, match="interpolation"):
        LongAxisSpacing(1.0, mode="cubic")
    with pytest.raises(ConfigError):
        resample_long_axis(np.zeros((2, 2, 3)), 0)


def test_dictionary_form_resamples_image_and_label_and_inverts_the_geometry():
    label = _blob()
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 30.0)
    data = {
        "image": label.astype(np.float32) * 0.8,
        "label": label,
        "image_meta": {"canonical_affine": affine.copy()},
    }
    t = LongAxisSpacingd(["image", "label"], 1.0, mode=["linear", "nearest"])
    out = t(data)
    slices = long_axis_slices(label.shape[-1], 2.5, 1.0)
    assert out["image"].shape[-1] == out["label"].shape[-1] == slices
    assert out["label"].dtype == np.uint8
    new_affine = out["image_meta"]["canonical_affine"]
    # Same first and last slice position in world space: the extent is kept.
    np.testing.assert_allclose(new_affine[:3, 3], affine[:3, 3])
    np.testing.assert_allclose(new_affine @ [0, 0, slices - 1, 1], affine @ [0, 0, label.shape[-1] - 1, 1])
    assert out["image_meta"]["long_axis_spacing"]["original_slices"] == label.shape[-1]
    np.testing.assert_array_equal(data["image_meta"]["canonical_affine"], affine)  # input dict untouched

    back = t.inverse(out)
    assert back["label"].shape == label.shape and dice_score(back["label"], label) > 0.95
    np.testing.assert_array_equal(back["image_meta"]["canonical_affine"], affine)
    assert "long_axis_spacing" not in back["image_meta"]

    with pytest.raises(ConfigError, match="canonical_affine"):
        t({"image": label})


def test_dictionary_form_without_a_target_is_the_identity_both_ways():
    data = {"image": np.zeros((4, 4, 5), np.float32), "image_meta": {"canonical_affine": np.diag([1.0, 1.0, 2.5, 1.0])}}
    t = LongAxisSpacingd(["image"], None)
    out = t(data)
    assert out["image"] is data["image"] and "long_axis_spacing" not in out["image_meta"]
    assert t.inverse(out)["image"] is data["image"]
