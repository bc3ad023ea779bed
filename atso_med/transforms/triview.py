"""Tri-view 2D sampling of 3D volumes for RSTN: 3-slice stacks, their inverse, slice selection.

Conventions (shared by the whole package):

* A volume is indexed ``(i, j, k) = (X, Y, Z)``, optionally with a leading channel dimension of
  size 1 (MONAI style ``(1, I, J, K)``). Plane ``"X"``, ``"Y"``, ``"Z"`` is array axis 0, 1, 2 of
  the spatial part.
* The 2D sample of plane ``P`` at position ``j`` is the stack of slices ``j - 1, j, j + 1`` along
  that axis, channels first, shape ``(3, H, W)`` where ``(H, W)`` are the two other axes in their
  original order (X -> ``(J, K)``, Y -> ``(I, K)``, Z -> ``(I, J)``). At an edge the missing
  neighbour repeats slice ``j``; a size-1 axis gives three copies of its only slice.
* Putting stacks back (:class:`StackAccumulator`, :func:`stacks_to_volume`): slice ``j`` is
  covered by channel 2 of stack ``j - 1``, channel 1 of stack ``j`` and channel 0 of stack
  ``j + 1``, where those stacks exist. The repeated channel of an edge stack (channel 0 of stack
  0, channel 2 of the last stack) is a copy, not a prediction of a neighbour, and is ignored, so
  an edge slice is the mean of 2 stacks (1 for a size-1 axis) and an inner slice of 3, as the
  reference RSTN testing does. Stacking the stacks of a label back gives the label exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy, convert_to_tensor

from atso_med.errors import ConfigError, DatasetError, GridMismatchError

__all__ = [
    "PLANES",
    "SliceStack",
    "SliceStackD",
    "SliceStackDict",
    "SliceStackd",
    "StackAccumulator",
    "iter_stacks",
    "plane_axis",
    "positive_slice_filter",
    "slice_pixel_counts",
    "slice_stack",
    "stacks_to_volume",
]

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


def _split_shape(shape: Sequence[int]) -> tuple[int, tuple[int, int, int]]:
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
    """:func:`_split_shape` of a volume's shape."""
    return _split_shape(volume.shape)


def _stack_indices(positions: np.ndarray, size: int) -> np.ndarray:
    """Slice indices ``(B, 3)`` of the stacks at ``positions``, edges repeating the centre."""
    return np.stack([np.maximum(positions - 1, 0), positions, np.minimum(positions + 1, size - 1)], axis=1)


def _check_positions(positions: np.ndarray, size: int, plane: str) -> None:
    if positions.size and (positions.min() < 0 or positions.max() >= size):
        bad = positions[(positions < 0) | (positions >= size)][0]
        raise ConfigError(f"slice index {int(bad)} out of range for plane {plane} of size {size}")


def _as_positions(indices: Any) -> np.ndarray:
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
    _check_positions(positions, size, plane)
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
    positions = _as_positions(index)
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


class SliceStack(Transform):
    """Array transform: the 3-slice stack of a volume at a given position (see :func:`slice_stack`).

    Args:
        plane: ``"X"``, ``"Y"`` or ``"Z"``.

    Raises:
        ConfigError: for an unknown plane.
    """

    backend = ["torch", "numpy"]

    def __init__(self, plane: str) -> None:
        plane_axis(plane)
        self.plane = plane.upper()

    def __call__(self, volume: NdarrayOrTensor, index: int) -> NdarrayOrTensor:
        """Stack of ``volume`` at ``index``.

        Args:
            volume: array or tensor ``(I, J, K)`` or ``(1, I, J, K)``.
            index: slice position along the plane's axis.

        Returns:
            ``(3, H, W)`` of the same type as ``volume``.

        Raises:
            ConfigError: for an index outside the axis.
            GridMismatchError: if ``volume`` does not have one of the accepted shapes.
        """
        return slice_stack(volume, self.plane, index)


class SliceStackd(MapTransform):
    """Dictionary transform: replace each key's volume by its 3-slice stack at the sample's index.

    The position is read from ``data[index_key]``; the plane is written to ``data[plane_key]``
    and the position (as a Python int) back to ``data[index_key]``, so that a batch remembers
    where its samples came from. Image and label keys get the same stack.

    Args:
        keys: keys of the volumes to slice (image and label).
        plane: ``"X"``, ``"Y"`` or ``"Z"``.
        index_key: key holding the slice position.
        plane_key: key that receives the plane name.
        allow_missing_keys: do not raise if a key is absent.

    Raises:
        ConfigError: for an unknown plane.
    """

    backend = SliceStack.backend

    def __init__(
        self,
        keys: KeysCollection,
        plane: str,
        index_key: str = "slice_index",
        plane_key: str = "slice_plane",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.stacker = SliceStack(plane)
        self.index_key = index_key
        self.plane_key = plane_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Slice every selected key of ``data``.

        Args:
            data: a sample with the volumes and ``index_key``.

        Returns:
            A shallow copy of ``data`` with stacks ``(3, H, W)`` in place of the volumes and the
            plane and index recorded.

        Raises:
            ConfigError: if ``index_key`` is missing or its index is outside the axis.
            GridMismatchError: if a volume does not have one of the accepted shapes.
        """
        d = dict(data)
        if self.index_key not in d:
            raise ConfigError(f"SliceStackd: the sample has no {self.index_key!r} entry")
        positions = _as_positions(d[self.index_key])
        if positions.size != 1:
            raise ConfigError(f"SliceStackd: {self.index_key!r} must hold one index, got {d[self.index_key]!r}")
        index = int(positions[0])
        for key in self.key_iterator(d):
            d[key] = self.stacker(d[key], index)
        d[self.index_key] = index
        d[self.plane_key] = self.stacker.plane
        return d


SliceStackD = SliceStackDict = SliceStackd


class StackAccumulator:
    """Streams per-position 3-channel predictions of one plane back into a volume.

    Each added stack spreads its channels onto slices ``j - 1, j, j + 1`` (ignoring an edge
    stack's repeated channel, see the module docstring); :meth:`result` divides each slice by the
    number of stacks that covered it. Memory: one float32 volume of sums (numpy, or a tensor on
    the device of the first tensor batch) plus one count per position, never a per-voxel count.

    Args:
        plane: ``"X"``, ``"Y"`` or ``"Z"``.
        shape: the volume shape, ``(I, J, K)`` or ``(1, I, J, K)``; the result has this shape.

    Raises:
        ConfigError: for an unknown plane.
        GridMismatchError: if ``shape`` is neither 3D nor ``(1, I, J, K)``.
    """

    def __init__(self, plane: str, shape: Sequence[int]) -> None:
        self.axis = plane_axis(plane)
        self.plane = plane.upper()
        self.shape = tuple(int(s) for s in shape)
        _, spatial = _split_shape(self.shape)
        self._spatial: tuple[int, int, int] = spatial
        self.size = spatial[self.axis]
        self._plane_shape = tuple(s for a, s in enumerate(spatial) if a != self.axis)
        self._sums: NdarrayOrTensor | None = None
        self.counts = np.zeros(self.size, dtype=np.int64)
        self._result: NdarrayOrTensor | None = None

    def _buffer(self, like: NdarrayOrTensor) -> NdarrayOrTensor:
        if self._sums is None:
            if isinstance(like, torch.Tensor):
                self._sums = torch.zeros(self._spatial, dtype=torch.float32, device=like.device)
            else:
                self._sums = np.zeros(self._spatial, dtype=np.float32)
        return self._sums

    def add(self, indices: Any, batch: NdarrayOrTensor) -> None:
        """Add the predictions of the stacks at ``indices``.

        Positions may come in any order, in batches of any size, and more than once (repeats
        are averaged in).

        Args:
            indices: ``B`` positions (int, sequence, array or tensor).
            batch: ``(B, 3, H, W)`` predictions (a single ``(3, H, W)`` stack is accepted with
                one index), array or tensor; converted to the accumulator's float32 buffer.

        Raises:
            ConfigError: for positions outside the axis, a count that does not match the batch,
                or adding after :meth:`result`.
            GridMismatchError: if the stacks do not have the plane's ``(3, H, W)`` shape.
        """
        if self._result is not None:
            raise ConfigError("StackAccumulator: cannot add after result() was taken")
        positions = _as_positions(indices)
        if not isinstance(batch, torch.Tensor):
            batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        expected = (3, *self._plane_shape)
        if batch.ndim != 4 or tuple(int(s) for s in batch.shape[1:]) != expected:
            raise GridMismatchError(
                f"plane {self.plane} stacks must have shape (B, {expected[0]}, {expected[1]}, "
                f"{expected[2]}), got {tuple(batch.shape)}"
            )
        if int(batch.shape[0]) != positions.size:
            raise ConfigError(f"{positions.size} indices for a batch of {int(batch.shape[0])} stacks")
        _check_positions(positions, self.size, self.plane)
        sums = self._buffer(batch)
        if isinstance(sums, torch.Tensor):
            src = convert_to_tensor(batch, dtype=torch.float32, device=sums.device, track_meta=False)
            view = sums.movedim(self.axis, 0)
        else:
            src = convert_to_numpy(batch, dtype=np.float32)
            view = np.moveaxis(sums, self.axis, 0)
        last = self.size - 1
        for b, j in enumerate(positions.tolist()):
            # Channel c of stack j is slice j + c - 1; an edge stack's clamped copy is skipped.
            for c, target in enumerate((j - 1, j, j + 1)):
                if 0 <= target <= last:
                    view[target] += src[b, c]
                    self.counts[target] += 1

    def result(self, skipped_as_zero: bool = False) -> NdarrayOrTensor:
        """The averaged volume.

        The division happens in place, so the accumulator is finished afterwards; calling
        ``result`` again returns the same volume.

        Args:
            skipped_as_zero: if False, every slice must have been covered by at least one stack
                and is divided by the number of stacks actually added. If True, stacks never
                added count as zero predictions: every slice is divided by the number of stacks
                a full pass would give it (as RSTN's fine rounds treat skipped stacks).

        Returns:
            float32 volume of ``shape``: a tensor if the first batch was a tensor (on its
            device), else a numpy array. An accumulator with nothing added and
            ``skipped_as_zero=True`` gives zeros as a numpy array.

        Raises:
            ConfigError: if ``skipped_as_zero`` is False and some slice was never covered.
        """
        if self._result is not None:
            return self._result
        if skipped_as_zero:
            positions = np.arange(self.size)
            divisor = 1 + (positions > 0) + (positions < self.size - 1)
        else:
            missing = np.flatnonzero(self.counts == 0)
            if missing.size:
                raise ConfigError(
                    f"StackAccumulator: {missing.size} of {self.size} positions of plane "
                    f"{self.plane} were never covered (first: {int(missing[0])})"
                )
            divisor = self.counts
        sums = self._buffer(np.empty(0))
        div_shape = [1, 1, 1]
        div_shape[self.axis] = self.size
        div = divisor.astype(np.float32).reshape(div_shape)
        if isinstance(sums, torch.Tensor):
            sums /= torch.as_tensor(div, device=sums.device)
        else:
            sums /= div
        self._result = sums.reshape(self.shape)
        self._sums = None
        return self._result


def stacks_to_volume(stacks: NdarrayOrTensor, plane: str, shape: Sequence[int]) -> NdarrayOrTensor:
    """Inverse of slicing: average the stacks of every position back into a volume.

    Args:
        stacks: ``(N, 3, H, W)`` predictions where stack ``n`` is at position ``n`` and ``N`` is
            the size of the plane's axis.
        plane: ``"X"``, ``"Y"`` or ``"Z"``.
        shape: the volume shape, ``(I, J, K)`` or ``(1, I, J, K)``.

    Returns:
        float32 volume of ``shape``, each voxel the mean of the (up to 3) stacks covering it;
        same container type as ``stacks``.

    Raises:
        ConfigError: for an unknown plane or if ``N`` is not the size of the axis.
        GridMismatchError: if the stacks do not match ``shape``.
    """
    acc = StackAccumulator(plane, shape)
    if int(stacks.shape[0]) != acc.size:
        raise ConfigError(f"plane {acc.plane} has {acc.size} positions but {int(stacks.shape[0])} stacks were given")
    acc.add(np.arange(acc.size), stacks)
    return acc.result()


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

    A slice is positive if its centre slice has at least one organ voxel. Over all ``N_pos``
    positive slices of the whole training set, ``n_keep = floor((1 - drop_fraction) * N_pos)``
    (at least 1); the threshold is the organ pixel count of the ``n_keep``-th largest positive
    slice, and every slice with a count ``>= threshold`` is kept. So about ``drop_fraction`` of
    the positive slices are dropped (fewer when counts tie at the threshold), and no empty slice
    is ever kept. ``drop_fraction=0`` keeps every positive slice.

    Args:
        label_volumes: label volumes ``(I, J, K)`` or ``(1, I, J, K)`` (arrays or tensors; may
            be a lazy iterable, each volume is only counted and released).
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
