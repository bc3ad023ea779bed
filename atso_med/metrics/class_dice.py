"""Dice per class of label maps of C classes: per case, per class over the cases, and over the classes.

A label map holds 0 (background) and the classes 1..C. Class c of a case is scored as a binary
mask pair, with exact integer voxel counts.

A class absent from a case's truth follows MONAI's ``DiceMetric(ignore_empty=True)`` (its
default): its DSC is undefined (``NaN`` in MONAI; ``None`` here, ``null`` in JSON and an empty
cell in CSV), whether the prediction is empty too or not, and the case leaves the class's mean
DSC. The class's voxels predicted in such a case still count against it in its pooled (global)
DSC, and are counted as ``absent_predicted``. A class present in the truth and not predicted at
all has DSC 0 and is counted as ``vanished``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from atso_med.errors import DatasetError, GridMismatchError
from atso_med.metrics.dice import dice_summary, pooled_dice

__all__ = ["ClassDiceAccumulator", "class_counts", "class_dice", "mean_class_dice"]


def class_counts(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> list[tuple[int, int, int]]:
    """``(|P_c & G_c|, |P_c|, |G_c|)`` of each class c = 1..C of two label maps, as Python ints.

    Raises:
        GridMismatchError: if the shapes differ.
    """
    if prediction.shape != truth.shape:
        raise GridMismatchError(f"prediction shape {prediction.shape} differs from truth shape {truth.shape}")
    counts = []
    for value in range(1, num_classes + 1):
        p, t = prediction == value, truth == value
        counts.append((int(np.count_nonzero(p & t)), int(np.count_nonzero(p)), int(np.count_nonzero(t))))
    return counts


def class_dice(intersection: int, prediction_voxels: int, truth_voxels: int) -> float:
    """DSC of one class of one case by MONAI's rule: ``2 |P & G| / (|P| + |G|)``, NaN when the truth is empty."""
    return 2.0 * intersection / (prediction_voxels + truth_voxels) if truth_voxels else math.nan


def mean_class_dice(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """Mean DSC over the classes 1..C that either label map holds (1.0 when neither holds any).

    The agreement of two label maps as one number: the coarse-to-fine inference's inter-round
    DSC and its per-round DSC against a truth.

    Raises:
        GridMismatchError: if the shapes differ.
    """
    scores = [2.0 * i / (p + t) for i, p, t in class_counts(prediction, truth, num_classes) if p + t]
    return float(np.mean(scores)) if scores else 1.0


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class ClassDiceAccumulator:
    """Streaming per-class evaluation of label maps: per-case records and the per-class summary.

    Only three integers per class and case are kept, never the volumes.

    Args:
        names: the names of the classes 1..C.
        label_values: the truth's label values of each class (one, or a merged group; the report
            names them).
    """

    def __init__(self, names: Sequence[str], label_values: Sequence[Sequence[int]]) -> None:
        self.names = list(names)
        self.label_values = [[int(v) for v in group] for group in label_values]
        self._counts: dict[str, list[tuple[int, int, int]]] = {}

    def add(self, case_id: Any, prediction: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, Any]]:
        """Score one case's label maps (values 0..C; the truth already mapped to the classes).

        Returns:
            By class name: ``{"dsc", "intersection", "prediction_voxels", "truth_voxels",
            "vanished"}`` (``dsc`` ``None`` when the class is absent from the truth).

        Raises:
            DatasetError: if ``case_id`` was already added.
            GridMismatchError: if the shapes differ.
        """
        key = str(case_id)
        if key in self._counts:
            raise DatasetError(f"case {key!r} was already evaluated")
        counts = class_counts(prediction, truth, len(self.names))
        self._counts[key] = counts
        return {
            name: {
                "dsc": _finite_or_none(class_dice(*count)),
                "intersection": count[0],
                "prediction_voxels": count[1],
                "truth_voxels": count[2],
                "vanished": count[2] > 0 and count[1] == 0,
            }
            for name, count in zip(self.names, counts, strict=True)
        }

    def summary(self) -> dict[str, Any]:
        """The ``classes`` section of ``summary.json``.

        Returns:
            ``{"mean_dsc", "global_dsc", "per_class": {name: {...}}}``: per class its ``value``
            (in the prediction) and ``label_values`` (in the truth); ``cases`` with the class in
            the truth and their ``mean_dsc``, ``std_dsc`` (ddof 0), ``min_dsc``, ``max_dsc``;
            ``global_dsc`` (every case pooled, ``None`` when no truth holds the class);
            ``absent`` / ``absent_predicted`` (cases without the class in the truth / of those,
            with it in the prediction); ``vanished`` and ``vanished_cases`` (cases with it in the
            truth and no voxel of it in the prediction). The top ``mean_dsc`` / ``global_dsc``
            are the means over the classes that have one (``None`` when none has).
        """
        per_class = {}
        for index, name in enumerate(self.names):
            counts = {case_id: counts[index] for case_id, counts in self._counts.items()}
            present = {case_id: c for case_id, c in counts.items() if c[2] > 0}
            absent = [c for c in counts.values() if c[2] == 0]
            scores = dice_summary([class_dice(*c) for c in present.values()]) if present else {}
            per_class[name] = {
                "value": index + 1,
                "label_values": self.label_values[index],
                "cases": len(present),
                "mean_dsc": scores.get("mean"),
                "std_dsc": scores.get("std"),
                "min_dsc": scores.get("min"),
                "max_dsc": scores.get("max"),
                "global_dsc": pooled_dice(counts.values()) if present else None,
                "absent": len(absent),
                "absent_predicted": sum(1 for c in absent if c[1] > 0),
                "vanished": sum(1 for c in present.values() if c[1] == 0),
                "vanished_cases": [case_id for case_id, c in present.items() if c[1] == 0],
            }
        return {
            "mean_dsc": _mean_of(entry["mean_dsc"] for entry in per_class.values()),
            "global_dsc": _mean_of(entry["global_dsc"] for entry in per_class.values()),
            "per_class": per_class,
        }


def _mean_of(values: Any) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None
