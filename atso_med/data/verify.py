"""Check every case of a dataset before any work starts, and report all problems at once.

A training run that dies on case 57 after two hours, or silently trains on a label that lies
flipped on its image, costs more than reading every file once up front. :func:`verify_dataset`
reads each image and label with the same readers training uses and collects, per case:

* image: file present, readable, 3D, non-empty, no NaN / inf voxels;
* label: file present, readable, on the image's grid in world space (a label stored in another
  orientation of the same grid is fine), integer-valued, values among the declared classes,
  voxel count per value. An all-background label is a *warning*, not an error: it is a valid
  annotation of a case without the organ, but more often a sign of a wrong file;
* splits (if given): ids known, one role per id, labeled / validation cases have labels;
* classes (if chosen by name, :mod:`atso_med.data.class_selection`): the names are declared
  (checked before any file is read), and each chosen class is found in the labels: a case whose
  label lacks one is a warning, a class that no label holds is an error.

Nothing is written and no input is modified.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from atso_med.data.class_selection import ClassSelection, select_classes
from atso_med.data.dataset import Case, Dataset
from atso_med.data.duplicates import (
    FingerprintCache,
    copy_groups,
    copy_role_problems,
    same_image_file,
    voxel_fingerprint,
)
from atso_med.data.labels import label_value_errors
from atso_med.data.splits import Splits
from atso_med.errors import AtsoMedError

if TYPE_CHECKING:
    from atso_med.data.volume import Volume


@dataclass
class CaseRow:
    """The verification result of one case.

    Attributes:
        id: case id.
        role: role in the splits (``labeled``, ``reference[k]``, ``test``, ``validation``,
            ``unused``), or empty without splits.
        shape: image shape, if it could be read.
        spacing: voxel size in mm, if the image could be read.
        orientation: axis codes, e.g. ``"LPS"``.
        label_counts: label value -> voxel count (empty without a readable label).
        has_label: whether dataset.json gives the case a label.
        errors: specific problems; any makes the case bad.
        warnings: remarks that do not make the case bad.
    """

    id: str
    role: str = ""
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    orientation: str = ""
    label_counts: dict[int, int] = field(default_factory=dict)
    has_label: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the case has no error."""
        return not self.errors

    @property
    def label_values(self) -> list[int]:
        """Distinct values present in the label."""
        return sorted(self.label_counts)

    @property
    def status(self) -> str:
        """``"ok"``, ``"ok (warning: ...)"`` or ``"error: <message>[; <message>]"``."""
        if self.errors:
            return "error: " + "; ".join(self.errors)
        if self.warnings:
            return "ok (warning: " + "; ".join(self.warnings) + ")"
        return "ok"

    def cells(self) -> dict[str, str]:
        """The row as table cells."""
        if not self.has_label:
            values = counts = "no label"
        elif self.label_counts:
            values = ",".join(str(v) for v in self.label_values)
            counts = " ".join(f"{v}:{n}" for v, n in sorted(self.label_counts.items()))
        else:
            values = counts = "-"
        return {
            "id": self.id,
            "role": self.role,
            "shape": "x".join(str(s) for s in self.shape) if self.shape else "-",
            "spacing (mm)": "x".join(f"{s:.2f}" for s in self.spacing) if self.spacing else "-",
            "orient": self.orientation or "-",
            "label values": values,
            "voxels per label": counts,
            "status": self.status,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the row."""
        return {
            "id": self.id,
            "role": self.role,
            "shape": list(self.shape) if self.shape else None,
            "spacing_mm": [round(s, 4) for s in self.spacing] if self.spacing else None,
            "orientation": self.orientation or None,
            "has_label": self.has_label,
            "label_values": self.label_values,
            "label_counts": {str(k): v for k, v in sorted(self.label_counts.items())},
            "status": self.status,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


@dataclass
class VerifyReport:
    """Everything :func:`verify_dataset` found.

    Attributes:
        dataset: dataset name.
        rows: one row per case, in dataset order.
        split_errors: problems of the splits as a whole.
        split_warnings: remarks on the splits.
    """

    dataset: str
    rows: list[CaseRow]
    split_errors: list[str] = field(default_factory=list)
    split_warnings: list[str] = field(default_factory=list)
    with_roles: bool = False
    selection: ClassSelection | None = None
    class_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no case and no split has an error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[str]:
        """Every error as ``"case_id: message"`` (``"splits: message"`` for the splits)."""
        out = [f"{row.id}: {message}" for row in self.rows for message in row.errors]
        out += [f"classes: {message}" for message in self.class_errors]
        return out + [f"splits: {message}" for message in self.split_errors]

    @property
    def warnings(self) -> list[str]:
        """Every warning as ``"case_id: message"``."""
        out = [f"{row.id}: {message}" for row in self.rows for message in row.warnings]
        return out + [f"splits: {message}" for message in self.split_warnings]

    def class_presence(self) -> dict[str, int]:
        """Chosen class name -> how many readable labels hold it (empty without a selection)."""
        if self.selection is None:
            return {}
        labels = [row.label_counts for row in self.rows if row.has_label and row.label_counts]
        return {
            name: sum(any(counts.get(v, 0) for v in values) for counts in labels)
            for name, values in zip(self.selection.names, self.selection.values, strict=True)
        }

    def format_table(self) -> str:
        """Return the rows as an aligned text table (status last, unpadded)."""
        cells = [row.cells() for row in self.rows]
        columns = [c for c in CaseRow(id="").cells() if c != "role" or self.with_roles]
        widths = {c: max([len(c)] + [len(r[c]) for r in cells]) for c in columns}

        def line(values: dict[str, str]) -> str:
            parts = [values[c].ljust(widths[c]) for c in columns[:-1]] + [values[columns[-1]]]
            return "  ".join(parts).rstrip()

        header = line({c: c for c in columns})
        rule = "  ".join("-" * widths[c] for c in columns[:-1]) + "  " + "-" * len(columns[-1])
        return "\n".join([header, rule] + [line(r) for r in cells])

    def to_dict(self) -> dict[str, Any]:
        """JSON form of the report."""
        return {
            "dataset": self.dataset,
            "ok": self.ok,
            "n_cases": len(self.rows),
            "n_bad": sum(not row.ok for row in self.rows),
            "errors": self.errors,
            "warnings": self.warnings,
            "classes": None
            if self.selection is None
            else {"selection": self.selection.to_spec(), "labels_holding": self.class_presence()},
            "cases": [row.to_dict() for row in self.rows],
        }


def verify_dataset(
    dataset: Dataset | str | os.PathLike,
    splits: Splits | str | os.PathLike | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    classes: Any = None,
) -> VerifyReport:
    """Read and check every case (and the splits) without stopping at the first problem.

    Args:
        dataset: the dataset, or the path of its dataset.json (or folder).
        splits: the splits, or the path of a splits.json, to check against the dataset.
        progress: called as ``progress(index, total, case_id)`` before each case.
        classes: the classes to segment, by name (:func:`~atso_med.data.class_selection.select_classes`);
            ``None``: no choice to check.

    Returns:
        The report; ``report.ok`` is false when any case or the splits have an error.

    Raises:
        DatasetError: ``dataset`` is a path whose dataset.json is malformed (e.g. duplicate
            ids); per-case file problems are reported in the rows instead.
        SplitError: ``splits`` is a path whose file is malformed JSON or has bad keys.
        ConfigError: ``classes`` names a class the dataset does not declare (before any file is read).
    """
    if not isinstance(dataset, Dataset):
        dataset = Dataset.load(dataset)
    selection = None if classes is None else select_classes(classes, dataset.labels, f"{dataset.name}'s labels")
    if splits is not None and not isinstance(splits, Splits):
        splits = Splits.load(splits)

    roles = splits.roles() if splits is not None else {}
    rows = []
    cache = FingerprintCache()
    fingerprints = {}
    total = len(dataset.cases)
    for index, case in enumerate(dataset.cases):
        if progress is not None:
            progress(index + 1, total, case.id)
        row = CaseRow(id=case.id, role=roles.get(case.id, "unused") if splits is not None else "")
        image = _check_case(case, dataset, row)
        _check_selected_classes(selection, row)
        if image is not None:
            fingerprints[case.id] = cache.get(case) or voxel_fingerprint(image.array)
            cache.put(case, fingerprints[case.id])
        rows.append(row)
    cache.save()

    report = VerifyReport(dataset=dataset.name, rows=rows, with_roles=splits is not None, selection=selection)
    report.class_errors = [
        f"no label holds the chosen class {name!r}" for name, n in report.class_presence().items() if n == 0
    ]
    groups = copy_groups(dataset, fingerprints)
    _warn_copies(dataset, groups, report)
    if splits is not None:
        report.split_errors.extend(splits.problems(dataset))
        report.split_errors.extend(copy_role_problems(dataset, splits, groups))
        known = set(dataset.ids)
        unlabeled_test = [i for i in splits.test if i in known and dataset.case(i).label is None]
        if unlabeled_test:
            report.split_warnings.append(
                f"test ids without a label cannot be evaluated: {', '.join(map(repr, unlabeled_test))}"
            )
    return report


def _check_case(case: Case, dataset: Dataset, row: CaseRow) -> Volume | None:
    """Fill ``row`` with what the case's image and label look like and what is wrong with them.

    Returns:
        The image, when it could be read.
    """
    from atso_med.data.readers import load_image, load_label

    row.has_label = case.label is not None
    image = None
    if not case.image.exists():
        row.errors.append(f"image not found: {case.image}")
    else:
        try:
            image = load_image(case.image, series_uid=case.series_uid)
        except Exception as error:  # noqa: BLE001 - one unreadable file must not stop the other cases
            row.errors.append(f"image unreadable: {_describe(error)}")
    if image is not None:
        _check_image(image, row)

    if case.label is None:
        return image
    if not case.label.exists():
        row.errors.append(f"label not found: {case.label}")
        return image
    if image is None:
        row.warnings.append("label not checked: the image could not be read")
        return image
    try:
        label = load_label(case.label, image)
    except Exception as error:  # noqa: BLE001 - same reason as for the image
        row.errors.append(f"label unusable: {_describe(error)}")
        return image
    if tuple(label.shape) != tuple(image.shape):  # readers promise this; checked so a bug cannot hide
        row.errors.append(f"label shape {tuple(label.shape)} differs from image shape {image.shape}")
        return image
    _check_label(np.asarray(label), dataset.labels, row)
    return image


def _check_image(image: Volume, row: CaseRow) -> None:
    array = np.asarray(image.array)
    row.shape = tuple(int(s) for s in array.shape)
    if array.ndim != 3:
        row.errors.append(f"image is {array.ndim}D (shape {row.shape}), expected 3D")
        return
    if array.size == 0:
        row.errors.append(f"image is empty (shape {row.shape})")
        return
    row.spacing = image.spacing
    row.orientation = image.orientation
    if image.meta.get("header_warning"):
        row.warnings.append(image.meta["header_warning"])
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(array.size - finite.sum() - n_nan)
        row.errors.append(f"image has non-finite voxels: {n_nan} NaN, {n_inf} inf")
        return
    low, high = float(array.min()), float(array.max())
    if low == high:
        row.warnings.append(f"image is constant ({low:g})")
    elif low >= -1.0 and high <= 1.0:
        row.warnings.append(f"intensities lie in [{low:g}, {high:g}]: normalised, not HU?")


def _check_label(label: np.ndarray, classes: dict[int, str], row: CaseRow) -> None:
    errors, counts = label_value_errors(label, classes)
    row.errors += errors
    row.label_counts = counts or {}
    if not errors and all(v == 0 for v in row.label_counts):
        row.warnings.append("label is empty (background only); accepted as a case without the organ")


def _check_selected_classes(selection: ClassSelection | None, row: CaseRow) -> None:
    if selection is None or not row.ok or not row.has_label or not row.label_counts:
        return
    missing = [
        name
        for name, values in zip(selection.names, selection.values, strict=True)
        if not any(row.label_counts.get(v, 0) for v in values)
    ]
    if missing:
        row.warnings.append(f"label holds no {', '.join(missing)}")


def _warn_copies(dataset: Dataset, groups: list[list[str]], report: VerifyReport) -> None:
    # Copies are allowed in a data set (NIH ships cases 25 and 70 as copies of case 2); only splits that
    # put them in two roles are an error (copy_role_problems). Two series of one DICOM folder differ.
    rows = {row.id: row for row in report.rows}
    for ids in groups:
        for case_id in ids:
            case = dataset.case(case_id)
            same_file = [i for i in ids if i != case_id and same_image_file(dataset.case(i), case)]
            same_voxels = [i for i in ids if i != case_id and i not in same_file]
            if same_file:
                rows[case_id].warnings.append(f"same image file as {', '.join(same_file)}")
            if same_voxels:
                rows[case_id].warnings.append(f"same voxels as {', '.join(same_voxels)} (a copy under another id)")


def _describe(error: Exception) -> str:
    # Our own errors carry a full message; anything else (a reader bug, a zlib error) gets its type.
    # Multi-line messages (a list of DICOM series) are joined so that each case stays one table row.
    text = re.sub(r"\s+", " ", str(error)).strip()
    if isinstance(error, AtsoMedError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
