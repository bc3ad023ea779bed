"""Dice similarity coefficient (DSC) of binary volumes, per case and over a set of cases.

Counting is exact: voxels are counted as integers (``np.count_nonzero`` / ``torch.count_nonzero``)
and only the final ratio is a float. Any non-zero value is organ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor

from atso_med.errors import ConfigError, DatasetError, GridMismatchError

__all__ = ["DiceAccumulator", "dice_score", "dice_summary", "global_dice", "pooled_dice"]


def _overlap_counts(prediction: NdarrayOrTensor, truth: NdarrayOrTensor) -> tuple[int, int, int]:
    """``(|P & G|, |P|, |G|)`` as Python ints.

    Raises:
        GridMismatchError: if the shapes differ.
    """
    p_shape = tuple(int(s) for s in np.shape(prediction))
    t_shape = tuple(int(s) for s in np.shape(truth))
    if p_shape != t_shape:
        raise GridMismatchError(f"prediction shape {p_shape} differs from truth shape {t_shape}")
    if isinstance(prediction, torch.Tensor) or isinstance(truth, torch.Tensor):
        # Count on the tensor's own device; only three integers travel back.
        device = prediction.device if isinstance(prediction, torch.Tensor) else truth.device
        p = torch.as_tensor(prediction, device=device) != 0
        t = torch.as_tensor(truth, device=device) != 0
        counts = torch.stack([torch.count_nonzero(p & t), torch.count_nonzero(p), torch.count_nonzero(t)])
        inter, n_p, n_t = (int(c) for c in counts.cpu().tolist())
        return inter, n_p, n_t
    p = np.asarray(prediction) != 0
    t = np.asarray(truth) != 0
    return int(np.count_nonzero(p & t)), int(np.count_nonzero(p)), int(np.count_nonzero(t))


def _ratio(intersection: int, size_sum: int) -> float:
    """``2 |P & G| / (|P| + |G|)``, 1.0 when both are empty."""
    return 1.0 if size_sum == 0 else 2.0 * intersection / size_sum


def pooled_dice(counts: Iterable[Sequence[int]]) -> float:
    """DSC of several cases counted as one volume, from their ``(|P & G|, |P|, |G|)`` counts.

    The one definition of the global DSC: :func:`global_dice`, :class:`DiceAccumulator`, the
    engines' :class:`~atso_med.metrics.cumulative.GlobalDiceMetric` and the experiment reports
    (which pool the counts their journal holds) all end here.

    Args:
        counts: one ``(intersection, prediction voxels, truth voxels)`` triple per case.

    Returns:
        ``2 sum|P & G| / (sum|P| + sum|G|)``; 1.0 when every volume is empty.
    """
    intersection = size_sum = 0
    for inter, n_p, n_t in counts:
        intersection += int(inter)
        size_sum += int(n_p) + int(n_t)
    return _ratio(intersection, size_sum)


def dice_score(prediction: NdarrayOrTensor, truth: NdarrayOrTensor) -> float:
    """DSC of two binary volumes.

    Args:
        prediction: predicted mask, array or tensor of any shape; non-zero = organ.
        truth: ground-truth mask of the same shape; non-zero = organ.

    Returns:
        ``2 |P & G| / (|P| + |G|)``: 1.0 when both are empty, 0.0 when exactly one is.

    Raises:
        GridMismatchError: if the shapes differ.
    """
    inter, n_p, n_t = _overlap_counts(prediction, truth)
    return _ratio(inter, n_p + n_t)


def dice_summary(scores: Mapping[str, float] | Iterable[float]) -> dict[str, float | int]:
    """Mean, standard deviation, count and range of per-case DSCs.

    The standard deviation is the population one (``ddof=0``, numpy's default), the spread of
    the evaluated cases themselves, as the RSTN evaluation reports it next to the mean.

    Args:
        scores: per-case DSC by case id (or just the values).

    Returns:
        ``{"mean", "std", "n", "min", "max"}``.

    Raises:
        ConfigError: if there are no scores or one is not a finite number.
    """
    values = list(scores.values()) if isinstance(scores, Mapping) else list(scores)
    if not values:
        raise ConfigError("dice_summary: no scores to summarise")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ConfigError(f"dice_summary: scores must be finite numbers, got {values!r}")
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=0)),
        "n": int(arr.size),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def global_dice(pairs: Iterable[tuple[NdarrayOrTensor, NdarrayOrTensor]]) -> float:
    """DSC of all cases counted as one volume: ``2 sum|P & G| / (sum|P| + sum|G|)``.

    Streams: each pair is counted and released, nothing is concatenated. Cases may differ in
    shape; the two volumes of one pair may not.

    Args:
        pairs: ``(prediction, truth)`` pairs.

    Returns:
        The pooled DSC; 1.0 when every volume is empty.

    Raises:
        ConfigError: if there are no pairs.
        GridMismatchError: if the two volumes of a pair differ in shape.
    """
    counts = [_overlap_counts(prediction, truth) for prediction, truth in pairs]
    if not counts:
        raise ConfigError("global_dice: no cases to evaluate")
    return pooled_dice(counts)


class DiceAccumulator:
    """Streaming evaluation: per-case DSC, their summary, and the pooled (global) DSC.

    Only three integers per case are kept, never the volumes.
    """

    def __init__(self) -> None:
        self._per_case: dict[str, float] = {}
        self._counts: list[tuple[int, int, int]] = []

    def add(self, case_id: Any, prediction: NdarrayOrTensor, truth: NdarrayOrTensor) -> float:
        """Score one case.

        Args:
            case_id: unique case identifier (stored as ``str``).
            prediction: predicted mask; non-zero = organ.
            truth: ground-truth mask of the same shape.

        Returns:
            The case's DSC.

        Raises:
            DatasetError: if ``case_id`` was already added.
            GridMismatchError: if the shapes differ.
        """
        key = str(case_id)
        if key in self._per_case:
            raise DatasetError(f"case {key!r} was already evaluated")
        inter, n_p, n_t = _overlap_counts(prediction, truth)
        score = _ratio(inter, n_p + n_t)
        self._per_case[key] = score
        self._counts.append((inter, n_p, n_t))
        return score

    @property
    def per_case(self) -> dict[str, float]:
        """DSC by case id, in the order added (a copy)."""
        return dict(self._per_case)

    def __len__(self) -> int:
        return len(self._per_case)

    def summary(self) -> dict[str, float | int]:
        """:func:`dice_summary` of the cases added so far.

        Raises:
            ConfigError: if no case was added.
        """
        return dice_summary(self._per_case)

    def global_dice(self) -> float:
        """Pooled DSC of the cases added so far (see :func:`global_dice`).

        Raises:
            ConfigError: if no case was added.
        """
        if not self._per_case:
            raise ConfigError("DiceAccumulator: no cases to evaluate")
        return pooled_dice(self._counts)
