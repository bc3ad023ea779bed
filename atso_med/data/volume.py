"""The in-memory form of one CT volume or label map: a voxel array plus its world geometry."""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np


@dataclass
class Volume:
    """A 3D array indexed (i, j, k) with the 4x4 affine that maps voxel indices to RAS+ millimetres.

    The affine follows the NIfTI / nibabel convention (world = RAS+), also for volumes read
    from DICOM (whose LPS+ geometry is converted on reading).

    Attributes:
        array: the voxel data, shape (I, J, K).
        affine: 4x4 float64 voxel-to-world (RAS+) matrix.
        source: where the volume was read from, for messages; empty for computed volumes.
    """

    array: np.ndarray
    affine: np.ndarray
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Orientation codes of the array axes, e.g. ``"RAS"`` or ``"LPS"``."""
        return "".join(nib.orientations.aff2axcodes(self.affine))
