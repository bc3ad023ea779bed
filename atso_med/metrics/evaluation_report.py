"""The evaluation report: per-case rows and summary, its two files, and what they may replace.

:class:`EvaluationReport` is written as :data:`SUMMARY_FILE` (the summary plus the per-case rows)
and :data:`PER_CASE_FILE` (a table of :data:`CSV_COLUMNS`, then one ``dsc_<class>`` column per
class of an evaluation of several classes); :func:`check_report_paths` refuses, before any work,
report files that would replace an input or a file that is not an earlier report.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atso_med.files import check_output_file, json_with_keys, write_text_atomic

__all__ = [
    "CLASS_COLUMN_PREFIX",
    "CSV_COLUMNS",
    "PER_CASE_FILE",
    "SUMMARY_FILE",
    "EvaluationReport",
    "check_report_paths",
]

SUMMARY_FILE = "summary.json"
PER_CASE_FILE = "per_case.csv"
#: Columns of ``per_case.csv``, in order.
CSV_COLUMNS = (
    "id",
    "dsc",
    "intersection",
    "prediction_voxels",
    "truth_voxels",
    "prediction_ml",
    "truth_ml",
    "stopped_round",
    "prediction",
    "truth",
)
#: Prefix of the per-class DSC columns of ``per_case.csv`` (``dsc_liver``, ``dsc_spleen``, ...).
CLASS_COLUMN_PREFIX = "dsc_"


@dataclass
class EvaluationReport:
    """Result of :func:`~atso_med.metrics.evaluation.evaluate_predictions`.

    Attributes:
        per_case: one row per case (the :data:`CSV_COLUMNS`, and ``classes`` with several
            classes), in evaluation order.
        summary: ``cases``, ``mean_dsc``, ``std_dsc`` (population, ddof 0), ``min_dsc``,
            ``max_dsc``, ``global_dsc`` (all cases pooled), ``foreground``, ``organ_classes``
            (the declared classes scored together as the organ, ``{value: name}``; ``None`` with
            several classes or none declared), ``per_round`` (``None`` without per-round
            statistics), and ``classes`` with several classes.
        files: the files :meth:`write` wrote, by ``"summary"`` / ``"per_case"``.
    """

    per_case: list[dict[str, Any]]
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def dsc(self) -> dict[str, float]:
        """DSC by case id."""
        return {row["id"]: row["dsc"] for row in self.per_case}

    @property
    def class_names(self) -> list[str]:
        """The classes scored one by one (none for a binary evaluation)."""
        return list(self.summary.get("classes", {}).get("per_class", {}))

    def to_dict(self) -> dict[str, Any]:
        """``summary.json`` content: the summary plus the per-case rows."""
        return {**self.summary, "per_case": self.per_case}

    def _csv_row(self, row: dict[str, Any]) -> dict[str, Any]:
        cells = {key: row.get(key) for key in CSV_COLUMNS}
        cells.update({CLASS_COLUMN_PREFIX + name: row["classes"][name]["dsc"] for name in self.class_names})
        return {key: "" if value is None else value for key, value in cells.items()}

    def write(self, output_dir: str | os.PathLike) -> dict[str, Path]:
        """Write ``summary.json`` and ``per_case.csv`` into ``output_dir`` atomically.

        Returns:
            ``{"summary": path, "per_case": path}``.
        """
        out = Path(output_dir)
        text = io.StringIO()
        columns = [*CSV_COLUMNS, *(CLASS_COLUMN_PREFIX + name for name in self.class_names)]
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.per_case:
            writer.writerow(self._csv_row(row))
        self.files = {
            "summary": write_text_atomic(json.dumps(self.to_dict(), indent=2) + "\n", out / SUMMARY_FILE),
            "per_case": write_text_atomic(text.getvalue(), out / PER_CASE_FILE),
        }
        return self.files


def _is_per_case_csv(path: Path) -> bool:
    try:
        with path.open(newline="") as file:
            header = next(csv.reader(file), None) or []
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    extra = header[len(CSV_COLUMNS) :]
    return header[: len(CSV_COLUMNS)] == list(CSV_COLUMNS) and all(c.startswith(CLASS_COLUMN_PREFIX) for c in extra)


def check_report_paths(output_dir: Path, pairs: Sequence[tuple[str, Path, Path]], datalist: Any, stats: Any) -> None:
    """Refuse, before any reading, report files that would replace an input or a foreign file.

    A rerun replaces its own earlier ``summary.json`` / ``per_case.csv``; a data list, a label or
    any other file of those names is never overwritten.

    Args:
        output_dir: the folder the report goes to.
        pairs: ``(case_id, prediction, truth)`` triples being evaluated.
        datalist: the data list or dataset read.
        stats: the prediction statistics file read, if any.

    Raises:
        ConfigError: a report file would replace an input or a file that is not a report.
    """
    inputs = [("data list / dataset", Path(datalist))] + ([("prediction statistics", Path(stats))] if stats else [])
    for case_id, prediction, truth in pairs:
        inputs += [(f"prediction of case {case_id!r}", prediction), (f"label of case {case_id!r}", truth)]
    kinds = {
        SUMMARY_FILE: ("evaluation summary", json_with_keys("mean_dsc", "per_case")),
        PER_CASE_FILE: ("per-case table", _is_per_case_csv),
    }
    for name, (kind, is_kind) in kinds.items():
        check_output_file(
            output_dir / name,
            inputs,
            kind=kind,
            force=True,
            is_kind=is_kind,
            option="the evaluation output",
            force_option=None,
        )
