"""Slices: the tri-view geometry of RSTN, its positive-slice filter, and the training samples.

Conventions (shared by the whole package):

* A volume is indexed ``(i, j, k) = (X, Y, Z)``, optionally with a leading channel dimension of
  size 1 (MONAI style ``(1, I, J, K)``). Plane ``"X"``, ``"Y"``, ``"Z"`` is array axis 0, 1, 2 of
  the spatial part.
* The 2D sample of plane ``P`` at position ``j`` is the stack of slices ``j - 1, j, j + 1`` along
  that axis, channels first, shape ``(3, H, W)`` where ``(H, W)`` are the two other axes in their
  original order (X -> ``(J, K)``, Y -> ``(I, K)``, Z -> ``(I, J)``). At an edge the missing
  neighbour repeats slice ``j``; a size-1 axis gives three copies of its only slice.

Training cuts stacks where the label has organ (:func:`positive_slice_filter`) from cached volumes
(:class:`SliceStackDataset`) and draws them with :func:`training_sampler`. A training of several
classes reads label volumes of class indices (0 background, ``c`` class ``c``) and gives each
stack's label as one binary channel per slice and class, class-major (:func:`class_channels`).
The MONAI transforms around stacks, and their inverse, are in :mod:`atso_med.transforms.triview`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from torch.utils.data import Dataset as TorchDataset

from atso_med.data.datalist import UNCERTAIN_KEY
from atso_med.data.labels import check_class_indices
from atso_med.errors import ConfigError, DatasetError, GridMismatchError
from atso_med.flags import as_count

PLANES: tuple[str, str, str] = ("X", "Y", "Z")


def plane_axis(plane: str) -> int:
    """The spatial array axis of a plane.

    Args:
        plane: ``"X"``, ``"Y"`` or ``"Z"`` (any case).

    Returns:
        0, 1 or 2.

    Raises:
        ConfigError: if ``plane`` is not one of the three planes.
    """
    if isinstance(plane, str) and plane.upper() in PLANES:
        return PLANES.index(plane.upper())
    raise ConfigError(f"unknown plane {plane!r}: expected one of {', '.join(PLANES)}")


def split_shape(shape: Sequence[int]) -> tuple[int, tuple[int, int, int]]:
    """Offset of the spatial axes (0 or 1) and the spatial part of a volume shape.

    Raises:
        GridMismatchError: if the shape is neither ``(I, J, K)`` nor ``(1, I, J, K)``, or empty.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        offset = 0
    elif len(shape) == 4 and shape[0] == 1:
        offset = 1
    else:
        raise GridMismatchError(f"expected a volume of shape (I, J, K) or (1, I, J, K), got {shape}")
    spatial = shape[offset:]
    if min(spatial) < 1:
        raise GridMismatchError(f"volume of shape {shape} is empty")
    return offset, spatial  # type: ignore[return-value]


def _spatial(volume: NdarrayOrTensor) -> tuple[int, tuple[int, int, int]]:
    """:func:`split_shape` of a volume's shape."""
    return split_shape(volume.shape)


def _stack_indices(positions: np.ndarray, size: int) -> np.ndarray:
    """Slice indices ``(B, 3)`` of the stacks at ``positions``, edges repeating the centre."""
    return np.stack([np.maximum(positions - 1, 0), positions, np.minimum(positions + 1, size - 1)], axis=1)


def check_positions(positions: np.ndarray, size: int, plane: str) -> None:
    if positions.size and (positions.min() < 0 or positions.max() >= size):
        bad = positions[(positions < 0) | (positions >= size)][0]
        raise ConfigError(f"slice index {int(bad)} out of range for plane {plane} of size {size}")


def as_positions(indices: Any) -> np.ndarray:
    """Any int, sequence, array or tensor of indices as a 1D int64 numpy array."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise ConfigError(f"slice indices must be integers, got {indices!r}")
    return arr.astype(np.int64).reshape(-1)


def _gather(volume: NdarrayOrTensor, plane: str, positions: np.ndarray) -> NdarrayOrTensor:
    """Stacks at ``positions`` as one array ``(B, 3, H, W)`` of the volume's type."""
    offset, spatial = _spatial(volume)
    axis = plane_axis(plane)
    size = spatial[axis]
    check_positions(positions, size, plane)
    flat = _stack_indices(positions, size).reshape(-1)
    if isinstance(volume, torch.Tensor):
        vol = volume[0] if offset else volume
        picked = vol.index_select(axis, torch.as_tensor(flat, device=vol.device))
        picked = picked.movedim(axis, 0).contiguous()
    else:
        vol = np.asarray(volume)
        vol = vol[0] if offset else vol
        picked = np.ascontiguousarray(np.moveaxis(np.take(vol, flat, axis=axis), axis, 0))
    other = [s for a, s in enumerate(spatial) if a != axis]
    return picked.reshape(len(positions), 3, other[0], other[1])


def slice_stack(volume: NdarrayOrTensor, plane: str, index: int) -> NdarrayOrTensor:
    """The 3-slice stack of ``volume`` at position ``index`` along ``plane``.

    Args:
        volume: array or tensor ``(I, J, K)`` or ``(1, I, J, K)``.
        plane: ``"X"``, ``"Y"`` or ``"Z"``.
        index: slice position along the plane's axis.

    Returns:
        Slices ``index - 1, index, index + 1`` as ``(3, H, W)``, same type, dtype and device as
        ``volume``; at an edge the missing neighbour repeats slice ``index``.

    Raises:
        ConfigError: for an unknown plane or an index outside the axis.
        GridMismatchError: if ``volume`` does not have one of the accepted shapes.
    """
    positions = as_positions(index)
    if positions.size != 1:
        raise ConfigError(f"slice_stack takes one index, got {index!r}")
    return _gather(volume, plane, positions)[0]


def iter_stacks(volume: NdarrayOrTensor, plane: str, batch_size: int) -> Iterator[tuple[np.ndarray, NdarrayOrTensor]]:
    """All stacks of a plane in order, in batches, for inference.

    Args:
        volume: array or tensor ``(I, J, K)`` or ``(1, I, J, K)``.
        plane: ``"X"``, ``"Y"`` or ``"Z"``.
        batch_size: number of stacks per batch (the last batch may be smaller).

    Yields:
        ``(indices, batch)``: the int64 positions of the batch and the stacks ``(B, 3, H, W)``,
        same type, dtype and device as ``volume``.

    Raises:
        ConfigError: for an unknown plane or a batch size below 1.
        GridMismatchError: if ``volume`` does not have one of the accepted shapes.
    """
    is_int = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
    if not is_int or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    _, spatial = _spatial(volume)
    size = spatial[plane_axis(plane)]
    for start in range(0, size, int(batch_size)):
        positions = np.arange(start, min(start + int(batch_size), size), dtype=np.int64)
        yield positions, _gather(volume, plane, positions)


def slice_pixel_counts(label: NdarrayOrTensor, plane: str) -> np.ndarray:
    """Number of non-zero voxels of every slice of a plane.

    Args:
        label: array or tensor ``(I, J, K)`` or ``(1, I, J, K)``; non-zero = organ.
        plane: ``"X"``, ``"Y"`` or ``"Z"``.

    Returns:
        int64 array with one count per position along the plane's axis.

    Raises:
        ConfigError: for an unknown plane.
        GridMismatchError: if ``label`` does not have one of the accepted shapes.
    """
    offset, _ = _spatial(label)
    axis = plane_axis(plane)
    others = tuple(a + offset for a in range(3) if a != axis)
    if offset:
        others = (0, *others)
    if isinstance(label, torch.Tensor):
        return torch.count_nonzero(label, dim=others).cpu().numpy().astype(np.int64)
    return np.count_nonzero(np.asarray(label), axis=others).astype(np.int64)


def positive_slice_filter(
    label_volumes: Iterable[NdarrayOrTensor], plane: str, drop_fraction: float = 0.02
) -> tuple[list[tuple[int, int]], int]:
    """Training slices of a plane, as RSTN picks them: organ slices minus the smallest few.

    A slice is positive if its centre slice has at least one organ voxel (a non-zero voxel: in a
    map of several classes, a voxel of any class, and the count is that of all classes together).
    Over all ``N_pos`` positive slices of the whole training set,
    ``n_keep = floor((1 - drop_fraction) * N_pos)`` (at least 1); the threshold is the organ pixel
    count of the ``n_keep``-th largest positive slice, and every slice with a count
    ``>= threshold`` is kept. So about ``drop_fraction`` of the positive slices are dropped (fewer
    when counts tie at the threshold), and no empty slice is ever kept. ``drop_fraction=0`` keeps
    every positive slice.

    Args:
        label_volumes: label volumes ``(I, J, K)`` or ``(1, I, J, K)``, binary or class indices
            (arrays or tensors; may be a lazy iterable, each volume is only counted and released).
        plane: ``"X"``, ``"Y"`` or ``"Z"``.
        drop_fraction: fraction of the positive slices to drop, in ``[0, 1)``.

    Returns:
        ``(selected, threshold)``: the kept ``(volume_index, slice_index)`` pairs in volume then
        slice order, and the pixel-count threshold.

    Raises:
        ConfigError: for an unknown plane or ``drop_fraction`` outside ``[0, 1)``.
        DatasetError: if no slice of any volume contains the organ.
        GridMismatchError: if a volume does not have one of the accepted shapes.
    """
    plane_axis(plane)
    try:
        frac = Fraction(repr(float(drop_fraction)))  # exact decimal: floor(0.98 * 50) must be 49
    except (TypeError, ValueError):
        raise ConfigError(f"drop_fraction must be a number, got {drop_fraction!r}") from None
    if not 0 <= frac < 1:
        raise ConfigError(f"drop_fraction must be in [0, 1), got {drop_fraction!r}")
    counts = [slice_pixel_counts(label, plane) for label in label_volumes]
    positive = np.concatenate([c[c > 0] for c in counts]) if counts else np.zeros(0, np.int64)
    if positive.size == 0:
        raise DatasetError(f"no slice of plane {plane.upper()} contains the organ in any label")
    n_keep = max(1, int((1 - frac) * positive.size))  # int() floors a non-negative Fraction
    threshold = int(np.sort(positive)[::-1][n_keep - 1])
    selected = [(v, int(s)) for v, c in enumerate(counts) for s in np.flatnonzero(c >= threshold)]
    return selected, threshold


def class_channels(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A stack of class indices as one binary channel per slice and class, class-major.

    Args:
        label: ``(S, H, W)`` class indices (0 background, ``c`` class ``c``).
        num_classes: the classes C.

    Returns:
        float32 ``(S * C, H, W)``: channel ``c * S + s`` is 1 where slice ``s`` holds class ``c + 1``
        (the order of :class:`~atso_med.networks.RSTN`'s outputs).
    """
    return torch.cat([label == c for c in range(1, num_classes + 1)]).to(torch.float32)


def group_channels(label: torch.Tensor, class_groups: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    """A stack of class indices, to be scored at merged groups, in the channels of the fine classes.

    Class ``c``'s channels are 1 wherever the label holds any class of ``c``'s group, so every class
    of a group carries the group's mask; the loss sums the classes' probabilities per group
    (:class:`~atso_med.losses.RSTNLoss` with ``class_groups``), and which class of a group the label
    names there does not count (the paper's class reduction of pseudo labels).

    Args:
        label: ``(S, H, W)`` class indices ``0..C``.
        class_groups: per group, its classes (1-based), every class in exactly one group.
        num_classes: the classes C.

    Returns:
        float32 ``(S * C, H, W)``, class-major like :func:`class_channels`.
    """
    group_of = torch.zeros(num_classes + 1, dtype=torch.long)
    for group, members in enumerate(class_groups, start=1):
        group_of[list(members)] = group
    groups = group_of[label.long()]
    return torch.cat([groups == group_of[c] for c in range(1, num_classes + 1)]).to(torch.float32)


class SliceStackDataset(TorchDataset):
    """3-slice stacks of one plane, cut from CT volumes that a MONAI ``CacheDataset`` loads and keeps.

    Each item is ``{"image": (3, H, W) float tensor, "label": (3, H, W) float tensor, "id": case id,
    "slice_index": j}``; with ``num_classes = C > 1`` the label is ``(3 C, H, W)``, one binary
    channel per slice and class, class-major (:func:`class_channels`, after the augmentation). The
    volumes (``image`` with the HU window applied, ``label`` binary or class indices, both in
    canonical order) are cached once in memory that the data loader's workers share, and every
    sample is cut from them on the fly; uncached volumes (``cache_rate < 1``) are re-read on access.
    Every label volume is checked to hold class indices ``0..C`` when the dataset is built.

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
        num_classes: the classes C of the training (1: binary labels).
        class_groups: per merged group, its classes (1-based; every class in exactly one group):
            the labels of items with ``label_level: "groups"`` are scored at the groups
            (:func:`group_channels`), and every sample gets ``grouped`` (1.0 for those, else 0.0)
            for the loss.

    When a training item carries a pseudo label's mask of uncertain voxels (``uncertain``, from
    ``pseudo_label_confidence``), :attr:`weighted` is true and every sample gets ``weight``, the
    label's shape: 0 on the uncertain voxels (and where the augmentation pads), 1 elsewhere, for
    :class:`~atso_med.losses.RSTNLoss` with ``voxel_weights``.

    Raises:
        ConfigError: ``num_classes`` not an integer >= 1.
        DatasetError: when a training data list is empty, or the filter leaves no slice to train on.
        LabelValueError: a label volume holding a value outside ``0..num_classes`` (the message
            names the case, its label file and the values).
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
        num_classes: int = 1,
        class_groups: Sequence[Sequence[int]] | None = None,
    ):
        from monai.data import CacheDataset

        if len(data) == 0 and drop_fraction is not None:
            raise DatasetError("the training data list holds no case")
        self.axis = plane_axis(plane)
        self.num_classes = as_count(num_classes, "num_classes")
        self.class_groups = None if class_groups is None else [tuple(int(c) for c in g) for g in class_groups]
        self.volumes = CacheDataset(
            data, transform, cache_rate=cache_rate, num_workers=num_workers or None, progress=False
        )
        self.plane = plane
        self.augmentation = augmentation
        self.weighted = drop_fraction is not None and any(item.get(UNCERTAIN_KEY) for item in data)
        if drop_fraction is None:
            shapes = [self._checked_volume(v)["image"].shape for v in range(len(self.volumes))]
            self.samples = [(v, j) for v, shape in enumerate(shapes) for j in range(shape[-3 + self.axis])]
            self.threshold = 0
        else:
            labels = [self._checked_volume(v)["label"] for v in range(len(self.volumes))]
            self.samples, self.threshold = positive_slice_filter(labels, plane, drop_fraction=drop_fraction)
            if not self.samples:
                raise DatasetError(f"no slice of plane {plane} contains the organ: nothing to train on")

    def _checked_volume(self, index: int) -> dict:
        """Volume ``index``, its label (if any) checked to hold class indices ``0..num_classes``."""
        item = self.volumes[index]
        if "label" in item:
            case = self.volumes.data[index]
            source = f"case {case.get('id', index)} (label {case.get('label')})"
            if case.get("label_level") == "groups" and self.class_groups is None:
                raise ConfigError(f"{source} is to be scored at merged classes, but the training has no class_groups")
            check_class_indices(np.asarray(item["label"]), self.num_classes, source)
        return item

    def _weight(self, item: dict, slice_index: int) -> torch.Tensor:
        """The loss weight of a stack's voxels: 0 where its pseudo label is uncertain, else 1."""
        uncertain = item.get(UNCERTAIN_KEY)
        if uncertain is None:
            shape = (3, *np.delete(np.shape(item["label"])[-3:], self.axis))
            return torch.ones(shape, dtype=torch.float32)
        return 1.0 - torch.as_tensor(np.asarray(slice_stack(uncertain, self.plane, slice_index), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
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
        if self.weighted:
            sample["weight"] = self._weight(item, slice_index)
        if self.augmentation is not None:
            sample = self.augmentation(sample)
        grouped = self.class_groups is not None and item.get("label_level") == "groups"
        if grouped and "label" in sample:
            sample["label"] = group_channels(sample["label"], self.class_groups, self.num_classes)
        elif self.num_classes > 1 and "label" in sample:
            sample["label"] = class_channels(sample["label"], self.num_classes)
        if self.weighted and self.num_classes > 1:
            sample["weight"] = sample["weight"].repeat(self.num_classes, 1, 1)  # class-major, as the label
        if self.class_groups is not None:
            sample["grouped"] = torch.tensor(float(grouped))
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
