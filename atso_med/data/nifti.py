"""Atomic NIfTI output with headers that 3D Slicer reads aligned."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np


def atomic_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """Return ``(final, temporary)`` paths for writing ``path`` atomically.

    The temporary file sits in the same folder (so that :func:`os.replace` is atomic) and keeps
    the full suffix (``.nii.gz``), so that writers that choose a format by suffix still work.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix="".join(final.suffixes), dir=final.parent)
    os.close(fd)
    return final, Path(tmp)


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike, dtype=None) -> Path:
    """Write ``array`` with ``affine`` as NIfTI, atomically: readers never see a partial file.

    qform and sform are both set to ``affine`` with code 1 (scanner), which is what 3D Slicer
    and ITK need to place the volume exactly where its source image lies.

    Args:
        array: voxel data indexed (i, j, k).
        affine: 4x4 voxel-to-RAS matrix.
        path: output file (``.nii`` or ``.nii.gz``).
        dtype: stored data type; defaults to the array's.

    Returns:
        The path written.
    """
    data = np.asarray(array if dtype is None else np.asarray(array).astype(dtype, copy=False))
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    final, tmp = atomic_path(path)
    try:
        nib.save(image, str(tmp))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (JSON, CSV, YAML) atomically."""
    final, tmp = atomic_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
