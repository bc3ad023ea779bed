"""The inputs of an evaluation: a prediction and its label, read and checked on the prediction's grid.

A binary evaluation reads both as organ masks (:func:`read_pair`); an evaluation of several
organs reads them as label maps of the same C classes (:func:`read_label_maps`). Nothing is
resampled: see :mod:`atso_med.metrics.evaluation` for how the grids must match.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from atso_med.data.class_selection import ClassSelection
from atso_med.data.volume import Volume
from atso_med.errors import ImageReadError, LabelValueError

__all__ = ["read_label_maps", "read_pair", "read_predictions"]


def read_pair(
    prediction_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    foreground: Sequence[int] | None = None,
    classes: Mapping[int, str] | None = None,
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Read a prediction and its label as organ masks on the prediction's voxel grid.

    Both are checked as ``verify`` checks a label (:mod:`atso_med.data.labels`): finite integer
    values among the declared classes (a prediction may also be an organ mask of 0 and 1).

    Args:
        prediction_path: predicted mask NIfTI (non-zero = organ).
        truth_path: label NIfTI.
        foreground: label values that count as organ (``None``: every non-zero value).
        classes: the label's declared class values (``None``: any integer value).
        threshold: binarize a probability-map prediction at this value (``None``: the prediction
            must be a label map).

    Returns:
        ``(prediction, truth, voxel_ml)``: two bool arrays of one shape and the volume of one voxel
        in millilitres.

    Raises:
        ImageReadError: a file is missing, unreadable or not 3D.
        GridMismatchError: the label does not lie on the prediction's grid (see
            :mod:`atso_med.metrics.evaluation`).
        LabelValueError: a label or prediction whose values ``verify`` would refuse.
    """
    (prediction,), truth, voxel_ml = read_predictions([prediction_path], truth_path, foreground, classes, threshold)
    return prediction, truth, voxel_ml


def read_predictions(
    prediction_paths: Sequence[str | os.PathLike],
    truth_path: str | os.PathLike,
    foreground: Sequence[int] | None = None,
    classes: Mapping[int, str] | None = None,
    threshold: float | None = None,
    selection: ClassSelection | None = None,
) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Several predictions of one case and its label, the label read once, all on the first prediction's grid.

    Every file is checked as :func:`read_pair` (one organ) or :func:`read_label_maps` (``selection``)
    checks it; a prediction off the first one's grid is refused as a label off it is.

    Args:
        prediction_paths: predicted masks (or label maps of the ``selection``'s classes) of the case.
        truth_path: label NIfTI.
        foreground: label values that count as organ (one organ; ``None``: every non-zero value).
        classes: the label's declared class values (``None``: any integer value).
        threshold: binarize probability-map predictions at this value (one organ).
        selection: several classes: predictions and label are read as label maps of its classes.

    Returns:
        ``(predictions, truth, voxel_ml)``, as :func:`read_pair` or :func:`read_label_maps` give them.

    Raises:
        ImageReadError / GridMismatchError / LabelValueError: as :func:`read_pair`.
    """
    from atso_med.data.labels import (
        ORGAN_MASK_CLASSES,
        check_label_values,
        label_value_errors,
        load_label_mask,
        load_prediction_mask,
    )
    from atso_med.data.readers import load_label

    paths, truth_path = [Path(p) for p in prediction_paths], Path(truth_path)
    reference, voxel_ml = _prediction_grid(paths[0])
    if selection is None:
        # a prediction is an organ mask (0/1) or a label map in the data set's classes
        prediction_classes = None if classes is None else {**ORGAN_MASK_CLASSES, **classes}
        predictions = [load_prediction_mask(p, reference, threshold, prediction_classes) for p in paths]
        return predictions, load_label_mask(truth_path, reference, foreground, classes), voxel_ml
    predictions = []
    for path in paths:
        values = load_label(path, reference)
        errors, _ = label_value_errors(values, selection.classes, what="prediction")
        if errors:
            raise LabelValueError(f"{path}: {errors[0]}")
        predictions.append(values.astype(np.uint8))
    stored = load_label(truth_path, reference)
    check_label_values(stored, truth_path, classes)
    return predictions, selection.remap(stored, str(truth_path)), voxel_ml


def _prediction_grid(prediction_path: Path) -> tuple[Volume, float]:
    """A stand-in ``Volume`` of the prediction's grid (what the label readers need) and its voxel volume in ml.

    Raises:
        ImageReadError: the prediction is missing, unreadable or not 3D.
    """
    from atso_med.data.readers import open_nifti

    if not prediction_path.is_file():
        raise ImageReadError(f"{prediction_path}: prediction does not exist")
    header, shape = open_nifti(prediction_path, "prediction")
    affine = np.asarray(header.affine, dtype=np.float64)
    # A zero-strided stand-in: the label readers only need the reference's grid, not its voxels.
    reference = Volume(np.broadcast_to(np.uint8(0), shape), affine, source=str(prediction_path))
    return reference, float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0


def read_label_maps(
    prediction_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    selection: ClassSelection,
    classes: Mapping[int, str] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Read a predicted label map of C classes and its label as label maps of those classes.

    Both are read on the prediction's voxel grid and checked as :func:`read_pair` checks them.

    Args:
        prediction_path: predicted label map NIfTI (values 0..C).
        truth_path: label NIfTI.
        selection: the C classes and the label values each gathers.
        classes: the label's declared class values (``None``: any integer value).

    Returns:
        ``(prediction, truth, voxel_ml)``: two uint8 label maps of values 0..C (the truth as
        :meth:`~atso_med.data.class_selection.ClassSelection.remap` maps it) and the volume of one
        voxel in ml.

    Raises:
        ImageReadError / GridMismatchError: as :func:`read_pair`.
        LabelValueError: a label value ``verify`` would refuse, or a prediction value not in 0..C.
    """
    (prediction,), truth, voxel_ml = read_predictions(
        [prediction_path], truth_path, classes=classes, selection=selection
    )
    return prediction, truth, voxel_ml
