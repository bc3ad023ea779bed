"""Tri-view transforms of RSTN: the 3-slice stack of a position, and stacks put back into a volume.

The geometry (planes, stacks, the positive-slice filter) is :mod:`atso_med.data.slices`'s.
Putting stacks back (:class:`StackAccumulator`, :func:`stacks_to_volume`): slice ``j`` is
covered by channel 2 of stack ``j - 1``, channel 1 of stack ``j`` and channel 0 of stack
``j + 1``, where those stacks exist. The repeated channel of an edge stack (channel 0 of stack
0, channel 2 of the last stack) is a copy, not a prediction of a neighbour, and is ignored, so
an edge slice is the mean of 2 stacks (1 for a size-1 axis) and an inner slice of 3, as the
reference RSTN testing does. Stacking the stacks of a label back gives the label exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy, convert_to_tensor

from atso_med.data.slices import as_positions, check_positions, plane_axis, slice_stack, split_shape
from atso_med.errors import ConfigError, GridMismatchError

__all__ = [
    "SliceStack",
    "SliceStackD",
    "SliceStackDict",
    "SliceStackd",
    "StackAccumulator",
    "stacks_to_volume",
]


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
        positions = as_positions(d[self.index_key])
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
        _, spatial = split_shape(self.shape)
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
        positions = as_positions(indices)
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
        check_positions(positions, self.size, self.plane)
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
