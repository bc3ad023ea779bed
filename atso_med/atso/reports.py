"""Reports of an experiment: the paper's tables from the journal's evaluations, as JSON, CSV and Markdown.

Written to ``<experiment>/reports/``:

* ``report.json``: every number below, per strategy and generation (mean, std and global DSC).
* ``report.csv``: the same, one row per (strategy, generation, measure).
* ``report.md``: strategies side by side per generation, ``@R`` (the reference set's pseudo labels
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
from atso_med.atso.lazy_learning import (
    ReferenceTruth,
    lazy_learning_rows,
    measure_lazy_learning,
    pseudo_label_rows,
    student_trainings,
)
from atso_med.atso.report_figures import draw_overlays, plot_progress
from atso_med.atso.steps import ModelRef
from atso_med.files import write_text_atomic
from atso_med.metrics.pooling import pool_results

if TYPE_CHECKING:
    from atso_med.atso.cases import ExperimentData
    from atso_med.atso.config import ExperimentConfig
    from atso_med.atso.journal import Journal
    from atso_med.atso.steps import Step
    from atso_med.data.dataset import Dataset
    from atso_med.data.splits import Splits

NAMES = {
    "supervised": "Supervised (M0)",
    "fully_supervised": "Fully supervised",
    "self_learning": "Self-learning",
    "stso": "STSO",
    "atso": "ATSO",
}


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
        final = evaluations.get(final_model(strategy, T, fine_tuned(config)).predictions("test"))
        entry: dict[str, Any] = {"generations": generations, "final": {"test": final}}
        if fine_tuned(config):  # the model the fine-class fine-tuning started from
            entry["reduced_final"] = {"test": evaluations.get(final_model(strategy, T).predictions("test"))}
        if strategy == "atso":
            entry["folds"] = _atso_folds(evaluations, K, T, m0)
        strategies[strategy] = entry
    for strategy in SEMI_SUPERVISED:
        if strategy in strategies:
            strategies[strategy]["gap_closed"] = {
                metric: _gap(
                    _value(m0_test, metric),
                    _value(strategies[strategy]["final"]["test"], metric),
                    _value(fully, metric),
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


def _value(result: Mapping[str, Any] | None, metric: str) -> float | None:
    if not result:
        return None
    return float(result["global_dsc" if metric == "global" else "mean_dsc"])


def _gap(supervised: float | None, strategy: float | None, fully: float | None) -> float | None:
    """Share of the supervised -> fully supervised gap a strategy closes (1 = all of it).

    ``None`` unless the upper bound is above the supervised model by at least 0.5 DSC points: a
    gap that does not exist (or is reversed, as in runs too short to learn) cannot be closed.
    """
    if supervised is None or strategy is None or fully is None or fully - supervised < 0.005:
        return None
    return (strategy - supervised) / (fully - supervised)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def strategy_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The paper's Table 1 as rows: per generation, each semi-supervised strategy on R and on E.

    Args:
        report: a report (``reports/report.json``).

    Returns:
        One dict per generation ``"G0" ... "G<T>"`` and a last ``"final"`` row: ``{"Generation": ...,
        "<Strategy> @R": DSC or None, "<Strategy> @E": DSC or None, ...}``, DSCs as fractions in the
        report's metric. ``@R``: the pseudo labels that generation made for the reference set; ``@E``:
        the test set. The final row has no ``@R``.
    """
    metric, strategies = report["metric"], report["strategies"]
    semi = [s for s in SEMI_SUPERVISED if s in strategies]
    rows = []
    for t in range(report["generations"] + 1):
        row: dict[str, Any] = {"Generation": f"G{t}"}
        for s in semi:
            generation = strategies[s]["generations"][str(t)]
            row[f"{NAMES[s]} @R"] = _value(generation["reference"], metric)
            row[f"{NAMES[s]} @E"] = _value(generation["test"], metric)
        rows.append(row)
    if semi:
        final: dict[str, Any] = {"Generation": "final"}
        for s in semi:
            final[f"{NAMES[s]} @R"] = None
            final[f"{NAMES[s]} @E"] = _value(strategies[s]["final"]["test"], metric)
        rows.append(final)
    return rows


def fine_tuned(config: ExperimentConfig) -> bool:
    """Whether the final models are fine-tuned on fine-class pseudo labels after a class reduction."""
    return config.class_reduction is not None and config.class_reduction.fine_tune


def final_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Test DSC of every strategy's final model and the share of the supervised gap it closes.

    Args:
        report: a report (``reports/report.json``).

    Returns:
        ``{"Strategy", "@E", "gap closed"}`` per strategy (fractions; None where not measured).
    """
    metric = report["metric"]
    return [
        {
            "Strategy": NAMES[s],
            "@E": _value(entry["final"]["test"], metric),
            "gap closed": entry.get("gap_closed", {}).get(metric),
        }
        for s, entry in report["strategies"].items()
    ]


def class_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Test DSC of every strategy's final model per class, and the test cases where a class vanished.

    Args:
        report: a report (``reports/report.json``) of an experiment of several classes.

    Returns:
        ``{"Strategy", <class>..., "vanished"}`` per strategy (fractions of the report's metric; the
        vanished count sums the cases over the classes); empty for one organ.
    """
    key = "global_dsc" if report["metric"] == "global" else "mean_dsc"
    rows = []
    for strategy, entry in report["strategies"].items():
        classes = (entry["final"]["test"] or {}).get("classes")
        if not classes:
            continue
        rows.append(
            {"Strategy": NAMES[strategy]}
            | {name: figures[key] for name, figures in classes.items()}
            | {"vanished": str(sum(figures["vanished"] for figures in classes.values()))}
        )
    return rows


def atso_fold_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The paper's Table 4 as rows: every ATSO fold model on every reference fold and on the test set.

    Args:
        report: a report (``reports/report.json``) with ATSO.

    Returns:
        One dict per generation: ``M(fold j) @R(fold k)`` and ``M(fold j) @E`` for every fold model
        (generation 0: M0 in every column), ``updated R_t`` (the cross-fold pseudo labels that
        generation made) and ``M_t @E (vote)``; DSCs as fractions. Empty without ATSO.
    """
    if "atso" not in report["strategies"]:
        return []
    metric, folds = report["metric"], report["folds"]
    rows = []
    for t, entry in report["strategies"]["atso"]["folds"].items():
        models = entry["models"]
        row: dict[str, Any] = {"Generation": f"G{t}"}
        for k in range(folds):
            for j in range(folds):
                row[f"M(fold{j}) @R(fold{k})"] = _value(models[f"fold{j}"][f"fold{k}"], metric)
        for j in range(folds):
            row[f"M(fold{j}) @E"] = _value(models[f"fold{j}"]["test"], metric)
        row["updated R_t"] = _value(entry["updated_reference"], metric)
        row["M_t @E (vote)"] = _value(entry["test"], metric)
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rows (as the ``*_rows`` functions give them) as Markdown table lines; DSCs in %, gaps as a share.

    Args:
        rows: dicts with the same keys; fractions are shown in %, ``None`` as a dash.

    Returns:
        The table's lines (header, rule, one line per row); no lines for no rows.
    """
    if not rows:
        return []
    columns = list(rows[0])

    def cell(column: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        if column == "gap closed":
            return "—" if value is None else f"{100 * value:.0f}%"
        return _pct(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in columns) + " |" for row in rows]
    return lines


def markdown(report: Mapping[str, Any], notes: Sequence[str] = ()) -> str:
    """``report.md``: the tables of the report."""
    metric = report["metric"]
    label = "global DSC (all test cases pooled)" if metric == "global" else "mean DSC over cases"
    cases = report["cases"]
    lines = [
        "# ATSO experiment report",
        "",
        f"Setting: {report['setting']}; {cases['labeled']} labeled, {sum(cases['reference'])} reference "
        f"({' + '.join(map(str, cases['reference']))} in {report['folds']} folds), {cases['test']} test cases; "
        f"planes {', '.join(report['planes'])}; {report['generations']} generation(s). Numbers: {label}, %.",
        "",
    ]
    lines += [f"{note}" for note in notes]
    if notes:
        lines.append("")
    lines += ["## Strategies by generation (@R: pseudo labels of the reference set, @E: test set)", ""]
    table = strategy_rows(report)
    lines += markdown_table(table) if len(table[0]) > 1 else ["(no semi-supervised strategy in this experiment)"]
    lines += ["", "## Test DSC of the final models", ""]
    lines += markdown_table(final_rows(report))
    lines += [
        "",
        "final: self-learning and STSO's last generation; ATSO's model trained on all pseudo labels of its last "
        "generation. gap closed: (strategy - supervised) / (fully supervised - supervised) on the test set.",
    ]
    if report.get("class_reduction"):
        lines += [
            "",
            "Class reduction: generations 1..T scored their pseudo labels at the groups "
            + ", ".join(
                f"{name} = {' + '.join(members)}" for name, members in report["class_reduction"]["groups"].items()
            )
            + (
                "; each final model above was then fine-tuned on the fine-class pseudo labels of the last generation "
                "(before that fine-tuning: "
                + ", ".join(
                    f"{NAMES[s]} {_pct(_value(e['reduced_final']['test'], report['metric']))}"
                    for s, e in report["strategies"].items()
                    if "reduced_final" in e
                )
                + ")."
                if report["class_reduction"]["fine_tune"]
                else "."
            ),
        ]
    lines += _table_section(
        "Test DSC of the final models per class",
        class_rows(report),
        "The figures above are the means over these classes; vanished: test cases where a class present in "
        "the truth has no voxel in the prediction, summed over the classes.",
    )
    lines += _table_section(
        "ATSO fold models (Table 4 layout)",
        atso_fold_rows(report),
        "M(fold j) trains on fold j's pseudo labels; its column on fold k != j made fold k's next labels."
        if report.get("fold_training", "own") == "own"
        else "Leave-one-fold-out: M(fold j) trains on every other fold's pseudo labels; its column on fold j made "
        "fold j's next labels.",
    )
    lines += _lazy_learning_markdown(report.get("lazy_learning", {}), report["metric"])
    return "\n".join(lines) + "\n"


def _table_section(title: str, rows: Sequence[Mapping[str, Any]], note: str) -> list[str]:
    """A titled table with its note, or nothing without rows."""
    return ["", f"## {title}", "", *markdown_table(rows), "", note] if rows else []


def _lazy_learning_markdown(figures: Mapping[str, Any], metric: str) -> list[str]:
    lines = []
    students = lazy_learning_rows(figures, metric)
    if students:
        lines += ["", "## Lazy learning: students against the pseudo labels they trained on", ""]
        lines += markdown_table(students)
        lines += [
            "",
            "fit: the student's prediction of its training reference cases scored against its pseudo labels "
            "(1 = it reproduces them, errors included); a student that memorises its teacher has a fit near 100 "
            "and its DSC vs truth near its labels'.",
        ]
    own_minus_other = figures.get("atso_own_minus_other", {})
    if own_minus_other:
        lines += ["", "ATSO own fold minus other fold (DSC points on the truth; negative = lazy learning, "]
        lines[-1] += "the paper's Table 4 at G1: -3.3 and -0.2):"
        lines += [f"- G{t}: {100 * entry['mean_difference']:+.2f}" for t, entry in own_minus_other.items()]
    repeated = figures.get("repeated_errors", {}).get("atso", {})
    if repeated:
        lines += [
            "",
            "ATSO: share of a fold's wrong pseudo-label voxels that the fold models predict the same wrong way, for "
            "the models that trained on those labels (own) and those that did not (other); own well above other "
            "is lazy learning, both high means errors every model shares:",
        ]
        lines += [f"- G{t}: own {_pct(e['own'])} %, other {_pct(e['other'])} %" for t, e in repeated.items()]
    drift = pseudo_label_rows(figures)
    if drift:
        lines += ["", "## Pseudo-label voxels against the truth (all reference cases with a label)", ""]
        lines += markdown_table(drift)
    return lines


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
            models.append(
                (f"{NAMES[strategy]} final", final_model(strategy, T, fine_tuned(config)).predictions("test"))
            )
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
                measure: [_value(strategies[strategy]["generations"][str(t)][measure], metric) for t in range(T + 1)]
                for measure in ("reference", "test")
            },
            "final": _value(strategies[strategy]["final"]["test"], metric),
        }
        for strategy in SEMI_SUPERVISED
        if strategy in strategies
    }
    baselines = {
        strategy: {
            "name": NAMES[strategy],
            "test": _value(strategies.get(strategy, {}).get("final", {}).get("test"), metric),
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
