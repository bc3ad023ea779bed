"""The file-based dataset contract: ``dataset.json``, its cases, and the data lists built from it.

A ``dataset.json`` lists every case once, with paths relative to the file's own folder::

    {
      "name": "nih-pancreas",
      "labels": {"0": "background", "1": "pancreas"},
      "cases": [
        {"id": "PANCREAS_0001", "image": "images/PANCREAS_0001", "label": "labels/label0001.nii.gz"},
        {"id": "MSD_001", "image": "msd/pancreas_001.nii.gz"}
      ]
    }

``image`` is a NIfTI file or a DICOM series folder; ``label`` is optional (unlabeled cases).
A case may carry ``series_uid`` to pick one series from a DICOM folder holding several. Any
other keys, top-level or per case, are kept and written back unchanged.

Which cases are labeled, reference (unlabeled during training) or test is not part of the
dataset: that is ``splits.json`` (:mod:`atso_med.data.splits`). The data lists built here are
where the two meet; which label a training case gets is decided by
:func:`atso_med.atso.generations.training_items`.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atso_med.data.paths import resolve_input_path
from atso_med.errors import DatasetError
from atso_med.files import read_json, write_text_atomic

if TYPE_CHECKING:  # imported for annotations only, so that this module loads without readers
    from atso_med.data.volume import Volume

#: File name looked up when :meth:`Dataset.load` is given a folder.
DATASET_FILE = "dataset.json"

# Case ids become file names (predictions, pseudo labels, logs): keep them portable.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CASE_KEYS = ("id", "image", "label")
_TOP_KEYS = ("name", "labels", "cases")


@dataclass(frozen=True)
class Case:
    """One case of a dataset: an image and, when annotated, its label.

    Attributes:
        id: unique case id, safe as a file name.
        image: resolved path of the NIfTI file or DICOM series folder.
        label: resolved path of the label NIfTI, or ``None`` for an unlabeled case.
        extra: every other key of the case entry (e.g. ``series_uid``), kept as given.
    """

    id: str
    image: Path
    label: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def series_uid(self) -> str | None:
        """The DICOM SeriesInstanceUID to read from a multi-series folder, if the case names one."""
        uid = self.extra.get("series_uid")
        return str(uid) if uid else None


def dataset_file(path: str | os.PathLike) -> Path | None:
    """The ``dataset.json`` that ``path`` stands for, or ``None`` when it is something else.

    A folder stands for the dataset.json inside it; a JSON file is a dataset when it holds
    ``cases`` (a MONAI data list holds ``training`` / ``testing`` lists instead).

    Args:
        path: a folder or file given where a dataset or a data list may be.

    Returns:
        The dataset.json path, or ``None`` (a data list, an image, a folder without one).

    Raises:
        ConfigError: ``path`` is a JSON file that cannot be read.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return path / DATASET_FILE if (path / DATASET_FILE).is_file() else None
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    content = read_json(path, "JSON file")
    return path if isinstance(content, Mapping) and "cases" in content else None


@dataclass
class Dataset:
    """A parsed ``dataset.json``.

    Attributes:
        name: dataset name.
        labels: class value -> class name; always holds 0 (background).
        cases: the cases, in file order.
        root: folder the relative paths were resolved against (the dataset.json's folder).
        extra: other top-level keys, kept for :meth:`write`.
        path: the dataset.json read, if any.
    """

    name: str
    labels: dict[int, str]
    cases: list[Case]
    root: Path
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def ids(self) -> list[str]:
        """Case ids in file order."""
        return [case.id for case in self.cases]

    def case(self, case_id: str) -> Case:
        """Return the case with id ``case_id``.

        Raises:
            DatasetError: no case has that id.
        """
        for case in self.cases:
            if case.id == case_id:
                return case
        raise DatasetError(f"{self._where()}: no case with id {case_id!r}")

    @property
    def labeled_ids(self) -> list[str]:
        """Ids of the cases that have a label, in file order."""
        return [case.id for case in self.cases if case.label is not None]

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dataset:
        """Read and validate a ``dataset.json`` (or the folder that holds one).

        Only the structure is validated here; whether the files exist and can be read is the
        job of :func:`atso_med.data.verify.verify_dataset`, which reports every case at once.

        Args:
            path: the dataset.json file, or its folder.

        Returns:
            The dataset, with case paths resolved against the file's folder.

        Raises:
            DatasetError: the file is missing or not JSON, or its structure is invalid; the
                message lists every problem found, each naming the key or case concerned.
        """
        file = Path(path).expanduser()
        if file.is_dir():
            file = file / DATASET_FILE
        if not file.is_file():
            raise DatasetError(f"dataset file not found: {file}")
        try:
            data = read_json(file, "dataset file", DatasetError, object_pairs_hook=_reject_duplicate_keys)
        except _DuplicateKeyError as error:
            raise DatasetError(f"{file}: {error}") from error
        root = file.parent.resolve()
        dataset = cls.from_dict(data, root=root, source=str(file))
        dataset.path = file.resolve()
        return dataset

    @classmethod
    def from_dict(cls, data: Any, root: str | os.PathLike, source: str = "dataset") -> Dataset:
        """Build a dataset from the parsed JSON content.

        Args:
            data: the JSON object.
            root: folder that relative paths are resolved against.
            source: name used in error messages.

        Returns:
            The validated dataset.

        Raises:
            DatasetError: the structure is invalid (every problem is listed).
        """
        if not isinstance(data, dict):
            raise DatasetError(f"{source}: top level must be a JSON object, got {type(data).__name__}")
        problems: list[str] = []
        missing = [key for key in _TOP_KEYS if key not in data]
        if missing:
            problems.append(f"missing key(s): {', '.join(repr(k) for k in missing)}")

        name = data.get("name", "")
        if "name" in data and (not isinstance(name, str) or not name.strip()):
            problems.append("'name' must be a non-empty string")

        labels = parse_labels(data.get("labels"), problems) if "labels" in data else {}

        root = Path(root)
        cases: list[Case] = []
        raw_cases = data.get("cases", [])
        if not isinstance(raw_cases, list):
            problems.append(f"'cases' must be a list, got {type(raw_cases).__name__}")
            raw_cases = []
        elif "cases" in data and not raw_cases:
            problems.append("'cases' is empty")
        for index, entry in enumerate(raw_cases):
            case = _parse_case(entry, index, root, problems)
            if case is not None:
                cases.append(case)

        counts = Counter(case.id for case in cases)
        duplicates = sorted(case_id for case_id, n in counts.items() if n > 1)
        if duplicates:
            problems.append("duplicate case id(s): " + ", ".join(f"{d!r} ({counts[d]} times)" for d in duplicates))
        if problems:
            raise DatasetError(f"{source}: invalid dataset: " + "; ".join(problems))
        extra = {key: value for key, value in data.items() if key not in _TOP_KEYS}
        return cls(name=name, labels=labels, cases=cases, root=root, extra=extra)

    def to_dict(self, root: str | os.PathLike | None = None) -> dict[str, Any]:
        """Return the JSON form, paths made relative to ``root`` where they lie below it.

        Args:
            root: folder the paths are written relative to; defaults to :attr:`root`.

        Returns:
            A JSON-serialisable dict in the ``dataset.json`` layout.
        """
        base = Path(root).resolve() if root is not None else self.root
        out: dict[str, Any] = {"name": self.name, "labels": {str(k): v for k, v in sorted(self.labels.items())}}
        cases = []
        for case in self.cases:
            entry: dict[str, Any] = {"id": case.id, "image": _relative(case.image, base)}
            if case.label is not None:
                entry["label"] = _relative(case.label, base)
            entry.update({k: v for k, v in case.extra.items() if k not in _CASE_KEYS})
            cases.append(entry)
        out["cases"] = cases
        out.update({k: v for k, v in self.extra.items() if k not in _TOP_KEYS})
        return out

    def write(self, path: str | os.PathLike) -> Path:
        """Write this dataset as a ``dataset.json`` atomically.

        Paths below the new file's folder are written relative to it, others absolute, so the
        written file describes the same files wherever it is placed.

        Args:
            path: output file, or a folder (then ``dataset.json`` in it).

        Returns:
            The file written.
        """
        file = Path(path).expanduser()
        if file.is_dir():
            file = file / DATASET_FILE
        text = json.dumps(self.to_dict(root=file.parent.resolve()), indent=2) + "\n"
        return write_text_atomic(text, file)

    def _where(self) -> str:
        return str(self.path) if self.path is not None else f"dataset {self.name!r}"


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads silently keeps the last of two equal keys; a hand-edited file with two
    # "1" labels or two "label" entries in a case must not pass unnoticed.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKeyError(f"duplicate key {key!r} in one JSON object")
        seen[key] = value
    return seen


def parse_labels(raw: Any, problems: list[str]) -> dict[int, str]:
    """``dataset.json``'s (or a data list's) ``labels``: class value -> name, 0 (background) included.

    Args:
        raw: the JSON value.
        problems: what is wrong is appended here (nothing when the mapping is fine).

    Returns:
        The well-formed entries, sorted by value.
    """
    if not isinstance(raw, dict):
        problems.append(f"'labels' must be an object mapping class values to names, got {type(raw).__name__}")
        return {}
    labels: dict[int, str] = {}
    for key, name in raw.items():
        text = str(key).strip()
        if not re.fullmatch(r"\d+", text):
            problems.append(f"labels key {key!r} is not a non-negative integer")
            continue
        value = int(text)
        if value in labels:
            problems.append(f"labels key {key!r} repeats class {value}")
            continue
        if not isinstance(name, str) or not name.strip():
            problems.append(f"labels[{key!r}] must be a non-empty class name")
            continue
        labels[value] = name
    if not raw:
        problems.append("'labels' is empty; it must include 0 (background)")
    elif 0 not in labels and not any(str(k).strip() == "0" for k in raw):
        problems.append("'labels' must include 0 (background)")
    return dict(sorted(labels.items()))


def _parse_case(entry: Any, index: int, root: Path, problems: list[str]) -> Case | None:
    if not isinstance(entry, dict):
        problems.append(f"cases[{index}] must be an object, got {type(entry).__name__}")
        return None
    case_id = entry.get("id")
    where = f"cases[{index}]" if not isinstance(case_id, str) else f"cases[{index}] (id {case_id!r})"
    ok = True
    if "id" not in entry:
        problems.append(f"{where}: missing key 'id'")
        ok = False
    elif not isinstance(case_id, str) or not case_id:
        problems.append(f"{where}: 'id' must be a non-empty string, got {case_id!r}")
        ok = False
    elif not _SAFE_ID.match(case_id) or case_id in (".", ".."):
        problems.append(
            f"{where}: id is not safe as a file name (use letters, digits, '.', '_', '-', starting with a letter or digit)"
        )
        ok = False
    image = entry.get("image")
    if "image" not in entry:
        problems.append(f"{where}: missing key 'image'")
        ok = False
    elif not isinstance(image, str) or not image.strip():
        problems.append(f"{where}: 'image' must be a non-empty path string, got {image!r}")
        ok = False
    label = entry.get("label")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        problems.append(f"{where}: 'label' must be a path string or null, got {label!r}")
        ok = False
    series_uid = entry.get("series_uid")
    if series_uid is not None and not isinstance(series_uid, str):
        problems.append(f"{where}: 'series_uid' must be a string, got {series_uid!r}")
        ok = False
    if not ok:
        return None
    extra = {k: v for k, v in entry.items() if k not in _CASE_KEYS}
    return Case(
        id=case_id,
        image=resolve_input_path(image, root),
        label=resolve_input_path(label, root) if label is not None else None,
        extra=extra,
    )


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return str(path)


def load_case(case: Case, with_label: bool = True) -> tuple[Volume, np.ndarray | None]:
    """Read a case's image and, if asked and present, its label on the image's voxel grid.

    Args:
        case: the case to read.
        with_label: also read the label (ignored for unlabeled cases).

    Returns:
        ``(image, label)``: the image volume (float32 HU) and the label voxel array placed on
        the image grid, or ``None`` when the case has no label or ``with_label`` is false.

    Raises:
        ImageReadError: the image or label cannot be read (DicomSeriesError for DICOM folders
            without exactly one usable series).
        GridMismatchError: the label does not lie on the image's grid in world space.
    """
    from atso_med.data.readers import load_image, load_label

    image = load_image(case.image, series_uid=case.series_uid)
    if not with_label or case.label is None:
        return image, None
    return image, load_label(case.label, image)


def evaluation_datalist(dataset: Dataset, ids: Iterable[str]) -> list[dict[str, str]]:
    """Build items with ground-truth labels for evaluation and reports.

    Args:
        dataset: the dataset.
        ids: case ids to evaluate (e.g. ``splits.test`` or one reference fold).

    Returns:
        Items ``{"id", "image", "label"}`` in the order of ``ids``.

    Raises:
        DatasetError: an id is unknown or its case has no label (every such id is named).
    """
    ids = list(ids)
    known = set(dataset.ids)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise DatasetError(f"ids not in dataset.json: {', '.join(map(repr, unknown))}")
    unlabeled = [i for i in ids if dataset.case(i).label is None]
    if unlabeled:
        raise DatasetError(f"cannot evaluate cases without a label: {', '.join(map(repr, unlabeled))}")
    return [{"id": i, "image": str(dataset.case(i).image), "label": str(dataset.case(i).label)} for i in ids]
