"""Reading an experiment back: its report, the paper's tables, per-case scores and overlays.

For notebooks and scripts that compare strategies after (or during) a run. Nothing here trains or
predicts: everything comes from the files an experiment folder holds (see
:mod:`atso_med.atso.trainer` for the layout), and nothing is written.

Example::

    results = ExperimentResults("runs/nih_10pct_fold0")
    results.strategy_table()                         # Table 1: @R / @E per generation
    results.atso_fold_table()                        # Table 4: fold models on each fold
    results.worst_cases(results.pseudo_label_folders("atso", 1), count=3)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atso_med.atso.config import SEMI_SUPERVISED
from atso_med.atso.layout import CONFIG_FILE, JOURNAL_FILE, ExperimentLayout, evaluation_folder, pseudo_label_folder
from atso_med.atso.lazy_learning import ReferenceTruth, has_lazy_learning, measure_lazy_learning, student_trainings
from atso_med.atso.report_figures import overlay_figure
from atso_med.atso.report_tables import atso_fold_rows, final_rows, markdown_table, strategy_rows
from atso_med.atso.reports import reference_truth
from atso_med.errors import ConfigError
from atso_med.files import read_json

__all__ = ["CaseScore", "ExperimentResults"]


@dataclass(frozen=True)
class CaseScore:
    """One case of an evaluated folder.

    Attributes:
        case_id: the case.
        dsc: its DSC against the truth.
        folder: the evaluated folder, relative to the experiment (``pseudo_labels/atso/gen2/fold0``).
        prediction: the scored mask (NIfTI on the case's grid).
    """

    case_id: str
    dsc: float
    folder: str
    prediction: Path


class ExperimentResults:
    """A finished experiment folder, read back.

    Args:
        experiment_dir: the experiment's ``output_dir``.

    Raises:
        ConfigError: the folder does not exist, is not an experiment, or holds no report yet
            (the message says which, and how to get one).
    """

    def __init__(self, experiment_dir: str | os.PathLike) -> None:
        self.dir = Path(experiment_dir).expanduser().resolve()
        self.layout = layout = ExperimentLayout(self.dir)
        if not self.dir.is_dir():
            raise ConfigError(f"no experiment folder at {self.dir}")
        if not layout.is_experiment():
            raise ConfigError(f"{self.dir} is not an experiment folder ({CONFIG_FILE} and {JOURNAL_FILE} are missing)")
        report_file = layout.report_file
        if not report_file.is_file():
            raise ConfigError(
                f"{self.dir} holds no report yet ({report_file} is missing): the experiment has not finished; "
                f"finish it with `atso-med run --config {layout.config_file} --resume`"
            )
        self.report: dict[str, Any] = read_json(report_file, "experiment report")

    @property
    def strategies(self) -> list[str]:
        """The strategies in the report, in report order."""
        return list(self.report["strategies"])

    def strategy_table(self) -> list[dict[str, Any]]:
        """Table 1: per generation, each semi-supervised strategy's DSC on the reference set and the test set.

        Returns:
            Rows as :func:`~atso_med.atso.report_tables.strategy_rows` gives them (DSCs as fractions).
        """
        return strategy_rows(self.report)

    def final_table(self) -> list[dict[str, Any]]:
        """Test DSC of each strategy's final model, and the share of the supervised gap it closes."""
        return final_rows(self.report)

    def atso_fold_table(self) -> list[dict[str, Any]]:
        """Table 4: every ATSO fold model on every reference fold and on the test set, per generation.

        Raises:
            ConfigError: the experiment ran no ATSO.
        """
        if "atso" not in self.report["strategies"]:
            raise ConfigError(f"{self.dir} ran no ATSO (strategies: {', '.join(self.strategies)})")
        return atso_fold_rows(self.report)

    def lazy_learning(self) -> dict[str, Any]:
        """The lazy-learning figures (:mod:`atso_med.atso.lazy_learning`): students' fit to their pseudo
        labels, ATSO's own-minus-other fold DSC and the pseudo labels' voxel errors.

        Read from the report; an experiment reported before these figures existed has them measured
        from its plan, journal and files (nothing is written).
        """
        if has_lazy_learning(self.report):
            return self.report["lazy_learning"]
        plan = read_json(self.layout.plan_file, "experiment plan")["steps"]
        results = read_json(self.layout.journal_file, "journal")["steps"]
        evaluations = {
            step["params"]["target"]: results[step["id"]]["result"]
            for step in plan
            if step["kind"] == "evaluate" and step["id"] in results
        }
        trainings = student_trainings([step for step in plan if step["kind"] == "train"])
        return measure_lazy_learning(self.layout, trainings, evaluations, self.report, self._truth())

    def _truth(self) -> ReferenceTruth:
        """The true labels of the experiment's cases, from its data set (a transfer's merged one is in the folder)."""
        from atso_med.atso.config import ExperimentConfig
        from atso_med.data.dataset import Dataset

        config = ExperimentConfig.load(self.layout.config_file)
        dataset = Dataset.load(self.layout.dataset_file if config.transfer is not None else config.dataset)
        return reference_truth(dataset, config)

    @staticmethod
    def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
        """A table's rows as Markdown (DSCs in %), e.g. for ``IPython.display.Markdown``."""
        return "\n".join(markdown_table(rows)) + "\n"

    def pseudo_label_folders(self, strategy: str, generation: int) -> list[str]:
        """The folders of the pseudo labels that ``generation`` of ``strategy`` made for the reference set.

        These are what generation ``generation + 1`` trains on (``pseudo_labels/<strategy>/gen<t+1>/fold<k>``);
        for ATSO each fold's labels come from the fold models that never saw that fold.

        Args:
            strategy: ``self_learning``, ``stso`` or ``atso``.
            generation: 0 (M0's labels) to the experiment's last generation.

        Returns:
            One folder per reference fold, relative to the experiment folder.

        Raises:
            ConfigError: the strategy did not run, or the generation is out of range.
        """
        if strategy not in SEMI_SUPERVISED or strategy not in self.report["strategies"]:
            raise ConfigError(
                f"{strategy!r} made no pseudo labels in {self.dir} (strategies: {', '.join(self.strategies)})"
            )
        if not 0 <= int(generation) <= self.report["generations"]:
            raise ConfigError(f"generation must be in 0..{self.report['generations']}, got {generation}")
        return [pseudo_label_folder(strategy, int(generation) + 1, k) for k in range(self.report["folds"])]

    def pseudo_label(self, strategy: str, generation: int, case_id: str) -> Path:
        """The pseudo label that ``generation`` of ``strategy`` made for one reference case.

        Raises:
            ConfigError: as :meth:`pseudo_label_folders`, or the case is not a reference case.
        """
        for folder in self.pseudo_label_folders(strategy, generation):
            path = self.layout.case_file(folder, case_id)
            if path.is_file():
                return path
        raise ConfigError(
            f"no pseudo label of {case_id!r} from {strategy} generation {generation} in {self.dir}: not a reference case?"
        )

    def case_scores(self, folder: str) -> list[CaseScore]:
        """Per-case DSC of one evaluated folder (a prediction or pseudo-label folder of the experiment).

        Args:
            folder: relative to the experiment, e.g. ``predictions/atso/gen1/fused/test``.

        Returns:
            The scores, in the order of the evaluation.

        Raises:
            ConfigError: the folder was not evaluated (no truth, or not part of the plan).
        """
        table = self.layout.path(evaluation_folder(folder)) / "per_case.csv"
        if not table.is_file():
            raise ConfigError(f"{folder} was not evaluated in {self.dir} (no {table})")
        with table.open(newline="") as handle:
            return [
                CaseScore(row["id"], float(row["dsc"]), folder, self.layout.case_file(folder, row["id"]))
                for row in csv.DictReader(handle)
            ]

    def worst_cases(self, folders: str | Sequence[str], count: int = 3) -> list[CaseScore]:
        """The lowest-DSC cases of one or several evaluated folders.

        Args:
            folders: one folder or several (e.g. every reference fold of a generation).
            count: how many cases.

        Returns:
            Up to ``count`` scores, worst first.
        """
        folders = [folders] if isinstance(folders, str) else list(folders)
        scores = [score for folder in folders for score in self.case_scores(folder)]
        return sorted(scores, key=lambda score: (score.dsc, score.case_id))[: max(0, int(count))]

    def overlay(self, case_id: str, masks: Mapping[str, str | os.PathLike]) -> Any:
        """A figure of one case: truth red, each mask green (one panel each), overlap yellow.

        Args:
            case_id: a case of the experiment's data set that has a label.
            masks: panel title -> mask file (a prediction or pseudo label on the case's grid).

        Returns:
            A matplotlib ``Figure`` (see :func:`~atso_med.atso.report_figures.overlay_figure`).

        Raises:
            DatasetError: the case is not in the experiment's data set.
            ConfigError: the case has no label.
        """
        from atso_med.atso.cases import load_experiment_data
        from atso_med.atso.config import ExperimentConfig
        from atso_med.data.labels import load_label_mask
        from atso_med.data.readers import load_image, load_label

        config = ExperimentConfig.load(self.layout.config_file)
        data = load_experiment_data(config, self.dir)
        case = data.dataset.case(case_id)
        if case.label is None:
            raise ConfigError(f"case {case_id} has no label to compare with")
        image = load_image(case.image, series_uid=case.series_uid)
        truth = load_label_mask(case.label, image, data.foreground)
        panels = [(title, load_label(path, image) != 0) for title, path in masks.items()]
        return overlay_figure(image, truth, panels, case_id)
