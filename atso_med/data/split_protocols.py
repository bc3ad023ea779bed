"""Drawing splits: the protocols ``random`` and ``nih4fold``, reproducible from a seed.

Two ways to make :class:`~atso_med.data.splits.Splits`:
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

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from atso_med.data.dataset import Dataset
from atso_med.data.splits import Splits
from atso_med.errors import SplitError

#: NIH Pancreas-CT test folds of protocol A (RSTN / ATSO): inclusive case-number ranges.
NIH_TEST_FOLDS: tuple[tuple[int, int], ...] = ((1, 20), (21, 40), (41, 61), (62, 82))

Amount = int | float


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


def _draw_labeled(labeled: Amount | str, training_pool: int, candidates: list[str]) -> list[str]:
    """The labeled units: the first ``labeled`` of the shuffled ``candidates``.

    Args:
        labeled: count, or fraction of ``training_pool``.
        training_pool: how many units train (neither test nor validation).
        candidates: the shuffled units with a label that are still free.

    Returns:
        The drawn units.

    Raises:
        SplitError: the amount is invalid, asks for more than ``candidates`` or resolves to 0.
    """
    n_lab = _count(labeled, training_pool, "labeled", available=len(candidates))
    if n_lab == 0:
        raise SplitError(f"labeled: {labeled!r} of {training_pool} training cases is 0 cases; ask for at least 1")
    return candidates[:n_lab]


def _deal_the_rest(
    dataset: Dataset,
    units: _Copies,
    rng: np.random.Generator,
    folds: int,
    test: list[str],
    validation: list[str],
    labeled: list[str],
    seed: int,
    protocol: str,
    meta: dict[str, Any],
) -> Splits:
    """The splits once test, validation and labeled units are drawn: every other case is reference.

    The remaining units are shuffled with ``rng`` (after the draws before, so that a split is
    reproduced by its seed) and dealt into ``folds`` folds; each unit brings all its copies.

    Args:
        dataset: the dataset.
        units: the copy groups.
        rng: the split's random stream.
        folds: number of reference folds K.
        test: the test units.
        validation: the validation units.
        labeled: the labeled units.
        seed: the split's seed, recorded.
        protocol: how the split was made, recorded.
        meta: details recorded with the split.

    Returns:
        The splits, checked against ``dataset``.

    Raises:
        SplitError: fewer units are left than ``folds``.
    """
    chosen = set(units.expand(test + validation + labeled))
    reference_pool = _shuffled(units.units([i for i in dataset.ids if i not in chosen]), rng)
    if len(reference_pool) < folds:
        raise SplitError(f"only {len(reference_pool)} case(s) left for {folds} reference folds")
    splits = Splits(
        labeled=units.expand(labeled),
        reference=[units.expand(fold) for fold in _deal_folds(reference_pool, folds)],
        test=units.expand(test),
        validation=units.expand(validation),
        seed=seed,
        protocol=protocol,
        meta=meta,
    )
    splits.validate(dataset)
    return splits


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
    labeled_ids = _draw_labeled(labeled, training_pool, rest)
    meta = {"dataset": dataset.name, "labeled": str(labeled), "test": str(test), "validation": str(validation)}
    return _deal_the_rest(dataset, units, rng, folds, test_ids, val_ids, labeled_ids, seed, "random", meta)


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
    labeled_ids = _draw_labeled(labeled, len(train) - n_val, with_label[n_val:])
    meta = {
        "dataset": dataset.name,
        "test_fold": test_fold,
        "test_cases": f"{low}-{high}",
        "labeled": str(labeled),
        "validation": str(validation),
    }
    return _deal_the_rest(dataset, units, rng, folds, test_ids, val_ids, labeled_ids, seed, "nih4fold", meta)
