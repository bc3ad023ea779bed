"""Evaluations of disjoint case sets (an experiment's reference folds) pooled into one, from their journal.

An experiment's journal keeps, per evaluated folder, each case's DSC and voxel counts; its reports
pool folders without reading an image again. An organ mask's result holds per case ``dsc`` and
``counts`` ``(|P & G|, |P|, |G|)``. A result of several classes also holds ``class_names`` and
``class_counts`` (one triple per class and case): its figures are the means over the classes of
each class's mean and pooled DSC, a class absent from a case's truth leaving that case out of the
class's mean (MONAI's ``ignore_empty``), and each case's ``dsc`` is the mean over the classes its
truth holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from atso_med.errors import ConfigError
from atso_med.metrics.class_dice import class_dice
from atso_med.metrics.dice import dice_summary, pooled_dice

__all__ = ["class_result", "pool_results", "result_dsc"]


def result_dsc(result: Mapping[str, Any] | None, metric: str = "mean") -> float | None:
    """The DSC of an evaluation result (or a pooled one): its ``mean_dsc``, or its ``global_dsc`` for
    ``metric == "global"``; ``None`` for no result."""
    if not result:
        return None
    return float(result["global_dsc" if metric == "global" else "mean_dsc"])


def pool_results(results: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Combine evaluations of disjoint case sets (e.g. the reference folds) into one.

    Args:
        results: evaluation results holding per-case ``dsc`` and ``counts`` (and, for several
            classes, ``class_names`` and ``class_counts``); empty or ``None`` entries are skipped.

    Returns:
        ``{"cases", "mean_dsc", "std_dsc", "global_dsc"}`` over all their cases (for several
        classes also ``classes``: per class ``mean_dsc``, ``global_dsc``, ``vanished``), or ``None``
        when there is nothing to pool.

    Raises:
        ConfigError: results of different classes.
    """
    results = [r for r in results if r]
    if not results:
        return None
    names = {tuple(r.get("class_names") or ()) for r in results}
    if len(names) > 1:
        raise ConfigError(f"cannot pool evaluations of different classes: {sorted(names)}")
    class_names = names.pop()
    if class_names:
        counts = {case: c for r in results for case, c in r["class_counts"].items()}
        return class_result(list(class_names), counts)
    summary = dice_summary([v for r in results for v in r["dsc"].values()])
    return {
        "cases": summary["n"],
        "mean_dsc": summary["mean"],
        "std_dsc": summary["std"],
        "global_dsc": pooled_dice(c for r in results for c in r["counts"].values()),
    }


def class_result(names: Sequence[str], class_counts: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, Any]:
    """The figures of label maps of several classes from their per-case, per-class voxel counts.

    Args:
        names: the classes' names, class 1 first.
        class_counts: case id -> one ``(|P_c & G_c|, |P_c|, |G_c|)`` triple per class.

    Returns:
        ``{"cases", "mean_dsc", "std_dsc", "global_dsc", "dsc", "classes"}`` (see :func:`pool_results`;
        ``dsc`` is the per-case mean over the classes the truth holds, ``None`` for none).
    """
    per_class = {}
    for index, name in enumerate(names):
        triples = [counts[index] for counts in class_counts.values()]
        present = [c for c in triples if c[2] > 0]
        per_class[name] = {
            "mean_dsc": float(np.mean([class_dice(*c) for c in present])) if present else None,
            "global_dsc": pooled_dice(triples) if present else None,
            "vanished": sum(1 for c in present if c[1] == 0),
        }
    per_case = {}
    for case, counts in class_counts.items():
        scores = [class_dice(*c) for c in counts if c[2] > 0]
        per_case[case] = float(np.mean(scores)) if scores else None
    defined = [v for v in per_case.values() if v is not None]
    return {
        "cases": len(class_counts),
        "mean_dsc": _mean([c["mean_dsc"] for c in per_class.values()]),
        "std_dsc": float(np.std(defined)) if defined else None,
        "global_dsc": _mean([c["global_dsc"] for c in per_class.values()]),
        "dsc": per_case,
        "classes": per_class,
    }


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None
