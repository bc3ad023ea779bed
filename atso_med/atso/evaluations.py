"""Evaluations of an experiment: a prediction or pseudo-label folder scored against the truth.

An ``evaluate`` step reads the true labels of the cases that have one (the only step that reads a
reference case's truth, besides the fully supervised bound's training) and writes
``reports/evaluations/<folder>/summary.json`` and ``per_case.csv``; its journal result keeps the
voxel counts, so that the reports pool several folders into one global DSC without reading a mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atso_med.atso.layout import ExperimentLayout
from atso_med.atso.logs import logger
from atso_med.atso.steps import Step
from atso_med.data.class_selection import ClassSelection
from atso_med.data.dataset import Dataset
from atso_med.metrics.pooling import class_result

__all__ = ["evaluate"]


def evaluate(
    layout: ExperimentLayout,
    step: Step,
    dataset: Dataset,
    foreground: Sequence[int] | None,
    selection: ClassSelection | None = None,
) -> dict[str, Any]:
    """Run an ``evaluate`` step: per-case and pooled DSC of its ``target`` folder.

    Args:
        layout: the experiment folder.
        step: the step (``target``, ``ids``, ``output_dir``).
        dataset: the experiment's data set (the truth labels).
        foreground: label values that count as organ (``None``: every non-zero value).
        selection: several classes: the predictions are label maps, scored class by class.

    Returns:
        The journal's result: ``cases``, ``mean_dsc``, ``std_dsc``, ``global_dsc``, the per-case
        ``dsc`` and ``counts`` (intersection, prediction and truth voxels per case; the organs
        together). With several classes also ``class_names`` and ``class_counts``, and the figures
        are those of :func:`~atso_med.metrics.pooling.class_result` (means over the classes).
    """
    from atso_med.metrics.evaluation import evaluate_predictions

    params = step.params
    pairs = [(i, layout.case_file(params["target"], i), dataset.case(i).label) for i in params["ids"]]
    report = evaluate_predictions(
        pairs,
        None if selection is not None else foreground,
        output_dir=layout.path(params["output_dir"]),
        classes=dataset.labels,
        selection=selection,
    )
    summary = report.summary
    result = {
        "cases": summary["cases"],
        "mean_dsc": summary["mean_dsc"],
        "std_dsc": summary["std_dsc"],
        "global_dsc": summary["global_dsc"],
        "dsc": {k: float(v) for k, v in report.dsc.items()},
        # the voxel counts let reports pool several folders into one global DSC
        "counts": {r["id"]: [r["intersection"], r["prediction_voxels"], r["truth_voxels"]] for r in report.per_case},
    }
    if selection is not None:
        result["class_names"] = list(selection.names)
        result["class_counts"] = {
            r["id"]: [[c["intersection"], c["prediction_voxels"], c["truth_voxels"]] for c in r["classes"].values()]
            for r in report.per_case
        }
        result.update(class_result(result["class_names"], result["class_counts"]))
    logger.info(
        "evaluate %s: mean DSC %.4f, global DSC %.4f (%d cases%s)",
        params["target"],
        result["mean_dsc"],
        result["global_dsc"],
        result["cases"],
        "" if selection is None else f", means over {selection.num_classes} classes",
    )
    return result
