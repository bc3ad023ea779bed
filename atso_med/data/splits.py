"""Splits: which cases are labeled, reference (K folds), test and validation.

``splits.json`` is kept apart from ``dataset.json`` so that one dataset serves several
experiments (10% or 20% labeled, four test folds, several seeds). Layout::

    {
      "labeled": ["PANCREAS_0023", ...],
      "reference": [["PANCREAS_0030", ...], ["PANCREAS_0041", ...]],
      "test": ["PANCREAS_0001", ...],
      "validation": [],
      "seed": 0,
      "protocol": "nih4fold",
      "meta": {"test_fold": 0, "labeled": "0.1", ...}
    }

Roles:
    labeled: cases trained on with their own ground truth.
    reference: the unlabeled training cases, in K >= 2 folds; ATSO's teachers label one fold
        with a model that never trained on it. Their ground truth, if dataset.json has it, is
        used only in reports, never in training (see :func:`atso_med.atso.generations.training_items`).
    test: held out, evaluated with ground truth.
    validation: optional labeled cases for model selection (extra annotation; not counted as
        labeled training data).

Two ways to make splits:
    :func:`make_splits` (protocol ``random``): test and validation are drawn from the cases
        that have a label (they need truth); ``labeled`` is drawn from the labeled cases left;
        everything else (the remaining labeled cases and every unlabeled case) becomes reference.
    :func:`nih4fold_splits` (protocol ``nih4fold``): the RSTN/ATSO protocol on NIH Pancreas-CT;
        the test set is fixed by case number, see the function.

Amounts (``labeled``, ``test``, ``validation``) are a count (``6``) or a fraction
(``0.1``); from the command line ``"6"`` is a count and ``"0.1"`` a fraction. A fraction of
``labeled`` is taken of the training pool (all cases that are neither test nor validation,
labeled or not), rounded half up: 10% of NIH's 62 training cases is 6, 20% is 12. A fraction
of ``test`` or ``validation`` is taken of the cases that have a label.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atso_med.errors import SplitError
from atso_med.files import read_json, write_text_atomic

if TYPE_CHECKING:
    from atso_med.data.dataset import Dataset

#: Default file name, written next to dataset.json.
SPLITS_FILE = "splits.json"

#: NIH Pancreas-CT test folds of protocol A (RSTN / ATSO): inclusive case-number ranges.
NIH_TEST_FOLDS: tuple[tuple[int, int], ...] = ((1, 20), (21, 40), (41, 61), (62, 82))

_KEYS = ("labeled", "reference", "test", "validation", "seed", "protocol", "meta")

Amount = int | float


@dataclass
class Splits:
    """Roles of the cases of one experiment.

    Attributes:
        labeled: ids trained on with their ground truth.
        reference: K >= 2 folds of ids trained on only through pseudo labels.
        test: held-out ids.
        validation: ids for model selection (labeled).
        seed: seed the split was drawn with, or ``None`` for a hand-made split.
        protocol: how it was made: ``"random"``, ``"nih4fold"`` or ``"manual"``.
        meta: free-form details (arguments used, dataset name); written as given.
    """

    labeled: list[str]
    reference: list[list[str]]
    test: list[str]
    validation: list[str] = field(default_factory=list)
    seed: int | None = None
    protocol: str = "manual"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def folds(self) -> int:
        """Number of reference folds (K)."""
        return len(self.reference)

    @property
    def reference_ids(self) -> list[str]:
        """All reference ids, fold after fold."""
        return [case_id for fold in self.reference for case_id in fold]

    def roles(self) -> dict[str, str]:
        """Map each id to its role name (``"reference[1]"`` for fold 1); the first role wins on duplicates."""
        out: dict[str, str] = {}
        for case_id, role in self._entries():
            out.setdefault(case_id, role)
        return out

    def _entries(self) -> list[tuple[str, str]]:
        entries = [(i, "labeled") for i in self.labeled]
        for k, fold in enumerate(self.reference):
            entries += [(i, f"reference[{k}]") for i in fold]
        entries += [(i, "test") for i in self.test]
        entries += [(i, "validation") for i in self.validation]
        return entries

    def validate(self, dataset: Dataset) -> None:
        """Check the splits against a dataset; every problem is reported at once.

        Args:
            dataset: the dataset the ids refer to.

        Raises:
            SplitError: ids not in dataset.json, an id in two roles or two folds, labeled or
                validation ids without a label, fewer than 2 folds, an empty fold, or no
                labeled case.
        """
        problems = self.problems(dataset)
        if problems:
            raise SplitError("invalid splits: " + "; ".join(problems))

    def problems(self, dataset: Dataset) -> list[str]:
        """Return the problems :meth:`validate` would raise, one message each.

        Args:
            dataset: the dataset the ids refer to.

        Returns:
            Messages naming the offending ids, folds and roles; empty when the splits are valid.
        """
        problems: list[str] = []
        if len(self.reference) < 2:
            problems.append(f"reference needs at least 2 folds, got {len(self.reference)}")
        empty = [k for k, fold in enumerate(self.reference) if not fold]
        if empty:
            problems.append(f"empty reference fold(s): {', '.join(f'reference[{k}]' for k in empty)}")
        if not self.labeled:
            problems.append("no labeled case")

        entries = self._entries()
        known = set(dataset.ids)
        unknown: dict[str, list[str]] = {}
        for case_id, role in entries:
            if case_id not in known:
                unknown.setdefault(role.split("[")[0], []).append(case_id)
        for role, ids in unknown.items():
            problems.append(f"{role} ids not in dataset.json: {', '.join(map(repr, ids))}")

        where: dict[str, list[str]] = {}
        for case_id, role in entries:
            where.setdefault(case_id, []).append(role)
        for case_id, roles in where.items():
            if len(roles) > 1:
                problems.append(f"id {case_id!r} is in more than one place: {' and '.join(roles)}")

        for role, ids in (("labeled", self.labeled), ("validation", self.validation)):
            missing = [i for i in ids if i in known and dataset.case(i).label is None]
            if missing:
                problems.append(f"{role} ids without a label in dataset.json: {', '.join(map(repr, missing))}")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (keys in the documented order)."""
        return {
            "labeled": list(self.labeled),
            "reference": [list(fold) for fold in self.reference],
            "test": list(self.test),
            "validation": list(self.validation),
            "seed": self.seed,
            "protocol": self.protocol,
            "meta": dict(self.meta),
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``splits.json`` atomically as indented JSON.

        Args:
            path: output file.

        Returns:
            The file written.
        """
        return write_text_atomic(json.dumps(self.to_dict(), indent=2) + "\n", Path(path).expanduser())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Splits:
        """Read a ``splits.json``, checking its structure (not its ids; see :meth:`validate`).

        Args:
            path: the file.

        Returns:
            The splits.

        Raises:
            SplitError: the file is missing, not JSON, has unknown or missing keys, or values of
                the wrong type.
        """
        file = Path(path).expanduser()
        return cls.from_dict(read_json(file, "splits file", SplitError), source=str(file))

    @classmethod
    def from_dict(cls, data: Any, source: str = "splits") -> Splits:
        """Build splits from parsed JSON.

        Args:
            data: the JSON object.
            source: name used in error messages.

        Returns:
            The splits.

        Raises:
            SplitError: missing or unknown keys (a typo such as ``"validaton"`` must not be
                dropped silently), or values of the wrong type.
        """
        if not isinstance(data, dict):
            raise SplitError(f"{source}: top level must be a JSON object")
        problems = []
        missing = [k for k in ("labeled", "reference", "test") if k not in data]
        if missing:
            problems.append(f"missing key(s): {', '.join(map(repr, missing))}")
        unknown = [k for k in data if k not in _KEYS]
        if unknown:
            problems.append(f"unknown key(s): {', '.join(map(repr, unknown))} (allowed: {', '.join(_KEYS)})")

        def id_list(value: Any, name: str) -> list[str]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{name!r} must be a list of case id strings")
                return []
            return list(value)

        labeled = id_list(data.get("labeled", []), "labeled")
        test = id_list(data.get("test", []), "test")
        validation = id_list(data.get("validation", []) or [], "validation")
        raw_reference = data.get("reference", [])
        reference: list[list[str]] = []
        if not isinstance(raw_reference, list):
            problems.append("'reference' must be a list of folds (lists of case ids)")
        else:
            for k, fold in enumerate(raw_reference):
                reference.append(id_list(fold, f"reference[{k}]"))
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            problems.append(f"'seed' must be an integer or null, got {seed!r}")
        protocol = data.get("protocol", "manual")
        if not isinstance(protocol, str):
            problems.append(f"'protocol' must be a string, got {protocol!r}")
        meta = data.get("meta", {}) or {}
        if not isinstance(meta, dict):
            problems.append("'meta' must be an object")
        if problems:
            raise SplitError(f"{source}: " + "; ".join(problems))
        return cls(labeled, reference, test, validation, seed=seed, protocol=protocol, meta=meta)


def parse_amount(value: str | int | float, name: str = "amount") -> Amount:
    """Turn a count or fraction as given on the command line into an int (count) or float (fraction).

    ``"6"`` and ``6`` are counts; ``"0.1"``, ``"1.0"`` and ``0.1`` are fractions.

    Args:
        value: the amount.
        name: option name for messages.

    Returns:
        An ``int`` count (>= 0) or a ``float`` fraction in [0, 1].

    Raises:
        SplitError: not a number, negative, or a fraction above 1.
    """
    if isinstance(value, bool):
        raise SplitError(f"{name}: expected a count or a fraction, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
        except ValueError as error:
            raise SplitError(f"{name}: expected a count (6) or a fraction (0.1), got {text!r}") from error
    if isinstance(value, int):
        if value < 0:
            raise SplitError(f"{name}: count must be >= 0, got {value}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise SplitError(f"{name}: fraction must lie in [0, 1], got {value} (give an integer for a count)")
        return value
    raise SplitError(f"{name}: expected a count or a fraction, got {value!r}")


def _count(amount: Amount, total: int, name: str, available: int | None = None) -> int:
    """Resolve a count or fraction of ``total`` to a count, checked against what is ``available``."""
    amount = parse_amount(amount, name)
    # Round half up (not Python's half-to-even) so that e.g. 0.25 * 10 -> 3 predictably.
    n = amount if isinstance(amount, int) else int(math.floor(amount * total + 0.5))
    limit = total if available is None else available
    if n > limit:
        raise SplitError(f"{name}: asked for {n} cases but only {limit} are available")
    return n


def _deal_folds(ids: Sequence[str], folds: int) -> list[list[str]]:
    # Round-robin over an already shuffled list: fold sizes differ by at most one.
    return [sorted(ids[k::folds]) for k in range(folds)]


def _check_folds(folds: int) -> None:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise SplitError(f"folds must be an integer >= 2, got {folds!r}")


class _Copies:
    """Copies of one image (:func:`atso_med.data.duplicates.copy_groups`) dealt as one unit.

    The draw sees one id per group (its smallest), and every role it gets is given to all the
    group's ids; without copies every id is its own unit and the draw is unchanged.
    """

    def __init__(self, copies: Sequence[Sequence[str]] = ()) -> None:
        self.group: dict[str, list[str]] = {}
        for ids in copies:
            for case_id in ids:
                self.group[case_id] = sorted(ids)

    def units(self, ids: Sequence[str]) -> list[str]:
        """One id per group among ``ids`` (groups with a member outside ``ids`` are left out)."""
        present = set(ids)
        return [i for i in ids if all(m in present for m in self.members(i)) and self.members(i)[0] == i]

    def members(self, case_id: str) -> list[str]:
        return self.group.get(case_id, [case_id])

    def expand(self, ids: Iterable[str]) -> list[str]:
        """Every id of the groups of ``ids``, once each, sorted."""
        return sorted({m for i in ids for m in self.members(i)})


def _shuffled(ids: Sequence[str], rng: np.random.Generator) -> list[str]:
    # Sorting first makes the draw independent of the order of cases in dataset.json.
    ordered = sorted(ids)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def make_splits(
    dataset: Dataset,
    labeled: Amount | str,
    folds: int = 2,
    seed: int = 0,
    test: Amount | str = 0.25,
    validation: Amount | str = 0,
    copies: Sequence[Sequence[str]] = (),
) -> Splits:
    """Draw a random split, reproducible for a given dataset and seed.

    Order of the draw (one ``np.random.default_rng(seed)``): the cases that have a label are
    shuffled; the first ``test`` of them become test, the next ``validation`` validation,
    the next ``labeled`` labeled. All remaining cases (labeled ones and every unlabeled one)
    are shuffled and dealt into ``folds`` reference folds whose sizes differ by at most one.
    Copies of one image (``copies``) are drawn as one case and always share a role; a group
    with an unlabeled member goes to the reference folds.

    Args:
        dataset: the dataset.
        labeled: count, or fraction of the training pool (cases neither test nor validation).
        folds: number of reference folds K (>= 2).
        seed: random seed.
        test: count, or fraction of the cases that have a label, held out for testing.
            Default 0.25 (one quarter, as in the 4-fold NIH protocol); 0 when the test set
            lives in another dataset.
        validation: count, or fraction of the cases that have a label, for model selection.
        copies: groups of case ids that are the same image
            (:func:`~atso_med.data.duplicates.copy_groups`); counts are of groups.

    Returns:
        The splits (each list sorted), with ``protocol="random"``.

    Raises:
        SplitError: an amount is invalid or asks for more labeled cases than there are,
            ``labeled`` resolves to 0, or too few cases are left for the folds.
    """
    _check_folds(folds)
    units = _Copies(copies)
    rng = np.random.default_rng(seed)
    pool = _shuffled(units.units(dataset.labeled_ids), rng)
    n_labeled_cases = len(pool)
    n_test = _count(test, n_labeled_cases, "test")
    n_val = _count(validation, n_labeled_cases, "validation", available=n_labeled_cases - n_test)
    test_ids, val_ids = pool[:n_test], pool[n_test : n_test + n_val]
    rest = pool[n_test + n_val :]
    training_pool = len(units.units(dataset.ids)) - n_test - n_val
    n_lab = _count(labeled, training_pool, "labeled", available=len(rest))
    if n_lab == 0:
        raise SplitError(f"labeled: {labeled!r} of {training_pool} training cases is 0 cases; ask for at least 1")
    labeled_ids = rest[:n_lab]
    chosen = set(units.expand(test_ids + val_ids + labeled_ids))
    reference_pool = _shuffled(units.units([i for i in dataset.ids if i not in chosen]), rng)
    if len(reference_pool) < folds:
        raise SplitError(f"only {len(reference_pool)} case(s) left for {folds} reference folds")
    splits = Splits(
        labeled=units.expand(labeled_ids),
        reference=[units.expand(fold) for fold in _deal_folds(reference_pool, folds)],
        test=units.expand(test_ids),
        validation=units.expand(val_ids),
        seed=seed,
        protocol="random",
        meta={"dataset": dataset.name, "labeled": str(labeled), "test": str(test), "validation": str(validation)},
    )
    splits.validate(dataset)
    return splits


def case_number(case_id: str) -> int:
    """Return the NIH case number in an id: ``"PANCREAS_0001"`` and ``"0001"`` give 1.

    Args:
        case_id: the id.

    Returns:
        The number formed by the id's only run of digits.

    Raises:
        SplitError: the id holds no digits, or several separate runs of digits (ambiguous).
    """
    runs = re.findall(r"\d+", case_id)
    if not runs:
        raise SplitError(f"id {case_id!r} holds no case number")
    if len(runs) > 1:
        raise SplitError(f"id {case_id!r} holds several numbers ({', '.join(runs)}); the case number is ambiguous")
    return int(runs[0])


def nih4fold_splits(
    dataset: Dataset,
    test_fold: int,
    labeled: Amount | str = 0.1,
    folds: int = 2,
    seed: int = 0,
    validation: Amount | str = 0,
    copies: Sequence[Sequence[str]] = (),
) -> Splits:
    """Split NIH Pancreas-CT by protocol A (RSTN / ATSO): test set fixed by case number.

    Test fold 0..3 holds cases 1-20, 21-40, 41-61, 62-82. Cases 25 and 70 (removed from TCIA
    as duplicates of case 2) may be absent, as may any other number. The remaining cases form
    the training pool: ``validation`` (if any) is drawn first from its cases with a label,
    then ``labeled`` (10% of 62 -> 6, 20% -> 12), seeded; the rest are dealt into ``folds``
    reference folds.

    Args:
        dataset: the dataset; every id must carry its NIH case number (1..82).
        test_fold: 0, 1, 2 or 3.
        labeled: count, or fraction of the training pool.
        folds: number of reference folds K (>= 2).
        seed: random seed.
        validation: count, or fraction of the training pool, for model selection.
        copies: groups of case ids that are the same image: a copy of a test case joins the test
            set (NIH's cases 25 and 70 repeat case 2), and other copies share a role.

    Returns:
        The splits, with ``protocol="nih4fold"`` and the test fold in ``meta``.

    Raises:
        SplitError: a bad test fold, ids without a (unique) case number or with a number
            outside 1..82, or amounts that cannot be met.
    """
    _check_folds(folds)
    if isinstance(test_fold, bool) or not isinstance(test_fold, int) or not 0 <= test_fold < len(NIH_TEST_FOLDS):
        raise SplitError(f"test fold must be 0, 1, 2 or 3, got {test_fold!r}")
    numbers: dict[str, int] = {}
    problems: list[str] = []
    for case_id in dataset.ids:
        try:
            numbers[case_id] = case_number(case_id)
        except SplitError as error:
            problems.append(str(error))
    by_number: dict[int, list[str]] = {}
    for case_id, number in numbers.items():
        by_number.setdefault(number, []).append(case_id)
    for number, ids in sorted(by_number.items()):
        if len(ids) > 1:
            problems.append(f"case number {number} is shared by {', '.join(map(repr, ids))}")
    outside = [i for i, n in numbers.items() if not 1 <= n <= NIH_TEST_FOLDS[-1][1]]
    if outside:
        problems.append(f"case numbers outside 1..82 (not NIH Pancreas-CT?): {', '.join(map(repr, outside))}")
    if problems:
        raise SplitError("nih4fold: " + "; ".join(problems))

    low, high = NIH_TEST_FOLDS[test_fold]
    units = _Copies(copies)
    test_ids = units.expand(i for i, n in numbers.items() if low <= n <= high)
    train = [i for i in dataset.ids if i not in set(test_ids)]
    rng = np.random.default_rng(seed)
    with_label = _shuffled(units.units([i for i in train if dataset.case(i).label is not None]), rng)
    n_val = _count(validation, len(train), "validation", available=len(with_label))
    val_ids = with_label[:n_val]
    n_lab = _count(labeled, len(train) - n_val, "labeled", available=len(with_label) - n_val)
    if n_lab == 0:
        raise SplitError(f"labeled: {labeled!r} of {len(train) - n_val} training cases is 0 cases; ask for at least 1")
    labeled_ids = with_label[n_val : n_val + n_lab]
    chosen = set(units.expand(val_ids + labeled_ids))
    reference_pool = _shuffled(units.units([i for i in train if i not in chosen]), rng)
    if len(reference_pool) < folds:
        raise SplitError(f"only {len(reference_pool)} case(s) left for {folds} reference folds")
    splits = Splits(
        labeled=units.expand(labeled_ids),
        reference=[units.expand(fold) for fold in _deal_folds(reference_pool, folds)],
        test=test_ids,
        validation=units.expand(val_ids),
        seed=seed,
        protocol="nih4fold",
        meta={
            "dataset": dataset.name,
            "test_fold": test_fold,
            "test_cases": f"{low}-{high}",
            "labeled": str(labeled),
            "validation": str(validation),
        },
    )
    splits.validate(dataset)
    return splits
