"""What to segment, chosen by the class names of ``dataset.json``'s ``labels``.

Multi-organ data sets declare many classes (TotalSegmentator 117, AMOS 15, the phantom's organ
map 10); an experiment segments some of them. A selection names them, in one of three forms:

* one name, ``"pancreas"``: a single organ; every other class becomes background;
* a list, ``["liver", "spleen", "pancreas"]``: several organs, output classes 1, 2, 3 in that order;
* a mapping of output names to dataset classes, ``{"kidneys": ["kidney_left", "kidney_right"],
  "pancreas": "pancreas"}``: merged classes (a group's voxels are one output class).

The selection turns a stored label map into the label map the models learn and predict: values
``0..C`` with ``0`` background (:meth:`ClassSelection.remap`). A name that ``labels`` does not
declare, background, a dataset class chosen twice, or a group name that is another dataset class
is refused before any file is read, with the names that would fit.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atso_med.errors import ConfigError, LabelValueError

__all__ = ["ClassSelection", "check_class_spec", "class_group_indices", "select_classes"]

# How many dataset class names a message lists before it says "...".
_SHOW = 12


@dataclass(frozen=True)
class ClassSelection:
    """The output classes of an experiment and the dataset classes each one gathers.

    Attributes:
        names: output class names; output class ``c`` (``1..C``) is ``names[c - 1]``.
        members: per output class, the dataset class names it gathers (one, or a merged group).
        values: per output class, the dataset label values it gathers (same order as ``members``).
    """

    names: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]
    values: tuple[tuple[int, ...], ...]

    @property
    def num_classes(self) -> int:
        """``C``, the number of output classes (background not counted)."""
        return len(self.names)

    @property
    def classes(self) -> dict[int, str]:
        """The output label map's classes: ``{0: "background", 1: names[0], ...}``."""
        return {0: "background", **dict(enumerate(self.names, start=1))}

    @property
    def foreground(self) -> tuple[int, ...]:
        """Every selected dataset label value (the organ mask of a single-class selection)."""
        return tuple(sorted(v for group in self.values for v in group))

    def lookup_table(self, max_value: int) -> np.ndarray:
        """uint8 table: dataset value -> output class, for values ``0..max_value``."""
        table = np.zeros(int(max_value) + 1, dtype=np.uint8)
        for output_class, group in enumerate(self.values, start=1):
            for value in group:
                if value <= max_value:
                    table[value] = output_class
        return table

    def remap(self, label: np.ndarray, source: str = "label") -> np.ndarray:
        """The output label map (uint8, ``0..C``) of a stored label map.

        Unselected classes become background. The label's values must already have passed the
        declared-class check (:func:`atso_med.data.labels.check_label_values`).

        Args:
            label: integer label values (any shape).
            source: the file, for the message.

        Returns:
            A uint8 array of the same shape.

        Raises:
            LabelValueError: a negative value (never a declared class).
        """
        label = np.asarray(label)
        if label.size == 0:
            return np.zeros(label.shape, dtype=np.uint8)
        low, high = int(label.min()), int(label.max())
        if low < 0:
            raise LabelValueError(f"{source}: label has negative value {low}; class values are >= 0")
        # Integer labels index the table as they are (no int64 copy of a CT-sized volume); bool and
        # integer-valued float labels are cast first.
        index = label if label.dtype.kind in "iu" else label.astype(np.int64)
        return self.lookup_table(high)[index]

    def to_spec(self) -> str | list[str] | dict[str, str | list[str]]:
        """The selection in the form a user writes it (saved with every run)."""
        merged = any(len(m) > 1 or m[0] != n for n, m in zip(self.names, self.members, strict=True))
        if merged:
            return {n: list(m) if len(m) > 1 else m[0] for n, m in zip(self.names, self.members, strict=True)}
        return self.names[0] if len(self.names) == 1 else list(self.names)

    def describe(self) -> str:
        """One line: ``liver (5), kidneys = kidney_left + kidney_right (3, 2)``."""
        parts = []
        for name, members, values in zip(self.names, self.members, self.values, strict=True):
            shown = ", ".join(str(v) for v in values)
            parts.append(f"{name} ({shown})" if members == (name,) else f"{name} = {' + '.join(members)} ({shown})")
        return ", ".join(parts)


def select_classes(spec: Any, labels: Mapping[int, str], source: str = "dataset.json") -> ClassSelection:
    """Resolve a class selection against a dataset's declared classes.

    Args:
        spec: a name, a list of names, or a mapping of output name -> name or list of names
            (see the module docstring).
        labels: the dataset's classes, value -> name (``dataset.json``'s ``labels``).
        source: where ``labels`` come from, for messages.

    Returns:
        The selection.

    Raises:
        ConfigError: an empty or malformed selection, a name not among ``labels``, background,
            a dataset class chosen twice, an output name given twice, or a group named after
            another dataset class.
    """
    by_name: dict[str, int] = {}
    for value, name in labels.items():
        by_name.setdefault(str(name), int(value))
    groups = _groups(spec)
    names: list[str] = []
    members: list[tuple[str, ...]] = []
    values: list[tuple[int, ...]] = []
    chosen: dict[str, str] = {}
    for output_name, group in groups:
        if output_name in names:
            raise ConfigError(f"class selection: {output_name!r} is listed twice")
        group_values = []
        for member in group:
            if member not in by_name:
                raise ConfigError(
                    f"class selection: {member!r} is not a class of {source}; {_suggest(member, by_name)}"
                )
            if by_name[member] == 0:
                raise ConfigError(f"class selection: {member!r} is the background (value 0) of {source}")
            if member in chosen:
                raise ConfigError(
                    f"class selection: {member!r} is chosen twice (in {chosen[member]!r} and {output_name!r})"
                )
            chosen[member] = output_name
            group_values.append(by_name[member])
        if output_name in by_name and output_name not in group:
            raise ConfigError(
                f"class selection: the group {output_name!r} is named after another class of {source}; "
                "name it differently"
            )
        names.append(output_name)
        members.append(tuple(group))
        values.append(tuple(group_values))
    if len(names) > 255:
        raise ConfigError(f"class selection: {len(names)} classes; at most 255 fit a uint8 label map")
    return ClassSelection(tuple(names), tuple(members), tuple(values))


def check_class_spec(spec: Any) -> str | list[str] | dict[str, str | list[str]]:
    """Check the form of a class selection before the dataset's labels are known (a configuration file).

    Returns:
        ``spec`` in plain types (a name, a list, or a dict of names / lists).

    Raises:
        ConfigError: an empty or malformed selection, a name or group listed twice.
    """
    groups = _groups(spec)
    names = [name for name, _ in groups]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"class selection: {repeated[0]!r} is listed twice")
    if isinstance(spec, str):
        return groups[0][0]
    if isinstance(spec, Mapping):
        given = spec.values()
        return {name: m[0] if isinstance(raw, str) else m for (name, m), raw in zip(groups, given, strict=True)}
    return names


def class_group_indices(
    groups: Any, class_names: Sequence[str] | None, where: str = "class_groups"
) -> list[tuple[int, ...]] | None:
    """The classes (1-based) of each merged group of a class reduction, checked.

    Args:
        groups: group name -> the names of its classes (or one name); ``None`` for no reduction.
        class_names: the training's classes, class 1 first.
        where: the setting's name in error messages.

    Returns:
        Per group, in order, the indices of its classes; ``None`` without ``groups``.

    Raises:
        ConfigError: not a mapping, a name that is not a class, a class in two groups or in none.
    """
    if groups is None:
        return None
    if not isinstance(groups, Mapping) or not groups:
        raise ConfigError(f"{where} must map group names to lists of class names, got {groups!r}")
    names = list(class_names or [])
    owner: dict[str, str] = {}
    indices = []
    for group, given in groups.items():
        members = [given] if isinstance(given, str) else list(given)
        for member in members:
            if member not in names:
                raise ConfigError(f"{where}: {member!r} (in {group!r}) is not one of the classes {names}")
            if member in owner:
                raise ConfigError(f"{where}: {member!r} is in two groups ({owner[member]!r} and {group!r})")
            owner[member] = group
        indices.append(tuple(names.index(member) + 1 for member in members))
    left_out = [name for name in names if name not in owner]
    if left_out:
        raise ConfigError(f"{where} leave out the class(es) {left_out}: every class must be in one group")
    return indices


def _groups(spec: Any) -> list[tuple[str, list[str]]]:
    """``[(output name, [dataset class names])]`` of any of the three forms."""
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, Sequence) and not isinstance(spec, (bytes, bytearray)):
        items = [(name, name) for name in spec]
    else:
        raise ConfigError(f"class selection must be a class name, a list of names or a mapping of groups, got {spec!r}")
    if not items:
        raise ConfigError("class selection is empty; name at least one class")
    groups = []
    for output_name, members in items:
        group = [members] if isinstance(members, str) else members
        if not _is_name(output_name) or not isinstance(group, Sequence) or not group:
            raise ConfigError(f"class selection: {output_name!r}: {group!r} is not a class name or a list of names")
        for member in group:
            if not _is_name(member):
                raise ConfigError(f"class selection: {member!r} (in {output_name!r}) is not a class name")
        if len(set(group)) != len(group):
            raise ConfigError(f"class selection: the group {output_name!r} lists a class twice: {list(group)}")
        groups.append((output_name.strip(), [m.strip() for m in group]))
    return groups


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _suggest(name: str, by_name: Mapping[str, int]) -> str:
    close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    known = [n for n, v in by_name.items() if v != 0]
    shown = ", ".join(known[:_SHOW]) + (", ..." if len(known) > _SHOW else "")
    return f"its classes are: {shown}"
