"""Reports of an experiment: the paper's tables from the journal's evaluations, as JSON, CSV and Markdown.

Written to ``<experiment>/reports/``:

* ``report.json``: every number below, per strategy and generation (mean, std and global DSC).
* ``report.csv``: the same, one row per (strategy, generation, measure).
* ``report.md`` (:mod:`atso_med.atso.report_tables`): strategies side by side per generation, ``@R`` (the reference set's pseudo labels
  made by that generation) and ``@E`` (the test set), like the paper's Table 1; ATSO's fold models
  on each reference fold and on the test set, like its Table 4; the fully supervised upper bound
  and the share of the supervised -> fully supervised gap each strategy closes.
* ``progress.png`` and ``overlays/<case_id>.png`` (:mod:`atso_med.atso.report_figures`): DSC per
  generation per strategy; test cases drawn for M0, each strategy's final model and the upper bound.

What each measure is:

* ``@R`` of generation ``t``: the pseudo labels generation ``t`` hands to ``t + 1`` (for ATSO the
  cross-fold labels: "updated R_t"), scored on every reference case that has a label.
* ``@E`` of generation ``t``: the test DSC of generation ``t``'s model (ATSO: the vote of its fold
  models). ``final``: self-learning and STSO's last generation, ATSO's final model trained on all
  pseudo labels.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atso_med.atso.cases import experiment_selection, organ_values
from atso_med.atso.config import SEMI_SUPERVISED
from atso_med.atso.generations import final_model
from atso_med.atso.layout import ExperimentLayout, fused_predictions_folder, pseudo_label_folder
from atso_med.atso.lazy_learning import ReferenceTruth, measure_lazy_learning, student_trainings
from atso_med.atso.report_figures import draw_overlays, plot_progress
from atso_med.atso.report_tables import NAMES, markdown
from atso_med.atso.steps import ModelRef
from atso_med.files import write_text_atomic
from atso_med.metrics.pooling import pool_results, result_dsc

if TYPE_CHECKING:
    from atso_med.atso.cases import ExperimentData
    from atso_med.atso.config import ExperimentConfig
    from atso_med.atso.journal import Journal
    from atso_med.atso.steps import Step
    from atso_med.data.dataset import Dataset
    from atso_med.data.splits import Splits


@dataclass(frozen=True)
class ReportInputs:
    """All the reports read of an experiment (built by the runner from its plan and journal).

    Attributes:
        layout: the experiment folder.
        config: the experiment's configuration.
        dataset: its data set (images and truth labels of the overlays).
        splits: its splits.
        evaluations: evaluated folder (relative to the experiment) -> the journal's result of its
            evaluation step.
        trained_strategies: the strategies that have a training in the plan.
        students: the plan's model sets that trained on pseudo labels
            (:func:`~atso_med.atso.lazy_learning.student_trainings`), for the lazy-learning figures.
    """

    layout: ExperimentLayout
    config: ExperimentConfig
    dataset: Dataset
    splits: Splits
    evaluations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    trained_strategies: frozenset[str] = frozenset()
    students: Sequence[Mapping[str, Any]] = ()


class _Evaluations:
    """Evaluation results of an experiment, looked up by the folder they scored."""

    def __init__(self, by_target: Mapping[str, Mapping[str, Any]]) -> None:
        self.by_target = by_target

    def get(self, folder: str) -> dict[str, Any] | None:
        result = self.by_target.get(folder)
        return None if result is None else pool_results([result])

    def pooled(self, folders: Sequence[str]) -> dict[str, Any] | None:
        found = [self.by_target[f] for f in folders if f in self.by_target]
        return pool_results(found) if len(found) == len(folders) else None


def collect(inputs: ReportInputs) -> dict[str, Any]:
    """The numbers of the report, from the journal's evaluations (nothing is recomputed)."""
    config, splits = inputs.config, inputs.splits
    evaluations = _Evaluations(inputs.evaluations)
    K, T = splits.folds, config.generations
    folds = [f"fold{k}" for k in range(K)]
    m0 = ModelRef("supervised", 0)
    m0_reference = evaluations.pooled([m0.predictions(f) for f in folds])
    m0_test = evaluations.get(m0.predictions("test"))
    strategies: dict[str, Any] = {
        "supervised": {"generations": {"0": {"reference": m0_reference, "test": m0_test}}, "final": {"test": m0_test}}
    }
    fully = evaluations.get(ModelRef("fully_supervised", 0).predictions("test"))
    if "fully_supervised" in config.strategies:
        trained = fully is not None or "fully_supervised" in inputs.trained_strategies
        strategies["fully_supervised"] = {"final": {"test": fully}, "trained": trained}
    for strategy in SEMI_SUPERVISED:
        if strategy not in config.strategies:
            continue
        generations = {}
        for t in range(T + 1):
            reference = evaluations.pooled([pseudo_label_folder(strategy, t + 1, k) for k in range(K)])
            if t == 0:
                test = m0_test
            elif strategy == "atso":
                test = evaluations.get(fused_predictions_folder(t, "test"))
            else:
                test = evaluations.get(ModelRef(strategy, t).predictions("test"))
            generations[str(t)] = {"reference": reference, "test": test}
        final = evaluations.get(final_model(strategy, T, config.fine_tuned).predictions("test"))
        entry: dict[str, Any] = {"generations": generations, "final": {"test": final}}
        if config.fine_tuned:  # the model the fine-class fine-tuning started from
            entry["reduced_final"] = {"test": evaluations.get(final_model(strategy, T).predictions("test"))}
        if strategy == "atso":
            entry["folds"] = _atso_folds(evaluations, K, T, m0)
        strategies[strategy] = entry
    for strategy in SEMI_SUPERVISED:
        if strategy in strategies:
            strategies[strategy]["gap_closed"] = {
                metric: _gap(
                    result_dsc(m0_test, metric),
                    result_dsc(strategies[strategy]["final"]["test"], metric),
                    result_dsc(fully, metric),
                )
                for metric in ("mean", "global")
            }
    return {
        "experiment": str(inputs.layout.root),
        "setting": "transfer" if config.transfer is not None else "semi-supervised",
        "metric": config.report.metric,
        "generations": T,
        "folds": K,
        "planes": list(config.planes),
        "cases": {
            "labeled": len(splits.labeled),
            "reference": [len(f) for f in splits.reference],
            "test": len(splits.test),
        },
        "strategies": strategies,
        "class_reduction": None if config.class_reduction is None else asdict(config.class_reduction),
        "fold_training": config.fold_training,
        "fold_init": config.fold_init,
        "pseudo_label_confidence": config.pseudo_label_confidence,
    }


def _atso_folds(evaluations: _Evaluations, K: int, T: int, m0: ModelRef) -> dict[str, Any]:
    """Table 4: each fold model on each reference fold and on the test set, per generation."""
    out = {}
    for t in range(T + 1):
        models = {}
        for j in range(K):
            model = m0 if t == 0 else ModelRef("atso", t, f"fold{j}")
            models[f"fold{j}"] = {
                **{f"fold{k}": evaluations.get(model.predictions(f"fold{k}")) for k in range(K)},
                "test": evaluations.get(model.predictions("test")),
            }
        out[str(t)] = {
            "models": models,
            "updated_reference": evaluations.pooled([pseudo_label_folder("atso", t + 1, k) for k in range(K)]),
            "test": evaluations.get(m0.predictions("test") if t == 0 else fused_predictions_folder(t, "test")),
        }
    return out


def _gap(supervised: float | None, strategy: float | None, fully: float | None) -> float | None:
    """Share of the supervised -> fully supervised gap a strategy closes (1 = all of it).

    ``None`` unless the upper bound is above the supervised model by at least 0.5 DSC points: a
    gap that does not exist (or is reversed, as in runs too short to learn) cannot be closed.
    """
    if supervised is None or strategy is None or fully is None or fully - supervised < 0.005:
        return None
    return (strategy - supervised) / (fully - supervised)


def csv_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``report.csv``: one row per (strategy, generation, measure)."""
    rows = []

    def add(strategy: str, generation: str, measure: str, result: Mapping[str, Any] | None) -> None:
        if result:
            rows.append(
                {
                    "strategy": strategy,
                    "generation": generation,
                    "measure": measure,
                    "cases": result["cases"],
                    "mean_dsc": round(result["mean_dsc"], 6),
                    "std_dsc": round(result["std_dsc"], 6),
                    "global_dsc": round(result["global_dsc"], 6),
                }
            )

    for strategy, entry in report["strategies"].items():
        for t, generation in entry.get("generations", {}).items():
            add(strategy, t, "reference", generation["reference"])
            add(strategy, t, "test", generation["test"])
        add(strategy, "final", "test", entry["final"]["test"])
        for t, fold_entry in entry.get("folds", {}).items():
            for model, sets in fold_entry["models"].items():
                for case_set, result in sets.items():
                    add(strategy, t, f"{model}@{case_set}", result)
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    columns = ["strategy", "generation", "measure", "cases", "mean_dsc", "std_dsc", "global_dsc"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(text.getvalue(), path)


def _overlay_models(inputs: ReportInputs) -> list[tuple[str, str]]:
    """(title, prediction folder of the test set) for M0, each final model and the upper bound."""
    config, T = inputs.config, inputs.config.generations
    models = [("M0", ModelRef("supervised", 0).predictions("test"))]
    for strategy in SEMI_SUPERVISED:
        if strategy in config.strategies and T >= 1:
            models.append((f"{NAMES[strategy]} final", final_model(strategy, T, config.fine_tuned).predictions("test")))
    models.append(("Fully supervised", ModelRef("fully_supervised", 0).predictions("test")))
    return [(title, folder) for title, folder in models if inputs.layout.path(folder).is_dir()]


def progress_curves(report: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers ``progress.png`` shows (:func:`~atso_med.atso.report_figures.plot_progress`).

    Args:
        report: a report (``reports/report.json``).

    Returns:
        ``{"metric", "generations", "strategies": {strategy: {"name", "reference", "test", "final"}},
        "baselines": {"supervised" | "fully_supervised": {"name", "test"}}, "classes"}``: per
        semi-supervised strategy its DSC per generation (``None`` where not measured) and its final
        model's test DSC; M0's and the upper bound's test DSC. DSCs as fractions in the report's
        metric; with several classes, means over the ``classes`` (their names; empty for one organ).
    """
    metric, strategies, T = report["metric"], report["strategies"], report["generations"]
    curves = {
        strategy: {
            "name": NAMES[strategy],
            **{
                measure: [
                    result_dsc(strategies[strategy]["generations"][str(t)][measure], metric) for t in range(T + 1)
                ]
                for measure in ("reference", "test")
            },
            "final": result_dsc(strategies[strategy]["final"]["test"], metric),
        }
        for strategy in SEMI_SUPERVISED
        if strategy in strategies
    }
    baselines = {
        strategy: {
            "name": NAMES[strategy],
            "test": result_dsc(strategies.get(strategy, {}).get("final", {}).get("test"), metric),
        }
        for strategy in ("supervised", "fully_supervised")
    }
    m0_test = strategies["supervised"]["final"]["test"] or {}
    classes = list(m0_test.get("classes", {}))
    return {"metric": metric, "generations": T, "strategies": curves, "baselines": baselines, "classes": classes}


def write_experiment_reports(
    layout: ExperimentLayout, config: ExperimentConfig, data: ExperimentData, plan: Sequence[Step], journal: Journal
) -> dict[str, Any]:
    """Run the ``report`` step: every report file, from the plan and the journal's evaluations.

    Args:
        layout: the experiment folder.
        config: the experiment.
        data: its data set and splits.
        plan: its steps.
        journal: its journal (the results of the evaluations done).

    Returns:
        The report (also ``reports/report.json`` and the journal's result of the step).
    """
    evaluations = {
        s.params["target"]: journal.result(s.id) for s in plan if s.kind == "evaluate" and journal.is_done(s.id)
    }
    trained = frozenset(s.tags["strategy"] for s in plan if s.kind == "train")
    students = student_trainings([s.to_dict() for s in plan if s.kind == "train"])
    return write_reports(ReportInputs(layout, config, data.dataset, data.splits, evaluations, trained, students))


def reference_truth(dataset: Dataset, config: ExperimentConfig) -> ReferenceTruth:
    """The true labels of an experiment's cases as its output classes, for the lazy-learning figures."""
    selection = experiment_selection(config.classes, dataset)
    several = selection if selection is not None and selection.num_classes > 1 else None
    return ReferenceTruth(
        files={case.id: Path(case.label) for case in dataset.cases if case.label is not None},
        foreground=None if several is not None else organ_values(config.foreground, selection),
        selection=several,
        classes=dataset.labels,
    )


def write_reports(inputs: ReportInputs) -> dict[str, Any]:
    """Write every report file; returns the report (also the journal's result of the report step)."""
    layout = inputs.layout
    layout.reports_dir.mkdir(parents=True, exist_ok=True)
    report = collect(inputs)
    truth = reference_truth(inputs.dataset, inputs.config)
    report["lazy_learning"] = measure_lazy_learning(layout, inputs.students, inputs.evaluations, report, truth)
    notes = []
    if "fully_supervised" in report["strategies"] and not report["strategies"]["fully_supervised"]["trained"]:
        notes.append("Fully supervised: not trained (some reference cases have no label).")
    if report["generations"] == 1 and {"stso", "atso"} <= set(report["strategies"]):
        notes.append(
            "With one generation, ATSO's final model is STSO's generation 1: both train from the same initial "
            "weights on the labeled cases plus M0's pseudo labels of the whole reference set (Algorithm 1, line 8). "
            "Run two generations or more to compare them."
        )
    report["files"] = {
        "json": str(layout.report_file),
        "csv": str(layout.report_csv),
        "markdown": str(layout.report_markdown),
        "progress": str(layout.progress_plot),
    }
    write_csv(csv_rows(report), layout.report_csv)
    table = markdown(report, notes)
    write_text_atomic(table, layout.report_markdown)
    plot_progress(progress_curves(report), layout.progress_plot)
    dataset = inputs.dataset
    cases = [i for i in inputs.splits.test if dataset.case(i).label is not None][: inputs.config.report.overlay_cases]
    overlays = draw_overlays(
        layout,
        dataset,
        cases,
        _overlay_models(inputs),
        organ_values(inputs.config.foreground, experiment_selection(inputs.config.classes, dataset)),
        layout.overlays_dir,
    )
    report["files"]["overlays"] = [str(p) for p in overlays]
    write_text_atomic(json.dumps(report, indent=2) + "\n", layout.report_file)
    return report
