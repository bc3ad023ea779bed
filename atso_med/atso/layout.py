"""The layout of an experiment folder: every path the runner, the plan, the reports and the readers use.

This module is the only place that spells the folder's file and folder names; everything else
asks it. Paths inside the plan (step parameters) are relative to the experiment folder, so a plan
stays valid when the folder moves; :class:`ExperimentLayout` turns them into absolute paths::

    config.yaml                     the resolved configuration (defaults filled in, absolute paths)
    splits.json                     the splits used (copied or drawn)
    dataset.json                    transfer only: the merged source + target data set
    plan.json                       every step: kind, inputs, outputs, training case ids
    state.json                      the journal of finished steps and their results
    log.txt                         every stage, with the equivalent `python -m monai.bundle run ...`
    .lock                           held by the process that runs the experiment
    datalists/<set>.json            images to predict (test, fold<k>); no labels
    models/<strategy>/gen<t>/<all|fold<k>>/datalist.json
    models/<strategy>/gen<t>/<all|fold<k>>/plane_<P>/model.pt (+ settings.json, training.json, tensorboard/)
    models/<strategy>/gen<t>/<all|fold<k>>/plane_<P>.log     the training's output
    pseudo_labels/<strategy>/gen<t>/fold<k>/<case_id>.nii.gz   what generation t trains on
    predictions/<strategy>/gen<t>/<all|fold<k>|fused>/<test|fold<k>>/<case_id>.nii.gz
    reports/report.json, report.csv, report.md, progress.png, overlays/<case_id>.png
    reports/evaluations/<evaluated folder>/summary.json, per_case.csv
"""

from __future__ import annotations

import os
from pathlib import Path

from atso_med.atso.journal import JOURNAL_FILE
from atso_med.atso.lock import LOCK_FILE
from atso_med.data.writers import PREDICTION_FILES, prediction_file

__all__ = [
    "CONFIG_FILE",
    "DATASET_FILE",
    "JOURNAL_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "MASK_SUFFIX",
    "PLAN_FILE",
    "REPORTS_DIR",
    "REPORT_FILE",
    "SPLITS_FILE",
    "TRAINING_RECORD_FILE",
    "TRAINING_RESULT_SUFFIX",
    "TRAINING_SETTINGS_FILE",
    "ExperimentLayout",
    "evaluation_folder",
    "folder_patterns",
    "fused_predictions_folder",
    "model_folder",
    "plane_folder",
    "predictions_folder",
    "pseudo_label_folder",
]

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.json"
DATASET_FILE = "dataset.json"
PLAN_FILE = "plan.json"
LOG_FILE = "log.txt"
REPORTS_DIR = "reports"
#: In the reports folder: the machine-readable report that :class:`ExperimentResults` reads.
REPORT_FILE = "report.json"
#: In the reports folder: the tables as Markdown and CSV, the DSC-per-generation plot, the overlays.
REPORT_MARKDOWN = "report.md"
REPORT_CSV = "report.csv"
PROGRESS_PLOT = "progress.png"
OVERLAYS_DIR = "overlays"
#: The file name ending of a case's mask (``<case_id>.nii.gz``) in a prediction or pseudo-label folder:
#: the prediction writers' (:data:`atso_med.data.writers.PREDICTION_FILES`).
MASK_SUFFIX = PREDICTION_FILES["mask"].format("")
#: In a plane's training folder: the config overlay the bundle ran with (the runner's keys).
TRAINING_SETTINGS_FILE = "settings.json"
#: In a plane's training folder: what the runner recorded (init, weight hashes, command).
TRAINING_RECORD_FILE = "training.json"
#: Beside a plane's training folder (a fresh start empties the folder itself): a worker process's
#: result, removed once the runner has read it.
TRAINING_RESULT_SUFFIX = ".result.json"


def model_folder(model_key: str) -> str:
    """A model set's folder (``models/<strategy>/gen<t>/<group>``); ``model_key`` is ``<strategy>/gen<t>/<group>``."""
    return f"models/{model_key}"


def plane_folder(model_key: str, plane: str) -> str:
    """One plane's training folder of a model set (holds ``model.pt``)."""
    return f"{model_folder(model_key)}/plane_{plane}"


def training_datalist(model_key: str) -> str:
    """The data list every plane training of a model set reads."""
    return f"{model_folder(model_key)}/datalist.json"


def predictions_folder(model_key: str, case_set: str) -> str:
    """A model set's predictions of ``case_set`` (``test`` or ``fold<k>``)."""
    return f"predictions/{model_key}/{case_set}"


def fused_predictions_folder(generation: int, case_set: str) -> str:
    """The majority vote of ATSO's fold models of ``generation`` on ``case_set``."""
    return f"predictions/atso/gen{generation}/fused/{case_set}"


def pseudo_label_folder(strategy: str, generation: int | str, fold: int | str) -> str:
    """The pseudo labels of reference fold ``fold`` that ``generation`` of ``strategy`` trains on.

    ``generation`` and ``fold`` may be placeholders (``"<t>"``) for a pattern in a message.
    """
    return f"pseudo_labels/{strategy}/gen{generation}/fold{fold}"


def folder_patterns() -> dict[str, str]:
    """Where each kind of output lies, as patterns with placeholders, for messages to the user.

    Returns:
        What (``reports``, ``models``, ``pseudo labels``, ``predictions``, ``journal``) -> its path
        relative to the experiment folder.
    """
    group = "<strategy>/gen<t>/<all|fold<k>>"
    reports = ", ".join((REPORT_MARKDOWN, REPORT_FILE, REPORT_CSV, PROGRESS_PLOT, f"{OVERLAYS_DIR}/"))
    return {
        "reports": f"{REPORTS_DIR}/ ({reports})",
        "models": f"{plane_folder(group, '<P>')}/model.pt",
        "pseudo labels": f"{pseudo_label_folder('<strategy>', '<t>', '<k>')}/<case>{MASK_SUFFIX}",
        "predictions": f"{predictions_folder('<strategy>/gen<t>/<model>', '<test|fold<k>>')}/<case>{MASK_SUFFIX}",
        "journal": f"{JOURNAL_FILE} (resume with --resume), {LOG_FILE} (every stage's bundle command)",
    }


def evaluation_folder(target: str) -> str:
    """Where the evaluation of a prediction or pseudo-label folder (``target``) is written."""
    return f"{REPORTS_DIR}/evaluations/{target}"


class ExperimentLayout:
    """The absolute paths of one experiment folder.

    Args:
        root: the experiment folder (``output_dir``).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ExperimentLayout({str(self.root)!r})"

    def path(self, relative: str | os.PathLike) -> Path:
        """A path of the plan (relative to the experiment folder) made absolute."""
        return self.root / relative

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def splits_file(self) -> Path:
        return self.root / SPLITS_FILE

    @property
    def dataset_file(self) -> Path:
        """The merged data set of a transfer experiment."""
        return self.root / DATASET_FILE

    @property
    def plan_file(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def journal_file(self) -> Path:
        return self.root / JOURNAL_FILE

    @property
    def log_file(self) -> Path:
        return self.root / LOG_FILE

    @property
    def reports_dir(self) -> Path:
        return self.root / REPORTS_DIR

    @property
    def report_file(self) -> Path:
        return self.reports_dir / REPORT_FILE

    @property
    def report_markdown(self) -> Path:
        return self.reports_dir / REPORT_MARKDOWN

    @property
    def report_csv(self) -> Path:
        return self.reports_dir / REPORT_CSV

    @property
    def progress_plot(self) -> Path:
        return self.reports_dir / PROGRESS_PLOT

    @property
    def overlays_dir(self) -> Path:
        return self.reports_dir / OVERLAYS_DIR

    def prediction_datalist(self, case_set: str) -> Path:
        """The image-only data list of ``case_set`` (``test`` or ``fold<k>``) that predictions read."""
        return self.root / "datalists" / f"{case_set}.json"

    def training_log(self, plane_folder: str) -> Path:
        """The output of one training run on a cluster (beside its folder: a fresh start empties the folder)."""
        return self.root / f"{plane_folder}.log"

    def case_file(self, folder: str, case_id: str, kind: str = "mask") -> Path:
        """One case's file of a kind (:data:`~atso_med.data.writers.PREDICTION_FILES`: its mask by default)
        in a prediction or pseudo-label folder of the plan."""
        return prediction_file(self.root / folder, case_id, kind)

    def mask_ids(self, folder: str) -> list[str]:
        """The case ids of the masks in a prediction or pseudo-label folder, sorted (not the files beside them)."""
        others = [PREDICTION_FILES[kind].format("") for kind in PREDICTION_FILES if kind != "mask"]
        names = [path.name for path in (self.root / folder).glob(f"*{MASK_SUFFIX}")]
        return sorted(name[: -len(MASK_SUFFIX)] for name in names if not any(name.endswith(o) for o in others))

    def is_experiment(self) -> bool:
        """Whether the folder holds an experiment that has started (its configuration and journal)."""
        return self.config_file.is_file() and self.journal_file.is_file()
