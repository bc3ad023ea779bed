"""Evaluation of written predictions against labels: per-case DSC, mean / std, global DSC, per-round DSC.

Predictions and labels are read from NIfTI files and compared voxel for voxel on the
prediction's grid. Nothing is ever resampled: a label must lie on the same world grid as its
prediction. A label stored in another axis order of that very grid (LAS against LPS, as NIH
labels of DICOM images often are) is read in the prediction's order by axis permutation / flips
(:func:`atso_med.data.readers.load_label`); any other difference - shape, spacing, direction, a
shifted origin, a mirrored (flipped-axis) header - is a
:class:`~atso_med.errors.GridMismatchError` that says how the grids differ.

Predictions of several organs (label maps of C > 1 classes, given their ``prediction_classes``)
are also scored class by class (:mod:`atso_med.metrics.class_dice`).

Outputs (written atomically): ``summary.json`` and ``per_case.csv``
(:mod:`atso_med.metrics.evaluation_report`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atso_med.data.class_selection import ClassSelection
from atso_med.data.writers import prediction_file
from atso_med.errors import ConfigError, DatasetError, GridMismatchError, ImageReadError, LabelValueError
from atso_med.metrics.class_dice import ClassDiceAccumulator
from atso_med.metrics.dice import DiceAccumulator
from atso_med.metrics.evaluation_inputs import read_label_maps, read_pair
from atso_med.metrics.evaluation_report import EvaluationReport, check_report_paths
from atso_med.metrics.prediction_stats import PREDICTION_STATS_FILE, per_round_summary, read_prediction_stats

__all__ = [
    "EvaluationRun",
    "evaluate_predictions",
    "evaluation_pairs",
    "read_label_maps",
    "read_pair",
    "run_evaluation",
]

logger = logging.getLogger(__name__)


def _check_foreground(
    foreground: Sequence[int] | None, classes: Mapping[int, str] | None = None
) -> tuple[int, ...] | None:
    if foreground is None:
        return None
    if isinstance(foreground, (int, np.integer)):
        foreground = [int(foreground)]
    try:
        values = tuple(int(v) for v in foreground)
    except (TypeError, ValueError):
        raise ConfigError(f"foreground must be a list of label values, got {foreground!r}") from None
    if not values or any(v == 0 for v in values):
        raise ConfigError(f"foreground must list non-zero label values, got {list(foreground)!r}")
    undeclared = [v for v in values if classes is not None and v not in classes]
    if undeclared:
        declared = ", ".join(f"{v} ({name})" for v, name in sorted(classes.items()))
        raise ConfigError(f"foreground value(s) {undeclared} are not declared classes of the dataset: {declared}")
    return values


def _selection(spec: Any, classes: Mapping[int, str] | None, source: Any) -> ClassSelection | None:
    """A class selection given by name (or already resolved), resolved against the labels' classes."""
    from atso_med.data.class_selection import select_classes

    if spec is None or isinstance(spec, ClassSelection):
        return spec
    if classes is None:
        raise ConfigError(f"{source} declares no 'labels': classes can only be chosen by name from them")
    return select_classes(spec, classes, str(source))


def _check_predicted_classes(
    case_stats: Mapping[str, Mapping], ids: Sequence[str], selection: ClassSelection | None
) -> None:
    """Refuse to score label maps of several classes as organ masks, or masks as label maps.

    The prediction statistics record the classes of each case a model of C > 1 classes predicted.

    Raises:
        ConfigError: naming the case, the classes it was predicted with and the ones asked for.
    """
    asked = None if selection is None or selection.num_classes == 1 else list(selection.names)
    for case_id in ids:
        if case_id not in case_stats:
            continue
        predicted = case_stats[case_id].get("classes")
        predicted = list(predicted) if predicted else None
        if predicted == asked:
            continue
        if predicted is None:
            raise ConfigError(
                f"case {case_id!r}: the prediction is an organ mask (prediction_stats.json), not a label map "
                f"of the classes {asked}"
            )
        raise ConfigError(
            f"case {case_id!r}: the prediction is a label map of the classes {predicted} (prediction_stats.json); "
            f"evaluate it with those classes (--classes {' '.join(predicted)}), "
            + ("not as an organ mask" if asked is None else f"not as {asked}")
        )


def _organ_classes(foreground: tuple[int, ...] | None, classes: Mapping[int, str] | None) -> dict[str, str] | None:
    """The declared classes scored together as the organ (``{value: name}``; ``None`` when none are declared).

    Several of them (MSD's pancreas and tumour, or every organ of a multi-organ map) are one organ's
    DSC, which is what was asked for only if the user knows it: the report names them.
    """
    if classes is None:
        return None
    return {str(v): name for v, name in sorted(classes.items()) if v != 0 and (foreground is None or v in foreground)}


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ConfigError(f"the prediction threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def _class_accumulator(
    selection: ClassSelection | None,
    foreground: tuple[int, ...] | None,
    classes: Mapping[int, str] | None,
    threshold: float | None,
) -> ClassDiceAccumulator | None:
    """The per-class scoring of label maps of C > 1 classes (``None`` for masks and one class).

    Raises:
        ConfigError: a selection together with foreground values, a selected value the labels do
            not declare, or a threshold (label maps are not thresholded).
    """
    if selection is None:
        return None
    if foreground is not None:
        raise ConfigError("give the organs either as foreground values or as a class selection, not both")
    _check_foreground(selection.foreground, classes)
    if selection.num_classes < 2:
        return None
    if threshold is not None:
        raise ConfigError("predictions of several classes are label maps: they take no threshold")
    return ClassDiceAccumulator(selection.names, selection.values)


def evaluate_predictions(
    pairs: Sequence[tuple[str, str | os.PathLike, str | os.PathLike]],
    foreground: Sequence[int] | None = None,
    stats: str | os.PathLike | Mapping | Sequence | None = None,
    output_dir: str | os.PathLike | None = None,
    classes: Mapping[int, str] | None = None,
    threshold: float | None = None,
    selection: ClassSelection | None = None,
) -> EvaluationReport:
    """Score predicted masks against labels.

    Every file is checked to exist before any is read; grids are checked case by case as the
    files are read.

    Predictions of C > 1 classes (``selection``) are label maps: the per-case and
    summary figures are those of the organs together (any class against background), and each
    case's row gets ``classes`` (per class: ``dsc``, ``intersection``, ``prediction_voxels``,
    ``truth_voxels``, ``vanished``) and the summary a ``classes`` section
    (:meth:`~atso_med.metrics.class_dice.ClassDiceAccumulator.summary`; a class absent from a
    case's truth has no DSC there, as MONAI's ``DiceMetric(ignore_empty=True)`` has it).

    Args:
        pairs: ``(case_id, prediction_path, truth_path)`` triples; ids unique.
        foreground: label values counted as organ (``None``: every non-zero value).
        stats: per-case prediction statistics (see
            :func:`~atso_med.metrics.prediction_stats.read_prediction_stats`) for per-round DSC and
            stopping rounds; optional.
        output_dir: when given, ``summary.json`` and ``per_case.csv`` are written there.
        classes: the labels' declared class values (``dataset.json``'s ``labels``); ``None``
            accepts any integer label value.
        threshold: binarize probability-map predictions at this value; ``None`` (the default)
            refuses a prediction that is not an integer label map.
        selection: the classes chosen by name (instead of ``foreground``): one class is scored
            as an organ mask of its label values; C > 1 classes as label maps, class c against
            the label values it gathers (:class:`~atso_med.data.class_selection.ClassSelection`).

    Returns:
        The report.

    Raises:
        ConfigError: no pairs, a bad foreground list, unreadable statistics, a selection with
            foreground values or an undeclared value (or a threshold with C > 1 classes).
        DatasetError: a duplicate case id.
        ImageReadError: a missing or unreadable file (all missing files are named at once).
        GridMismatchError: a label not on its prediction's grid.
        LabelValueError: a label or prediction with values ``verify`` refuses.

    Every error about one case's files starts with its case id.
    """
    pairs = [(str(i), Path(p), Path(t)) for i, p, t in pairs]
    if not pairs:
        raise ConfigError("nothing to evaluate: no (prediction, label) pairs")
    fg = _check_foreground(foreground, classes)
    threshold = _check_threshold(threshold)
    per_class = _class_accumulator(selection, fg, classes, threshold)
    if selection is not None:
        fg = selection.foreground
    ids = [case_id for case_id, _, _ in pairs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(f"case id(s) listed twice for evaluation: {', '.join(map(repr, duplicates))}")
    missing = [f"{i}: prediction {p}" for i, p, _ in pairs if not p.is_file()]
    missing += [f"{i}: label {t}" for i, _, t in pairs if not t.is_file()]
    if missing:
        raise ImageReadError("missing file(s) for evaluation:\n  " + "\n  ".join(missing))
    case_stats = read_prediction_stats(stats)
    _check_predicted_classes(case_stats, [case_id for case_id, _, _ in pairs], selection)

    accumulator = DiceAccumulator()
    rows = []
    for case_id, prediction_path, truth_path in pairs:
        try:
            if per_class is None:
                prediction, truth, voxel_ml = read_pair(prediction_path, truth_path, fg, classes, threshold)
            else:
                prediction, truth, voxel_ml = read_label_maps(prediction_path, truth_path, selection, classes)
        except (ImageReadError, GridMismatchError, LabelValueError) as error:
            raise type(error)(f"case {case_id!r}: {error}") from error
        class_scores = None
        if per_class is not None:
            class_scores = per_class.add(case_id, prediction, truth)
            prediction, truth = prediction != 0, truth != 0
        score = accumulator.add(case_id, prediction, truth)
        n_p, n_t = int(np.count_nonzero(prediction)), int(np.count_nonzero(truth))
        stopped = case_stats.get(case_id, {}).get("stopped_round")
        rows.append(
            {
                "id": case_id,
                "dsc": score,
                "intersection": int(np.count_nonzero(prediction & truth)),
                "prediction_voxels": n_p,
                "truth_voxels": n_t,
                "prediction_ml": n_p * voxel_ml,
                "truth_ml": n_t * voxel_ml,
                "stopped_round": stopped,
                "prediction": str(prediction_path),
                "truth": str(truth_path),
            }
        )
        if class_scores is not None:
            rows[-1]["classes"] = class_scores
    summary_stats = accumulator.summary()
    summary = {
        "cases": summary_stats["n"],
        "mean_dsc": summary_stats["mean"],
        "std_dsc": summary_stats["std"],
        "std_ddof": 0,
        "min_dsc": summary_stats["min"],
        "max_dsc": summary_stats["max"],
        "global_dsc": accumulator.global_dice(),
        "foreground": "non-zero" if fg is None else list(fg),
        "organ_classes": _organ_classes(fg, classes) if per_class is None else None,
        "prediction_threshold": threshold,
        "per_round": per_round_summary(case_stats, ids) if case_stats else None,
    }
    if per_class is not None:
        summary["classes"] = per_class.summary()
    report = EvaluationReport(per_case=rows, summary=summary)
    if output_dir is not None:
        report.write(output_dir)
    return report


def evaluation_pairs(
    predictions_dir: str | os.PathLike, items: Iterable[Mapping[str, Any]]
) -> list[tuple[str, Path, Path]]:
    """Pair each labeled item with ``predictions_dir/<id>.nii.gz``.

    Args:
        predictions_dir: folder of predictions named by case id.
        items: data-list items (``id``, ``label``); items without a label are skipped.

    Returns:
        ``(id, prediction, label)`` triples.

    Raises:
        ConfigError: the folder does not exist, no item has a label, or an item has no id.
    """
    folder = Path(predictions_dir)
    if not folder.is_dir():
        raise ConfigError(f"prediction folder {folder} does not exist")
    folder = folder.resolve()  # absolute paths in the report
    pairs = []
    for item in items:
        if not item.get("label"):
            continue
        if not item.get("id"):
            raise ConfigError(f"data-list item without an 'id': {dict(item)!r}")
        pairs.append((str(item["id"]), prediction_file(folder, str(item["id"])), Path(item["label"])))
    if not pairs:
        raise ConfigError("no labeled cases to evaluate")
    return pairs


def _items_from(
    source: str | os.PathLike, ids: Sequence[str] | None, key: str | None
) -> tuple[list[dict], dict[int, str] | None]:
    """Labeled items from a dataset.json (or its folder) or a MONAI data-list JSON, and the
    declared label classes (a data list's ``labels``, ``None`` when it has none)."""
    from atso_med.data.dataset import Dataset, dataset_file, evaluation_datalist

    path = Path(source)
    if not path.exists():
        raise ConfigError(f"data list / dataset {path} does not exist")
    if path.is_dir() or dataset_file(path) is not None:
        dataset = Dataset.load(path)
        return evaluation_datalist(dataset, ids if ids else dataset.labeled_ids), dataset.labels
    from atso_med.data.datalist import datalist_items, datalist_labels

    items = datalist_items(path, key)
    if ids:
        known = {str(item.get("id")) for item in items}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise DatasetError(f"ids not in {path}: {', '.join(map(repr, unknown))}")
        items = [item for item in items if str(item.get("id")) in set(ids)]
    return items, datalist_labels(path)


class EvaluationRun:
    """A prediction folder evaluated against the labels of a dataset: the evaluate bundle's engine.

    The pairs are built, and every file checked to exist, when the object is made; :meth:`run`
    reads the volumes and writes the report.

    Args:
        predictions_dir: folder with ``<id>.nii.gz`` predictions.
        datalist: a ``dataset.json`` (or its folder) or a MONAI data-list JSON.
        output_dir: where ``summary.json`` / ``per_case.csv`` go (default: ``predictions_dir``).
        ids: restrict to these case ids (default: every labeled case).
        foreground: label values counted as organ (``None``: every non-zero value).
        stats: prediction statistics file; default ``predictions_dir/prediction_stats.json`` when
            it exists.
        datalist_key: which list of a data-list JSON (default: ``testing``, or its only list).
        threshold: binarize probability-map predictions at this value (``None``: predictions
            must be integer label maps).
        selection: the classes to score, by name among the labels' (a name, a list, groups, or a
            :class:`~atso_med.data.class_selection.ClassSelection`; see :func:`evaluate_predictions`).

    Raises:
        ConfigError / DatasetError / ImageReadError: missing folder, list, ids or files, a bad
            foreground or threshold.
    """

    def __init__(
        self,
        predictions_dir: str | os.PathLike,
        datalist: str | os.PathLike,
        output_dir: str | os.PathLike | None = None,
        ids: Sequence[str] | None = None,
        foreground: Sequence[int] | None = None,
        stats: str | os.PathLike | None = None,
        datalist_key: str | None = None,
        threshold: float | None = None,
        selection: Any = None,
    ) -> None:
        if not predictions_dir:
            raise ConfigError("no prediction folder given")
        if not datalist:
            raise ConfigError("no dataset.json / data list with labels given")
        ids = [str(i) for i in ([ids] if isinstance(ids, str) else ids)] if ids else None
        items, self.classes = _items_from(datalist, ids, datalist_key)
        self.pairs = evaluation_pairs(predictions_dir, items)
        self.foreground = _check_foreground(foreground, self.classes)
        self.threshold = _check_threshold(threshold)
        self.selection = _selection(selection, self.classes, datalist)
        missing = [f"{i}: prediction {p}" for i, p, _ in self.pairs if not p.is_file()]
        missing += [f"{i}: label {t}" for i, _, t in self.pairs if not t.is_file()]
        if missing:
            raise ImageReadError("missing file(s) for evaluation:\n  " + "\n  ".join(missing))
        default_stats = Path(predictions_dir) / PREDICTION_STATS_FILE
        self.stats = stats if stats else (default_stats if default_stats.is_file() else None)
        self.output_dir = Path(output_dir) if output_dir else Path(predictions_dir)
        check_report_paths(self.output_dir, self.pairs, datalist, self.stats)
        self.report: EvaluationReport | None = None

    def run(self) -> EvaluationReport:
        """Evaluate and write ``summary.json`` and ``per_case.csv``."""
        self.report = evaluate_predictions(
            self.pairs,
            self.foreground,
            self.stats,
            self.output_dir,
            self.classes,
            self.threshold,
            self.selection,
        )
        summary = self.report.summary
        logger.info(
            "%d cases: mean DSC %.4f +- %.4f, global DSC %.4f -> %s",
            summary["cases"],
            summary["mean_dsc"],
            summary["std_dsc"],
            summary["global_dsc"],
            self.report.files["summary"],
        )
        return self.report


def run_evaluation(*args: Any, **kwargs: Any) -> EvaluationReport:
    """Evaluate a prediction folder against the labels of a dataset.json or data list, and write the report.

    The function form of :class:`EvaluationRun` (which the evaluate bundle builds): it checks the
    inputs and runs at once.

    Args:
        *args: the arguments of :class:`EvaluationRun`, in its order.
        **kwargs: the same, by name.

    Returns:
        The written report.

    Raises:
        ConfigError / DatasetError / ImageReadError: as :class:`EvaluationRun`; GridMismatchError and
            LabelValueError as :func:`evaluate_predictions`.
    """
    return EvaluationRun(*args, **kwargs).run()
