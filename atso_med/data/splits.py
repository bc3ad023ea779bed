"""Splits: which cases are labeled, reference (K folds), test and validation, and their file.

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

How splits are drawn (protocols ``random`` and ``nih4fold``) is :mod:`atso_med.data.split_protocols`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atso_med.data.dataset import Dataset
from atso_med.errors import SplitError
from atso_med.files import read_json, write_text_atomic

#: Default file name, written next to dataset.json.
SPLITS_FILE = "splits.json"

_KEYS = ("labeled", "reference", "test", "validation", "seed", "protocol", "meta")


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
