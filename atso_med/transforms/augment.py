"""Random augmentation of training stacks, built from MONAI's transforms.

A stack is a ``{"image": (3, H, W), "label": (3, H, W)}`` item: its 3 slices are the channels of a
2D image, so every spatial transform moves them, and the label, together. The choices follow the
from-scratch recipe of nnU-Net, scaled to CT slices of a fixed orientation: small rotations and
scalings rather than mirroring (left and right are not interchangeable in the abdomen).
"""

from __future__ import annotations

import math

from monai.transforms import (
    Compose,
    RandAffined,
    RandCoarseDropoutd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from atso_med.errors import ConfigError

__all__ = ["stack_augmentation"]


def stack_augmentation(
    seed: int = 0,
    rotate_degrees: float = 15.0,
    scale: float = 0.15,
    spatial_probability: float = 0.8,
    intensity_scale: float = 0.15,
    intensity_shift: float = 0.1,
    noise_std: float = 0.03,
    cutout: bool = False,
    cutout_size: int = 16,
) -> Compose:
    """The training augmentation of one stack (dictionary transforms on ``image`` and ``label``).

    Args:
        seed: seeds every random transform (the run's data seed).
        rotate_degrees: rotation drawn uniformly in +-this many degrees.
        scale: zoom drawn uniformly in ``1 +- scale`` per axis.
        spatial_probability: probability of the rotation/scaling of a stack.
        intensity_scale: windowed intensities multiplied by ``1 + U(-f, f)`` (probability 0.5).
        intensity_shift: ``U(-s, s)`` added to the windowed intensities (probability 0.5).
        noise_std: Gaussian noise of at most this standard deviation (probability 0.3).
        cutout: add the paper appendix's cutout (MONAI ``RandCoarseDropoutd``, probability 0.5):
            1 to 3 holes of ``cutout_size`` to twice that many pixels filled with 0 in the image.
        cutout_size: smallest side of a cutout hole in pixels.

    Returns:
        A seeded MONAI ``Compose``; the label is resampled by nearest neighbour, so it stays binary.

    Raises:
        ConfigError: on a negative magnitude or a probability outside [0, 1].
    """
    for name, value in (
        ("rotate_degrees", rotate_degrees),
        ("scale", scale),
        ("intensity_scale", intensity_scale),
        ("intensity_shift", intensity_shift),
        ("noise_std", noise_std),
    ):
        if not float(value) >= 0.0:
            raise ConfigError(f"augmentation {name} must be >= 0, got {value!r}")
    if not 0.0 <= float(spatial_probability) <= 1.0:
        raise ConfigError(f"augmentation spatial_probability must be in [0, 1], got {spatial_probability!r}")
    if int(cutout_size) < 1:
        raise ConfigError(f"augmentation cutout_size must be >= 1 pixel, got {cutout_size!r}")
    transforms = [
        RandAffined(
            keys=["image", "label", "weight"],  # a pseudo label's voxel weights move with it
            prob=float(spatial_probability),
            rotate_range=(math.radians(float(rotate_degrees)),),
            scale_range=(float(scale), float(scale)),
            mode=("bilinear", "nearest", "nearest"),
            padding_mode="zeros",
            allow_missing_keys=True,
        ),
        RandScaleIntensityd(keys="image", factors=float(intensity_scale), prob=0.5),
        RandShiftIntensityd(keys="image", offsets=float(intensity_shift), prob=0.5),
        RandGaussianNoised(keys="image", std=float(noise_std), prob=0.3),
    ]
    if cutout:
        size = int(cutout_size)
        transforms.append(
            RandCoarseDropoutd(
                keys="image",
                holes=1,
                max_holes=3,
                spatial_size=(size, size),
                max_spatial_size=(2 * size, 2 * size),
                fill_value=0.0,
                prob=0.5,
            )
        )
    augmentation = Compose(transforms)
    augmentation.set_random_state(seed=int(seed))
    return augmentation
