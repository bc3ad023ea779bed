"""2D training samples cut from cached CT volumes along one plane."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from atso_med.errors import DatasetError


class SliceStackDataset(TorchDataset):
    """3-slice stacks of one plane, cut from CT volumes that a MONAI ``CacheDataset`` loads and keeps.

    Each item is ``{"image": (3, H, W) float tensor, "label": (3, H, W) float tensor, "id": case id,
    "slice_index": j}``. The volumes (``image`` with the HU window applied, ``label`` binary, both in
    canonical order) are cached once in memory that the data loader's workers share, and every
    sample is cut from them on the fly; uncached volumes (``cache_rate < 1``) are re-read on access.

    Args:
        data: data-list items (``{"id", "image", "label"}``).
        transform: the volume preprocessing (loading, HU window).
        plane: "X", "Y" or "Z".
        drop_fraction: ``None`` keeps every position (evaluation); otherwise RSTN's training filter:
            slices without organ are dropped and so is the smallest ``drop_fraction`` of the rest.
        cache_rate: fraction of volumes kept in memory.
        num_workers: threads that load the cache.
        augmentation: optional random transform of every sample (a stack dictionary), e.g.
            :func:`~atso_med.transforms.augment.stack_augmentation`; ``None`` for evaluation.

    Raises:
        DatasetError: when a training data list is empty, or the filter leaves no slice to train on.
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Callable,
        plane: str,
        drop_fraction: float | None = 0.02,
        cache_rate: float = 1.0,
        num_workers: int = 0,
        augmentation: Callable | None = None,
    ):
        from monai.data import CacheDataset

        from atso_med.transforms.triview import plane_axis, positive_slice_filter

        if len(data) == 0 and drop_fraction is not None:
            raise DatasetError("the training data list holds no case")
        self.axis = plane_axis(plane)
        self.volumes = CacheDataset(
            data, transform, cache_rate=cache_rate, num_workers=num_workers or None, progress=False
        )
        self.plane = plane
        self.augmentation = augmentation
        if drop_fraction is None:
            shapes = [self.volumes[v]["image"].shape for v in range(len(self.volumes))]
            self.samples = [(v, j) for v, shape in enumerate(shapes) for j in range(shape[-3 + self.axis])]
            self.threshold = 0
        else:
            labels = [self.volumes[v]["label"] for v in range(len(self.volumes))]
            self.samples, self.threshold = positive_slice_filter(labels, plane, drop_fraction=drop_fraction)
            if not self.samples:
                raise DatasetError(f"no slice of plane {plane} contains the organ: nothing to train on")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        from atso_med.transforms.triview import slice_stack

        volume_index, slice_index = self.samples[index]
        item = self.volumes[volume_index]
        sample = {
            "id": item.get("id", str(volume_index)),
            "slice_index": slice_index,
            "image": torch.as_tensor(np.asarray(slice_stack(item["image"], self.plane, slice_index), dtype=np.float32)),
        }
        if "label" in item:
            sample["label"] = torch.as_tensor(
                np.asarray(slice_stack(item["label"], self.plane, slice_index), dtype=np.float32)
            )
        if self.augmentation is not None:
            sample = self.augmentation(sample)
        return sample


def training_sampler(
    dataset: SliceStackDataset, num_samples: int, seed: int, labeled_share: float | None = None
) -> torch.utils.data.Sampler:
    """The order in which a training draws its stacks.

    By default every stack is equally likely (``RandomSampler``, as RSTN trains). With
    ``labeled_share`` (an option beyond the paper, off in its protocol), stacks of the labeled cases
    (data-list ``source: labeled``) make up that share of the draws and stacks of pseudo-labelled
    cases (``source: pseudo``) the rest, however many cases each side has: with 2 labeled and 17
    pseudo-labelled cases, 0.5 draws a labeled stack about 8 times as often as by default. A list
    without both kinds of case (M0, the fully supervised bound) is drawn as by default.

    Args:
        dataset: the training stacks.
        num_samples: stacks drawn in all (iterations x batch size).
        seed: seed of the draw.
        labeled_share: share of the draws from labeled cases, in (0, 1); ``None`` = off.

    Returns:
        A ``RandomSampler`` or, with ``labeled_share``, a ``WeightedRandomSampler`` (with replacement).

    Raises:
        ConfigError: a share outside (0, 1).
    """
    from atso_med.errors import ConfigError

    if labeled_share is not None and not 0.0 < float(labeled_share) < 1.0:
        raise ConfigError(f"labeled_share must be in (0, 1) or null, got {labeled_share!r}")
    generator = torch.Generator().manual_seed(int(seed))
    sources = [dataset.volumes[v].get("source") for v, _ in dataset.samples]
    labeled = np.array([s == "labeled" for s in sources])
    pseudo = np.array([s == "pseudo" for s in sources])
    if labeled_share is None or not labeled.any() or not pseudo.any():
        return torch.utils.data.RandomSampler(dataset, num_samples=int(num_samples), generator=generator)
    share = float(labeled_share)
    weights = np.where(labeled, share / labeled.sum(), 0.0) + np.where(pseudo, (1.0 - share) / pseudo.sum(), 0.0)
    return torch.utils.data.WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double), int(num_samples), replacement=True, generator=generator
    )
