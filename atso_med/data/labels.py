"""Label maps: the value checks every reader of a label applies, and the organ mask.

``verify`` reports these problems case by case; training, evaluation and the importers refuse a
label with them, so that no command accepts a label ``verify`` refuses. A label must hold finite,
integer class values; with the dataset's declared classes, only those. A prediction is checked the
same way: a probability map saved where a mask belongs is refused, not read as "organ wherever
non-zero".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from atso_med.errors import ConfigError, LabelValueError

if TYPE_CHECKING:
    from atso_med.data.volume import Volume

__all__ = [
    "ORGAN_MASK_CLASSES",
    "binarize_label",
    "check_class_indices",
    "check_label_values",
    "class_names",
    "label_value_counts",
    "label_value_errors",
    "load_label_mask",
    "load_label_values",
    "load_prediction_mask",
]

#: The values of an organ mask (predictions and pseudo labels this package writes), whatever a data set declares.
ORGAN_MASK_CLASSES = {0: "background", 1: "organ"}

#: The most foreground classes a uint8 label map holds.
MAX_CLASSES = 255

# How many distinct offending values a message lists before it says "...".
_SHOW = 5


def label_value_counts(label: np.ndarray) -> dict[int, int]:
    """Voxel count per distinct value of an integer-valued array."""
    flat = np.asarray(label).ravel()
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    if flat.size == 0:
        return {}
    low, high = int(flat.min()), int(flat.max())
    if high - low < 1 << 16:
        # bincount is several times faster than unique on large CT-sized label maps.
        counts = np.bincount((flat - low).astype(np.int64, copy=False), minlength=high - low + 1)
        return {low + int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    values, counts = np.unique(flat, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts, strict=True)}


def label_value_errors(
    label: np.ndarray, classes: Mapping[int, str] | None = None, what: str = "label"
) -> tuple[list[str], dict[int, int] | None]:
    """What is wrong with the values of a label map.

    Args:
        label: the stored label values (any dtype; floats are checked for integer values).
        classes: the declared class values (``dataset.json``'s ``labels``); ``None`` accepts any
            integer value.
        what: the name messages give the array (``label``, ``prediction``).

    Returns:
        ``(errors, counts)``: the problems (empty when the label is fine) and the voxel count per
        value (``None`` when the values are not integers).
    """
    label = np.asarray(label)
    if label.dtype.kind == "f":
        finite = np.isfinite(label)
        if not finite.all():
            return [f"{what} has {int(label.size - finite.sum())} NaN/inf voxels"], None
        fractional = label != np.round(label)
        if fractional.any():
            examples = np.unique(label[fractional])
            shown = ", ".join(f"{v:g}" for v in examples[:_SHOW]) + (", ..." if examples.size > _SHOW else "")
            return [
                f"{what} has non-integer values: {shown} ({int(fractional.sum())} voxels); {what}s must be integer class values"
            ], None
    elif label.dtype.kind not in "iub":
        return [f"{what} has data type {label.dtype}, expected integers"], None
    counts = label_value_counts(label)
    if classes is None:
        return [], counts
    undeclared = sorted(v for v in counts if v not in classes)
    if not undeclared:
        return [], counts
    shown = ", ".join(f"{v} ({counts[v]} voxels)" for v in undeclared[:_SHOW])
    shown += ", ..." if len(undeclared) > _SHOW else ""
    declared = ", ".join(str(v) for v in sorted(classes))
    return [f"{what} values not among the declared classes {{{declared}}}: {shown}"], counts


def check_label_values(
    label: np.ndarray, source: str | os.PathLike, classes: Mapping[int, str] | None = None
) -> dict[int, int]:
    """Refuse a label map that :func:`label_value_errors` finds fault with.

    Args:
        label: the stored label values.
        source: the file, for the message.
        classes: the declared class values, or ``None`` for any integer value.

    Returns:
        The voxel count per value.

    Raises:
        LabelValueError: NaN / inf, non-integer values, a non-numeric dtype or an undeclared class;
            the message names ``source``.
    """
    errors, counts = label_value_errors(label, classes)
    if errors:
        raise LabelValueError(f"{source}: {errors[0]}")
    return counts


def class_names(classes: Mapping[int | str, str]) -> list[str]:
    """The names of the foreground classes of a label map, in value order.

    A label map of several organs holds 0 (background) and the values 1..C of its C classes:
    ``{0: "background", 1: "liver", 2: "spleen"}`` gives ``["liver", "spleen"]``.

    Args:
        classes: class value -> name; 0 may be omitted; values may be strings (as in
            ``dataset.json``).

    Returns:
        The C names of the values 1..C.

    Raises:
        ConfigError: values that are not 1..C (0 aside), none or more than :data:`MAX_CLASSES`,
            or a name that is empty or repeated.
    """
    try:
        named = {int(value): str(name).strip() for value, name in classes.items()}
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(f"classes must map the label values 0..C to names, got {classes!r}") from None
    named.pop(0, None)
    values = sorted(named)
    if not values or values != list(range(1, len(values) + 1)) or len(values) > MAX_CLASSES:
        raise ConfigError(f"classes must name the label values 1..C (C <= {MAX_CLASSES}), got the values {values}")
    names = [named[value] for value in values]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if "" in names or repeated:
        raise ConfigError(f"class names must be non-empty and distinct, got {names}")
    return names


def check_class_indices(label: np.ndarray, num_classes: int, source: str) -> None:
    """Refuse a class map of a training of ``num_classes`` classes that holds a value outside ``0..num_classes``.

    Args:
        label: class indices (0 background, ``c`` class ``c``).
        num_classes: the training's classes.
        source: the case or file, for the message.

    Raises:
        LabelValueError: naming ``source`` and the values outside the classes (and their voxel
            counts), or non-integer values.
    """
    label = np.asarray(label)
    if label.dtype.kind in "iub" and (label.size == 0 or 0 <= label.min() <= label.max() <= num_classes):
        return  # the common case, without counting every value
    errors, _ = label_value_errors(label, dict.fromkeys(range(int(num_classes) + 1), ""))
    if errors:
        raise LabelValueError(
            f"{source}: {errors[0]}; a training of {num_classes} classes takes class indices 0..{num_classes}"
        )


def binarize_label(values: np.ndarray, foreground: Sequence[int] | None = None) -> np.ndarray:
    """Organ mask of a label map.

    Args:
        values: label values.
        foreground: values that count as organ; ``None`` means every non-zero value (MSD's
            pancreas 1 and tumour 2 both count).

    Returns:
        A bool array of the same shape.
    """
    values = np.asarray(values)
    if foreground is None:
        return values != 0
    return np.isin(values, np.asarray(list(foreground)))


def load_label_values(
    path: str | os.PathLike, reference: Volume, classes: Mapping[int, str] | None = None
) -> np.ndarray:
    """Read a label on its image's grid and check its values: the class map, as stored.

    Args:
        path: label NIfTI.
        reference: the image (or a stand-in with its grid) the label belongs to.
        classes: the declared class values, or ``None`` for any integer value.

    Returns:
        The label values indexed like ``reference.array``, in the stored dtype.

    Raises:
        ImageReadError / GridMismatchError: see :func:`atso_med.data.readers.load_label`.
        LabelValueError: see :func:`check_label_values`.
    """
    from atso_med.data.readers import load_label

    values = load_label(path, reference)
    check_label_values(values, path, classes)
    return values


def load_label_mask(
    path: str | os.PathLike,
    reference: Volume,
    foreground: Sequence[int] | None = None,
    classes: Mapping[int, str] | None = None,
) -> np.ndarray:
    """Read a label on its image's grid, check its values and return the organ mask.

    Args:
        path: label NIfTI.
        reference: the image (or a stand-in with its grid) the label belongs to.
        foreground: label values that count as organ (``None``: every non-zero value).
        classes: the declared class values, or ``None`` for any integer value.

    Returns:
        A bool array indexed like ``reference.array``.

    Raises:
        ImageReadError / GridMismatchError: see :func:`atso_med.data.readers.load_label`.
        LabelValueError: see :func:`check_label_values`.
    """
    return binarize_label(load_label_values(path, reference, classes), foreground)


def load_prediction_mask(
    path: str | os.PathLike,
    reference: Volume,
    threshold: float | None = None,
    classes: Mapping[int, str] | None = None,
) -> np.ndarray:
    """Read a predicted mask on a grid and return it as an organ mask.

    A prediction must be a label map (integer values; non-zero is organ). A probability map saved
    as a prediction is refused rather than read as "organ wherever above 0"; with ``threshold``
    it is binarized explicitly (organ where the value exceeds it).

    Args:
        path: prediction NIfTI.
        reference: the grid (an image, or a stand-in with the prediction's own grid).
        threshold: binarize a probability map at this value; ``None`` requires a label map.
        classes: the values a label map may hold (the data set's classes); ``None``: any integer.

    Returns:
        A bool array indexed like ``reference.array``.

    Raises:
        ImageReadError / GridMismatchError: see :func:`atso_med.data.readers.load_label`.
        LabelValueError: NaN / inf values, non-integer values without ``threshold``, or a value
            outside ``classes``.
    """
    from atso_med.data.readers import load_label

    values = load_label(path, reference)
    if threshold is not None:
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise LabelValueError(
                f"{path}: prediction has {int(values.size - np.isfinite(values).sum())} NaN/inf voxels"
            )
        return values > threshold
    errors, _ = label_value_errors(values, classes, what="prediction")
    if errors:
        hint = (
            "; a probability map? binarize it with a threshold (evaluate --threshold)"
            if "non-integer" in errors[0]
            else ""
        )
        raise LabelValueError(f"{path}: {errors[0]}{hint}")
    return values != 0
