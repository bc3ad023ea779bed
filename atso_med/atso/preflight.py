"""Checks before an experiment's first write: its folder, its resumption, and every case it reads.

An experiment starts in an empty or new folder that holds none of its inputs; it resumes only with
the configuration and splits it was started with (but the settings of :data:`RESUMABLE_CHANGES`);
and before the first training every case it reads must pass ``atso-med verify``.
"""

from __future__ import annotations

from pathlib import Path

from atso_med.atso.cases import ExperimentData
from atso_med.atso.config import ExperimentConfig
from atso_med.atso.layout import JOURNAL_FILE, LOCK_FILE, ExperimentLayout
from atso_med.errors import ConfigError, DatasetError
from atso_med.files import check_outside_data_folder
from atso_med.transforms.intensity import HU_WINDOW

__all__ = ["RESUMABLE_CHANGES", "check_experiment_folder", "check_resumed_splits", "refuse_unverified_cases"]

#: Settings that may change between a run and its resumption without changing any result.
#: Where the work runs is one of them: a run started on a cluster resumes on one machine and back.
RESUMABLE_CHANGES = ("devices", "distributed", "tracking")


def check_experiment_folder(config: ExperimentConfig, layout: ExperimentLayout, resume: bool) -> None:
    """Refuse a folder the experiment cannot start or resume in.

    Args:
        config: the experiment.
        layout: its folder (``config.output_dir``).
        resume: whether the experiment found in the folder is to be continued.

    Raises:
        ConfigError: an existing experiment without ``resume``; the folder is a file, the folder of
            an input, inside a data set's folder, or not empty without holding an experiment; a
            resumed experiment whose saved configuration differs from ``config``.
    """
    folder = layout.root
    if layout.journal_file.exists() and not resume:
        raise ConfigError(
            f"{folder} already holds an experiment ({JOURNAL_FILE}); resume it with --resume "
            "or choose another output_dir"
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output_dir {folder} is a file")
    _check_inputs_are_not_outputs(config, folder)
    started = layout.config_file.is_file()  # a run killed before its first journal write
    if (
        folder.is_dir()
        and not layout.journal_file.exists()
        and not started
        and any(p.name != LOCK_FILE for p in folder.iterdir())
    ):
        raise ConfigError(f"output_dir {folder} is not empty and holds no experiment; choose an empty or new folder")
    if resume and started:
        _check_same_config(config, layout)


def check_resumed_splits(layout: ExperimentLayout, data: ExperimentData) -> None:
    """Refuse to resume an experiment whose saved splits differ from the ones of its configuration.

    Raises:
        ConfigError: naming the splits file.
    """
    from atso_med.data.splits import Splits

    if layout.splits_file.is_file() and Splits.load(layout.splits_file).to_dict() != data.splits.to_dict():
        raise ConfigError(f"{layout.splits_file} differs from the splits of this configuration; it cannot be resumed")


def refuse_unverified_cases(data: ExperimentData) -> None:
    """Refuse, before the first training, every case the experiment reads that ``verify`` refuses.

    A bad reference case would otherwise surface when it is first pseudo-labelled, after the
    labeled-only trainings, or in generation 3 for a fold predicted late.

    Args:
        data: the experiment's data set and splits (and the classes it segments: each must be held
            by some label).

    Raises:
        DatasetError: naming each bad case, its role and its problems, or a chosen class no label holds.
    """
    from atso_med.data.verify import verify_dataset

    classes = None if data.selection is None else data.selection.to_spec()
    report = verify_dataset(data.dataset, data.splits, classes=classes)
    problems = [
        f"{row.id} ({row.role}): {'; '.join(row.errors)}" for row in report.rows if row.errors and row.role != "unused"
    ]
    problems += report.split_errors + [f"classes: {message}" for message in report.class_errors]
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s) in the experiment's cases; nothing was trained "
            "(atso-med verify DATASET --splits SPLITS shows the full report):\n  " + "\n  ".join(problems)
        )


#: Top-level settings added after experiments were started, with the value those experiments ran with.
_ADDED_SETTINGS = {"fold_training": "own", "fold_init": "scratch", "pseudo_label_confidence": None}


def _check_same_config(config: ExperimentConfig, layout: ExperimentLayout) -> None:
    import yaml

    saved = yaml.safe_load(layout.config_file.read_text())
    # Experiments started before a setting existed ran with its default.
    for key, default in _ADDED_SETTINGS.items():
        saved.setdefault(key, default)
    if isinstance(saved.get("training"), dict):
        saved["training"].setdefault("hu_window", list(HU_WINDOW))
    current = config.resolved()
    differing = sorted(
        key for key in set(saved) | set(current) if key not in RESUMABLE_CHANGES and saved.get(key) != current.get(key)
    )
    if differing:
        raise ConfigError(
            f"{layout.config_file} differs from this configuration in {', '.join(differing)}; "
            "an experiment is resumed with the configuration it was started with"
        )


def _check_inputs_are_not_outputs(config: ExperimentConfig, folder: Path) -> None:
    # The experiment folder must not contain the input data: outputs are never written
    # among the user's files, and a folder holding them is not mistaken for an experiment.
    data_sets = [config.dataset]
    if config.transfer is not None:
        data_sets += [config.transfer.source, config.transfer.target]
    for given in [*data_sets, config.splits]:
        if given is None:
            continue
        path = Path(given).resolve()
        parent = path.parent if path.is_file() or path.suffix else path
        if parent == folder.resolve():
            raise ConfigError(f"output_dir {folder} is the folder of the input {path}; choose another output_dir")
    for given in data_sets:
        check_outside_data_folder(folder, given, "output_dir")
