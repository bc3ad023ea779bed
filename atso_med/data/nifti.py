"""Atomic NIfTI output with headers that 3D Slicer reads aligned."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from atso_med.files import atomic_write


def save_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    dtype=None,
    qform: tuple[np.ndarray, int] | None = None,
) -> Path:
    """Write ``array`` with ``affine`` as NIfTI, atomically: readers never see a partial file.

    qform and sform are both set to ``affine`` with code 1 (scanner), which is what 3D Slicer
    and ITK need to place the volume exactly where its source image lies. An input whose qform
    differs from its sform passes its ``qform`` on, so that a viewer reading either form places
    the output where it places the input.

    Args:
        array: voxel data indexed (i, j, k).
        affine: 4x4 voxel-to-RAS matrix.
        path: output file (``.nii`` or ``.nii.gz``).
        dtype: stored data type; defaults to the array's.
        qform: ``(matrix, code)`` to store as the qform instead of ``affine``.

    Returns:
        The path written.
    """
    data = np.asarray(array if dtype is None else np.asarray(array).astype(dtype, copy=False))
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.set_qform(*(qform if qform is not None else (affine, 1)))
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_write(path) as tmp:
        nib.save(image, str(tmp))
    return Path(path)
