"""The tables of an experiment's report, as rows and as Markdown (``report.md``).

Each ``*_rows`` function turns a report (``reports/report.json``, :func:`atso_med.atso.reports.collect`)
into rows of a table, DSCs as fractions; :func:`markdown` writes them all into ``report.md``, with the
lazy-learning figures (:mod:`atso_med.atso.lazy_learning`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from atso_med.atso.config import SEMI_SUPERVISED
from atso_med.atso.lazy_learning import lazy_learning_rows, pseudo_label_rows
from atso_med.metrics.pooling import result_dsc

__all__ = [
    "NAMES",
    "atso_fold_rows",
    "class_generation_rows",
    "class_rows",
    "final_rows",
    "markdown",
    "markdown_table",
    "percent",
    "strategy_rows",
]

NAMES = {
    "supervised": "Supervised (M0)",
    "fully_supervised": "Fully supervised",
    "self_learning": "Self-learning",
    "stso": "STSO",
    "atso": "ATSO",
}


def percent(value: float | None) -> str:
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
            row[f"{NAMES[s]} @R"] = result_dsc(generation["reference"], metric)
            row[f"{NAMES[s]} @E"] = result_dsc(generation["test"], metric)
        rows.append(row)
    if semi:
        final: dict[str, Any] = {"Generation": "final"}
        for s in semi:
            final[f"{NAMES[s]} @R"] = None
            final[f"{NAMES[s]} @E"] = result_dsc(strategies[s]["final"]["test"], metric)
        rows.append(final)
    return rows


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
            "@E": result_dsc(entry["final"]["test"], metric),
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


def class_generation_rows(report: Mapping[str, Any], strategy: str) -> list[dict[str, Any]]:
    """One strategy's Table 1 per class: per generation, each class's DSC on R (its pseudo labels) and on E.

    Args:
        report: a report (``reports/report.json``) of an experiment of several classes.
        strategy: a semi-supervised strategy of the report.

    Returns:
        ``{"Generation", "<class> @R", "<class> @E", ...}`` per generation (fractions; ``None`` where not
        measured or where no case holds the class); empty for one organ.
    """
    key = "global_dsc" if report["metric"] == "global" else "mean_dsc"
    rows = []
    for t, generation in report["strategies"][strategy].get("generations", {}).items():
        row: dict[str, Any] = {"Generation": f"G{t}"}
        for measure, result in (("@R", generation["reference"]), ("@E", generation["test"])):
            for name, figures in ((result or {}).get("classes") or {}).items():
                row[f"{name} {measure}"] = figures[key]
        if len(row) > 1:
            rows.append(row)
    if not rows:
        return []
    columns = list(dict.fromkeys(column for row in rows for column in row))
    return [{column: row.get(column) for column in columns} for row in rows]


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
                row[f"M(fold{j}) @R(fold{k})"] = result_dsc(models[f"fold{j}"][f"fold{k}"], metric)
        for j in range(folds):
            row[f"M(fold{j}) @E"] = result_dsc(models[f"fold{j}"]["test"], metric)
        row["updated R_t"] = result_dsc(entry["updated_reference"], metric)
        row["M_t @E (vote)"] = result_dsc(entry["test"], metric)
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
        return percent(value)

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
                    f"{NAMES[s]} {percent(result_dsc(e['reduced_final']['test'], report['metric']))}"
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
    for strategy in (s for s in SEMI_SUPERVISED if s in report["strategies"]):
        lines += _table_section(
            f"{NAMES[strategy]} by generation, per class",
            class_generation_rows(report, strategy),
            "@R: the pseudo labels that generation made for the reference set; @E: the test set.",
        )
    lines += _table_section("ATSO fold models (Table 4 layout)", atso_fold_rows(report), _fold_models_note(report))
    lines += _lazy_learning_markdown(report.get("lazy_learning", {}), report["metric"])
    return "\n".join(lines) + "\n"


def _fold_models_note(report: Mapping[str, Any]) -> str:
    """What ATSO's fold models train on and start from, under the table of their DSC."""
    if report.get("fold_training", "own") == "own":
        note = "M(fold j) trains on fold j's pseudo labels; its column on fold k != j made fold k's next labels."
    else:
        note = (
            "Leave-one-fold-out: M(fold j) trains on every other fold's pseudo labels; its column on fold j made "
            "fold j's next labels."
        )
    if report.get("fold_init", "scratch") == "continue":
        note += (
            " Continued (fold_init: continue, beyond the paper): each M(fold j) fine-tunes M(fold j) of the previous "
            "generation, and the model of all labels (the last is the final model) its own previous one; M0 at G1."
        )
    return note


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
        lines += [f"- G{t}: own {percent(e['own'])} %, other {percent(e['other'])} %" for t, e in repeated.items()]
    uncertain = figures.get("uncertain_voxels", {})
    if uncertain:
        lines += [
            "",
            "Uncertain voxels (pseudo_label_confidence), left out of the students' loss: share of the labels' "
            "wrong voxels taken out, share of their right organ voxels taken out with them, and the labels' DSC "
            "on the voxels left:",
        ]
        lines += [
            f"- {strategy} for G{t}: {percent(e['wrong_marked'])} % of the wrong, {percent(e['right_marked'])} % "
            f"of the right organ; DSC left {percent(e['confident_dsc'])}"
            for strategy, by_generation in uncertain.items()
            for t, e in by_generation.items()
        ]
    drift = pseudo_label_rows(figures)
    if drift:
        lines += ["", "## Pseudo-label voxels against the truth (all reference cases with a label)", ""]
        lines += markdown_table(drift)
    return lines
