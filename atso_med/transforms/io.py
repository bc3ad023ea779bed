"""Loading a CT case for the tri-view pipeline: image in HU and label on the image's grid, both canonical."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform


def load_canonical(path: str):
    """Read an image and reorient it to canonical axes.

    Returns:
        ``(volume, array, meta)``: the volume as stored, the float32 canonical array, and the
        geometry needed to go back (``affine``, ``canonical_affine``, ``ornt``, ``source``).
    """
    from atso_med.data.readers import load_image, reorient_to_canonical

    volume = load_image(path)
    canonical, ornt = reorient_to_canonical(volume)
    meta = {"affine": volume.affine, "canonical_affine": canonical.affine, "ornt": ornt, "source": str(path)}
    return volume, np.ascontiguousarray(canonical.array, dtype=np.float32), meta


class LoadCT(Transform):
    """Read a CT (NIfTI file or DICOM series folder) and reorient it to the closest canonical (RAS) axes.

    Reorientation is a permutation / flip of array axes (no resampling), so that plane "Z" is the
    axial plane of every case whatever its storage order. The original affine and the orientation
    transform are returned, so predictions can be put back on the original grid.

    Returns:
        ``(array, meta)``: float32 HU array in canonical order, and a dict with ``affine`` (original
        4x4), ``canonical_affine``, ``ornt`` (the nibabel orientation used) and ``source``.
    """

    def __call__(self, path: str) -> tuple[np.ndarray, dict]:
        _, array, meta = load_canonical(path)
        return array, meta


class LoadCTd(MapTransform):
    """Dictionary form of :class:`LoadCT` that also loads the label onto the image's grid.

    The label is placed on the image's voxel grid exactly (axis permutation / flips only; a label on
    another grid is refused with :class:`~atso_med.errors.GridMismatchError`), reoriented like the
    image, and binarised: voxels whose value is in ``foreground`` become 1.

    Args:
        image_key: key of the image path.
        label_key: key of the label path; skipped when absent from the data dict.
        foreground: label values that count as the organ (``None``: every non-zero value).
        meta_key: key under which the geometry of the image is stored.
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        foreground: Sequence[int] | None = None,
        meta_key: str = "image_meta",
        allow_missing_keys: bool = True,
    ):
        super().__init__(keys=[image_key], allow_missing_keys=allow_missing_keys)
        self.image_key, self.label_key, self.meta_key = image_key, label_key, meta_key
        self.foreground = None if foreground is None else tuple(int(v) for v in foreground)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        from atso_med.data.readers import load_label, reorient_to_canonical
        from atso_med.data.volume import Volume

        result = dict(data)
        volume, result[self.image_key], result[self.meta_key] = load_canonical(str(data[self.image_key]))
        if data.get(self.label_key):
            label = load_label(str(data[self.label_key]), volume)
            organ = label != 0 if self.foreground is None else np.isin(label, self.foreground)
            canonical_label, _ = reorient_to_canonical(Volume(organ.astype(np.uint8), volume.affine))
            result[self.label_key] = np.ascontiguousarray(canonical_label.array)
        return result


__all__ = ["LoadCT", "LoadCTd", "load_canonical"]
