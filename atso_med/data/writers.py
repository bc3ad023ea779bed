"""Writers of predictions: the mask NIfTI, its probability map and a 3D Slicer segmentation.

Every file is written atomically on the input's own grid with the input's affine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atso_med.data.nifti import save_nifti
from atso_med.errors import ConfigError
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
PREDICTION_FILES = {"mask": "{}.nii.gz", "probability": "{}_probability.nii.gz", "seg_nrrd": "{}.seg.nrrd"}


def prediction_file(folder: str | os.PathLike, case_id: str, kind: str = "mask") -> Path:
    """The path of one case's prediction file of a kind (see :data:`PREDICTION_FILES`) in ``folder``."""
    return Path(folder) / PREDICTION_FILES[kind].format(case_id)


# SNOMED CT codes of 3D Slicer's terminology, so Slicer shows the segment as "Pancreas".
_PANCREAS_TERMINOLOGY = {
    "contextName": "Segmentation category and type - 3D Slicer General Anatomy list",
    "category": ["SCT", "123037004", "Anatomical Structure"],
    "type": ["SCT", "15776009", "Pancreas"],
    "anatomicContextName": "Anatomic codes - DICOM master list",
}


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
) -> Path:
    """Write a mask as a 3D Slicer segmentation (``.seg.nrrd``, LPS space) atomically, with ``slicerio``.

    Args:
        mask: binary mask indexed like the image (non-zero = organ).
        affine: the image's 4x4 voxel-to-RAS affine.
        path: output file, ending in ``.seg.nrrd``.
        name: segment name.
        color: segment colour, RGB in [0, 1].

    Returns:
        The path written.

    Raises:
        ConfigError: ``slicerio`` is not installed, or the name does not end in ``.seg.nrrd``.
    """
    require_slicerio()
    import slicerio

    if not str(path).endswith(".seg.nrrd"):
        raise ConfigError(f"a 3D Slicer segmentation file must end in .seg.nrrd, got {path}")
    ijk_to_lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    segmentation = slicerio.create_segmentation(np.shape(mask), ijk_to_lps, dtype="uint8")
    segment = {"id": name, "name": name, "color": [float(c) for c in color], "terminology": _PANCREAS_TERMINOLOGY}
    slicerio.add_segment(segmentation, np.asarray(mask) != 0, segment)
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
) -> dict[str, str]:
    """Write a prediction that is already on the input's grid: mask NIfTI and optional extras.

    The mask is written last, so its existence marks a finished case (what resuming relies on).
    Every file is written atomically with the input's affine (qform = sform, code 1; or the
    input's own ``qform`` when it had one that differs).

    Returns:
        ``{"output": ..., "probability": ..., "seg_nrrd": ...}`` for the files written.
    """
    written = {}
    if probability_path is not None:
        if probability is None:
            raise ConfigError("a probability path was given without a probability map")
        written["probability"] = str(save_nifti(probability, affine, probability_path, dtype=np.float32, qform=qform))
    if seg_nrrd_path is not None:
        written["seg_nrrd"] = str(write_seg_nrrd(mask, affine, seg_nrrd_path))
    mask = (np.asarray(mask) != 0).astype(np.uint8)
    written["output"] = str(save_nifti(mask, affine, output_path, dtype=np.uint8, qform=qform))
    return written
