"""The cases of an experiment: its data set and splits, for the semi-supervised and the transfer setting.

Semi-supervised: one ``dataset.json``; ``splits.json`` given, or drawn with
:func:`atso_med.data.split_protocols.make_splits` from the experiment's ``split`` settings and ``seed``.

Transfer: a labeled source data set and a target data set are merged into one ``dataset.json``
written in the experiment folder (ids prefixed ``source_`` / ``target_``, image and label paths
absolute, the input files untouched). Every source case with a label is labeled; ``target_test``
of the target cases that have a label are the test set; all other target cases are dealt into the
reference folds (their labels, if any, are read by the reports only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atso_med.atso.config import ExperimentConfig
from atso_med.data.class_selection import ClassSelection, class_group_indices, select_classes
from atso_med.data.dataset import Case, Dataset
from atso_med.data.duplicates import find_copies
from atso_med.data.split_protocols import make_splits
from atso_med.data.splits import Splits
from atso_med.errors import ConfigError, DatasetError, SplitError

SOURCE_PREFIX = "source_"
TARGET_PREFIX = "target_"


@dataclass
class ExperimentData:
    """The data set and the roles of its cases.

    Attributes:
        dataset: the data set (for transfer: the merged one).
        splits: labeled / reference folds / test / validation.
        dataset_file: where the data set is written (for transfer: inside the experiment folder).
        foreground: the label values of the organ (``foreground``, or the classes chosen by name
            with ``classes``: with several, the organs together); ``None``: every non-zero value.
        selection: the classes chosen by name (``classes``), or ``None``.
    """

    dataset: Dataset
    splits: Splits
    dataset_file: Path
    foreground: list[int] | None = None
    selection: ClassSelection | None = None

    @property
    def label_classes(self) -> ClassSelection | None:
        """The selection when it has several classes (the models then predict label maps), else ``None``."""
        return self.selection if self.selection is not None and self.selection.num_classes > 1 else None

    @property
    def with_truth(self) -> set[str]:
        """Ids of the cases that have a label (evaluations read only these)."""
        return set(self.dataset.labeled_ids)


def load_experiment_data(config: ExperimentConfig, experiment_dir: Path) -> ExperimentData:
    """Read (or build) the data set and splits of an experiment, checked before any work.

    Args:
        config: the experiment.
        experiment_dir: the experiment folder (the merged transfer data set is written there).

    Returns:
        The data set and splits.

    Raises:
        DatasetError / SplitError: malformed or inconsistent inputs.
        ConfigError: a fold count that differs from the splits', or too few cases.
    """
    data = _transfer_data(config, experiment_dir) if config.transfer is not None else _dataset_data(config)
    data.selection = experiment_selection(config.classes, data.dataset)
    data.foreground = organ_values(config.foreground, data.selection)
    if config.class_reduction is not None:
        check_class_reduction(config.class_reduction.groups, data.label_classes)
    return data


def check_class_reduction(groups: Mapping[str, Sequence[str]], selection: ClassSelection | None) -> None:
    """Refuse a class reduction whose groups do not hold each chosen class once, before any work.

    Raises:
        ConfigError: one class chosen (nothing to merge), or groups that name an unknown class, hold
            one twice or leave one out.
    """
    if selection is None:
        raise ConfigError("class_reduction merges classes, but 'classes' chooses only one")
    class_group_indices(groups, selection.names, "class_reduction.groups")


def experiment_selection(classes: Any, dataset: Dataset) -> ClassSelection | None:
    """The classes an experiment segments, chosen by name (``classes``) among the data set's labels.

    Raises:
        ConfigError: ``classes`` names a class the data set does not declare (before any work).
    """
    return None if classes is None else select_classes(classes, dataset.labels, f"{dataset.name}'s labels")


def organ_values(foreground: list[int] | None, selection: ClassSelection | None) -> list[int] | None:
    """The label values of the organs together: ``foreground``, or every selected class's values."""
    return foreground if selection is None else list(selection.foreground)


def _dataset_data(config: ExperimentConfig) -> ExperimentData:
    dataset = Dataset.load(config.dataset)
    if config.splits is not None:
        splits = Splits.load(config.splits)
        splits.validate(dataset)
        if config.folds is not None and config.folds != splits.folds:
            raise ConfigError(f"folds is {config.folds} but {config.splits} has {splits.folds} reference folds")
    else:
        splits = make_splits(
            dataset,
            labeled=config.split.labeled,
            folds=config.folds or 2,
            seed=config.seed,
            test=config.split.test,
            validation=config.split.validation,
            copies=find_copies(dataset),
        )
    return ExperimentData(dataset, splits, Path(dataset.path or config.dataset))


def _transfer_data(config: ExperimentConfig, experiment_dir: Path) -> ExperimentData:
    transfer = config.transfer
    source, target = Dataset.load(transfer.source), Dataset.load(transfer.target)
    if not source.labeled_ids:
        raise DatasetError(f"{transfer.source}: the source data set has no labeled case to train on")
    labels = dict(target.labels)
    labels.update(source.labels)  # the source's class names describe what is learnt
    cases = [
        Case(SOURCE_PREFIX + c.id, c.image, c.label, dict(c.extra)) for c in source.cases if c.label is not None
    ] + [Case(TARGET_PREFIX + c.id, c.image, c.label, dict(c.extra)) for c in target.cases]
    merged = Dataset(
        name=f"transfer-{source.name}-to-{target.name}",
        labels=labels,
        cases=cases,
        root=experiment_dir.resolve(),
        extra={"transfer": {"source": str(transfer.source), "target": str(transfer.target)}},
    )
    folds = config.folds or 2
    rng = np.random.default_rng(config.seed)
    with_label = sorted(TARGET_PREFIX + i for i in target.labeled_ids)
    with_label = [with_label[i] for i in rng.permutation(len(with_label))]
    from atso_med.data.split_protocols import parse_amount

    amount = parse_amount(transfer.target_test, "transfer.target_test")
    n_test = amount if isinstance(amount, int) else int(np.floor(amount * len(with_label) + 0.5))
    if n_test > len(with_label):
        raise SplitError(
            f"transfer.target_test asks for {n_test} test cases but the target has {len(with_label)} labeled cases"
        )
    test = sorted(with_label[:n_test])
    rest = sorted(TARGET_PREFIX + c.id for c in target.cases if TARGET_PREFIX + c.id not in set(test))
    rest = [rest[i] for i in rng.permutation(len(rest))]
    if len(rest) < folds:
        raise SplitError(f"only {len(rest)} target case(s) left for {folds} reference folds")
    splits = Splits(
        labeled=sorted(SOURCE_PREFIX + i for i in source.labeled_ids),
        reference=[sorted(rest[k::folds]) for k in range(folds)],
        test=test,
        validation=[],
        seed=config.seed,
        protocol="transfer",
        meta={"source": str(transfer.source), "target": str(transfer.target), "target_test": str(transfer.target_test)},
    )
    splits.validate(merged)
    return ExperimentData(merged, splits, experiment_dir / "dataset.json")
