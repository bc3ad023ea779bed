"""MONAI data-list files: the ``{"training": [...], "validation": [...]}`` JSON a training run reads, written and read."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atso_med.data.class_selection import ClassSelection, select_classes
from atso_med.data.dataset import parse_labels
from atso_med.data.labels import ORGAN_MASK_CLASSES
from atso_med.data.paths import resolve_input_path
from atso_med.errors import ConfigError
from atso_med.files import read_json, write_text_atomic

__all__ = [
    "PATH_FIELDS",
    "UNCERTAIN_KEY",
    "datalist_class_selection",
    "datalist_classes",
    "datalist_items",
    "datalist_labels",
    "read_datalist",
    "write_datalist",
]

#: Data-list key of a pseudo label's mask of the voxels its teachers are unsure of (``pseudo_label_confidence``).
UNCERTAIN_KEY = "uncertain"
#: The fields of a data-list item that hold file paths.
PATH_FIELDS = ("image", "label", UNCERTAIN_KEY)


def write_datalist(
    path: str | os.PathLike,
    training: Sequence[Mapping],
    validation: Sequence[Mapping] = (),
    labels: Mapping[int, str] | None = None,
) -> Path:
    """Write a data list with absolute paths, atomically.

    Args:
        path: output JSON file.
        training: items with ``id``, ``image`` and ``label`` (and optionally ``source``).
        validation: labeled items for model selection.
        labels: the data set's classes (value -> name), written as the list's ``labels`` so that
            training refuses a label value the data set does not declare, as ``verify`` does.

    Returns:
        The path written.
    """

    def absolute(item: Mapping) -> dict:
        entry = dict(item)
        for field in PATH_FIELDS:
            if entry.get(field):
                entry[field] = str(Path(entry[field]).resolve())
        return entry

    content: dict = {"labels": {str(k): v for k, v in sorted(labels.items())}} if labels else {}
    content["training"] = [absolute(item) for item in training]
    content["validation"] = [absolute(item) for item in validation]
    return write_text_atomic(json.dumps(content, indent=2) + "\n", path)


def read_datalist(
    path: str | os.PathLike, key: str = "training", required: bool = True, base_dir: str | os.PathLike | None = None
) -> list[dict]:
    """Read one list of a MONAI data-list JSON (``{"training": [...], "validation": [...]}``).

    Relative ``image`` / ``label`` paths are resolved against ``base_dir`` (the bundle's
    ``dataset_dir``), by default the JSON file's folder, so a data list works from any working
    directory.

    Args:
        path: the data-list file.
        key: which list to read.
        required: raise when the list is missing or empty; otherwise return ``[]``.
        base_dir: the folder relative paths start from (``None`` or empty: the file's folder).

    Raises:
        ConfigError: when the file is missing, not JSON, or (``required``) the list is absent or empty.
    """
    if not path:
        raise ConfigError("no data list given: set 'datalist' to a JSON file with a 'training' list")
    path = Path(path)
    return _cases(read_json(path, "data list"), path, key, required, Path(base_dir) if base_dir else path.parent)


def datalist_labels(path: str | os.PathLike) -> dict[int, str] | None:
    """The classes a data list declares in its ``labels`` (as ``dataset.json``'s), or ``None`` when it has none.

    Raises:
        ConfigError: a missing file, not JSON, or a malformed ``labels`` (the message names the file).
    """
    content = read_json(Path(path), "data list")
    if not isinstance(content, Mapping) or "labels" not in content:
        return None
    problems: list[str] = []
    labels = parse_labels(content["labels"], problems)
    if problems:
        raise ConfigError(f"data list {path}: {problems[0]}")
    return labels


def datalist_classes(
    path: str | os.PathLike, foreground: Sequence[int] | None = None, num_classes: int = 1
) -> dict[int, str] | None:
    """The label values a data list declares: its ``labels`` (as ``dataset.json``'s), or the default.

    A data list without ``labels`` declares background (0) and the organ: 1, or the ``foreground``
    values when they are given; for a training of ``num_classes > 1`` classes, the class indices
    ``0..num_classes``. A label holding any other value is refused when it is read.

    Args:
        path: the data-list file.
        foreground: the run's foreground values (``None``: the organ is 1).
        num_classes: the classes of the training.

    Returns:
        Class value -> name; ``None`` (any value) when no data list is given.

    Raises:
        ConfigError: a missing file, not JSON, or a malformed ``labels`` (the message names the file).
    """
    if not path:
        return None  # nothing to read yet (a config parsed without a data list); the training refuses it
    labels = datalist_labels(path)
    if labels is not None:
        return labels
    if int(num_classes) > 1:
        return {0: "background", **{c: f"class {c}" for c in range(1, int(num_classes) + 1)}}
    if foreground is None:
        return dict(ORGAN_MASK_CLASSES)
    return {0: "background", **{int(v): "organ" for v in foreground}}


def datalist_class_selection(path: str | os.PathLike, classes: Any) -> ClassSelection | None:
    """The classes a run segments, chosen by name among the data list's ``labels``.

    Args:
        path: the data-list file (it must carry ``labels``, as ``dataset.json`` does).
        classes: a class selection (:func:`~atso_med.data.class_selection.select_classes`), or
            ``None`` for none (the organ is then given by ``foreground`` values).

    Returns:
        The selection, or ``None``.

    Raises:
        ConfigError: the data list has no ``labels``, or the selection does not fit them.
    """
    if classes is None:
        return None
    labels = datalist_labels(path) if path else None
    if labels is None:
        raise ConfigError(f"data list {path or '(none)'} has no 'labels': classes can only be chosen by name from them")
    return select_classes(classes, labels, source=f"data list {path}")


def _cases(content: object, path: Path, key: str, required: bool = True, base_dir: Path | None = None) -> list[dict]:
    """Copies of the cases of the data list ``content``'s ``key`` list (read from ``path``), their
    :data:`PATH_FIELDS` resolved against ``base_dir`` (default: the folder of ``path``)."""
    items = content.get(key, []) if isinstance(content, Mapping) else []
    if required and not items:
        raise ConfigError(f"data list {path} has no {key!r} cases")
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise ConfigError(f"data list {path}: {key!r} must be a list of cases (JSON objects), got {items!r:.80}")
    resolved = []
    for item in items:
        entry = dict(item)
        for field in PATH_FIELDS:
            if entry.get(field):
                entry[field] = str(resolve_input_path(entry[field], base_dir or path.parent))
        resolved.append(entry)
    return resolved


def datalist_items(path: str | os.PathLike, key: str | None = None) -> list[dict]:
    """Items of one list of a MONAI data-list JSON, paths resolved against the file's folder.

    Args:
        path: the data-list file.
        key: the list to read; by default ``testing``, or the file's only list of cases.

    Raises:
        ConfigError: unreadable file, no such list, or several lists and no ``key``.
    """
    path = Path(path)
    content = read_json(path, "data list")
    if not isinstance(content, Mapping):
        raise ConfigError(f"{path}: a data list must be a JSON object with lists of cases")
    if key:
        return _cases(content, path, key)
    lists = [k for k, v in content.items() if isinstance(v, list) and v and all(isinstance(e, Mapping) for e in v)]
    if "testing" in lists:
        return _cases(content, path, "testing")
    if len(lists) == 1:
        return _cases(content, path, lists[0])
    if not lists:
        raise ConfigError(f"{path} holds no list of cases")
    raise ConfigError(f"{path} holds several lists ({', '.join(lists)}); choose one (datalist_key / --key)")
