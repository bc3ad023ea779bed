"""Training augmentation of 3-slice stacks: image and label move together, the label stays binary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atso_med.errors import ConfigError
from atso_med.transforms import stack_augmentation


def _stack() -> dict:
    label = torch.zeros(3, 48, 40)
    label[:, 10:30, 12:20] = 1.0
    label[1, 30:36, 20:30] = 1.0
    return {"image": label.clone(), "label": label}


def test_spatial_augmentation_moves_image_and_label_together():
    augment = stack_augmentation(seed=0, spatial_probability=1.0, intensity_scale=0, intensity_shift=0, noise_std=0)
    moved = 0
    for _ in range(10):
        out = augment(_stack())
        image, label = np.asarray(out["image"]), np.asarray(out["label"])
        assert set(np.unique(label)) <= {0.0, 1.0}
        assert image.shape == label.shape == (3, 48, 40)
        inside = image > 0.5
        dice = 2 * (inside & (label > 0)).sum() / (inside.sum() + (label > 0).sum())
        assert dice > 0.85
        moved += not np.array_equal(label, np.asarray(_stack()["label"]))
    assert moved >= 8


def test_augmentation_is_reproducible_from_its_seed():
    def draws(seed: int) -> list[np.ndarray]:
        augment = stack_augmentation(seed=seed)
        return [np.asarray(augment(_stack())["image"]) for _ in range(3)]

    first, again, other = draws(3), draws(3), draws(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_cutout_blanks_image_holes_but_never_the_label():
    augment = stack_augmentation(
        seed=0, spatial_probability=0.0, intensity_scale=0, intensity_shift=0, noise_std=0, cutout=True, cutout_size=6
    )
    changed = 0
    for _ in range(10):
        sample = _stack()
        sample["image"] = torch.ones_like(sample["image"])
        out = augment(sample)
        assert np.array_equal(np.asarray(out["label"]), np.asarray(_stack()["label"]))
        changed += bool((np.asarray(out["image"]) == 0).any())
    assert changed >= 2


def test_bad_augmentation_settings_are_refused():
    with pytest.raises(ConfigError, match="rotate_degrees"):
        stack_augmentation(rotate_degrees=-1)
    with pytest.raises(ConfigError, match="spatial_probability"):
        stack_augmentation(spatial_probability=2)
