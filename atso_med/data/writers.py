"""Writers of predictions: the mask NIfTI, its probability map and a 3D Slicer segmentation.

A prediction is an organ mask (0/1) or, given its ``classes`` (``{0: "background", 1: "liver",
2: "spleen", ...}``), a label map of values 0..C with ``(C, *spatial)`` probabilities. Every file
is written atomically on the input's own grid with the input's affine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from atso_med.data.labels import class_names
from atso_med.data.nifti import save_nifti
from atso_med.data.slicer_terminology import segment_style
from atso_med.errors import ConfigError, GridMismatchError, LabelValueError
from atso_med.files import atomic_write

__all__ = [
    "PANCREAS_COLOR",
    "PREDICTION_FILES",
    "prediction_file",
    "require_slicerio",
    "write_prediction",
    "write_seg_nrrd",
]

#: Display colour of the pancreas segment (3D Slicer's General Anatomy colour for the pancreas).
PANCREAS_COLOR = (249 / 255, 180 / 255, 111 / 255)

#: The files of one case's prediction in a prediction folder, by kind: every reader and writer of
#: a prediction folder (engines, fusion, experiments) names them through :func:`prediction_file`.
PREDICTION_FILES = {
    "mask": "{}.nii.gz",
    "probability": "{}_probability.nii.gz",
    "seg_nrrd": "{}.seg.nrrd",
    # Beside a pseudo label: the voxels its teachers are unsure of (``pseudo_label_confidence``).
    "uncertain": "{}_uncertain.nii.gz",
}


def prediction_file(folder: str | os.PathLike, case_id: str, kind: str = "mask") -> Path:
    """The path of one case's prediction file of a kind (see :data:`PREDICTION_FILES`) in ``folder``."""
    return Path(folder) / PREDICTION_FILES[kind].format(case_id)


# RAS+ (NIfTI, nibabel) to LPS+ (DICOM, NRRD, ITK) world coordinates.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def require_slicerio() -> None:
    try:
        import slicerio  # noqa: F401
    except ImportError:
        raise ConfigError("the .seg.nrrd output needs the 'slicerio' package (pip install slicerio)") from None


def write_seg_nrrd(
    mask: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    name: str = "pancreas",
    color: Sequence[float] = PANCREAS_COLOR,
    classes: Mapping[int, str] | None = None,
) -> Path:
    """Write a mask or label map as a 3D Slicer segmentation (``.seg.nrrd``, LPS space) atomically, with ``slicerio``.

    Each segment carries the 3D Slicer terminology (SNOMED CT) of its name where
    :func:`~atso_med.data.slicer_terminology.segment_style` knows it, so that Slicer shows it as
    that anatomy.

    Args:
        mask: binary mask (non-zero = organ), or with ``classes`` a label map of values 0..C,
            indexed like the image.
        affine: the image's 4x4 voxel-to-RAS affine.
        path: output file, ending in ``.seg.nrrd``.
        name: the segment's name (binary mask).
        color: the segment's colour, RGB in [0, 1] (binary mask).
        classes: the label map's classes (``{0: "background", 1: "liver", ...}``): one segment per
            class c of values 1..C, label value c, its name, and the colour of
            :func:`~atso_med.data.slicer_terminology.segment_style`.

    Returns:
        The path written.

    Raises:
        ConfigError: ``slicerio`` is not installed, the name does not end in ``.seg.nrrd``, or bad
            ``classes``.
    """
    require_slicerio()
    import slicerio

    if not str(path).endswith(".seg.nrrd"):
        raise ConfigError(f"a 3D Slicer segmentation file must end in .seg.nrrd, got {path}")
    mask = np.asarray(mask)
    if classes is None:
        _, terminology = segment_style(name, 1)
        segments = [(mask != 0, name, color, terminology)]
    else:
        segments = [
            (mask == value, class_name, *segment_style(class_name, value))
            for value, class_name in enumerate(class_names(classes), start=1)
        ]
    ijk_to_lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    segmentation = slicerio.create_segmentation(mask.shape, ijk_to_lps, dtype="uint8")
    for voxels, segment_name, segment_color, terminology in segments:
        segment = {"id": segment_name, "name": segment_name, "color": [float(c) for c in segment_color]}
        if terminology is not None:
            segment["terminology"] = terminology
        # The classes' voxels are disjoint: every segment goes to one layer, class c as label value c.
        slicerio.add_segment(segmentation, voxels, segment)
    with atomic_write(path) as tmp:
        slicerio.write_segmentation(str(tmp), segmentation)
    return Path(path)


def write_prediction(
    mask: np.ndarray,
    affine: np.ndarray,
    output_path: str | os.PathLike,
    probability: np.ndarray | None = None,
    probability_path: str | os.PathLike | None = None,
    seg_nrrd_path: str | os.PathLike | None = None,
    qform: tuple[np.ndarray, int] | None = None,
    classes: Mapping[int, str] | None = None,
) -> dict[str, str]:
    """Write a prediction that is already on the input's grid: mask NIfTI and optional extras.

    The mask is written last, so its existence marks a finished case (what resuming relies on).
    Every file is written atomically with the input's affine (qform = sform, code 1; or the
    input's own ``qform`` when it had one that differs).

    Args:
        mask: binary mask (non-zero = organ), or with ``classes`` a label map of values 0..C.
        affine: the input's 4x4 voxel-to-RAS affine.
        output_path: the mask's NIfTI: uint8, 0/1 for a binary mask, else the values 0..C.
        probability: float probabilities: the mask's shape, or ``(C, *spatial)`` with C classes.
        probability_path: float32 NIfTI of ``probability``; with C > 1 classes a 4D file, class
            c - 1 at index c - 1 of its last axis (one class: the 3D volume).
        seg_nrrd_path: 3D Slicer segmentation (:func:`write_seg_nrrd`).
        qform: the input's own qform, when it differs from ``affine``.
        classes: the label map's classes (``{0: "background", 1: "liver", ...}``); ``None``: a
            binary mask of the pancreas.

    Returns:
        ``{"output": ..., "probability": ..., "seg_nrrd": ...}`` for the files written.

    Raises:
        ConfigError: a probability path without probabilities, or bad ``classes``.
        LabelValueError: a label map value that is not one of the classes.
        GridMismatchError: probabilities whose shape does not match the mask and classes.
    """
    mask = np.asarray(mask)
    names = None if classes is None else class_names(classes)
    if names is not None and mask.size and not 0 <= int(mask.min()) <= int(mask.max()) <= len(names):
        raise LabelValueError(f"a label map of the classes {names} holds values 0..{len(names)} only")
    written = {}
    if probability_path is not None:
        if probability is None:
            raise ConfigError("a probability path was given without a probability map")
        probability = _probability_volume(np.asarray(probability), mask.shape, names)
        written["probability"] = str(save_nifti(probability, affine, probability_path, dtype=np.float32, qform=qform))
    if seg_nrrd_path is not None:
        written["seg_nrrd"] = str(write_seg_nrrd(mask, affine, seg_nrrd_path, classes=classes))
    mask = (mask != 0).astype(np.uint8) if names is None else mask.astype(np.uint8, copy=False)
    written["output"] = str(save_nifti(mask, affine, output_path, dtype=np.uint8, qform=qform))
    return written


def _probability_volume(probability: np.ndarray, shape: tuple[int, ...], names: list[str] | None) -> np.ndarray:
    """The array the probability NIfTI stores: the volume (binary, one class), or the classes on the last axis."""
    if names is None or (len(names) == 1 and probability.shape == shape):
        return probability
    if probability.shape != (len(names), *shape):
        raise GridMismatchError(
            f"probability shape {probability.shape} is not {(len(names), *shape)}: one volume per class {names}"
        )
    return probability[0] if len(names) == 1 else np.moveaxis(probability, 0, -1)
