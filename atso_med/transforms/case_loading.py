"""Loading a CT case for the tri-view pipeline: image in HU and label on the image's grid, both canonical."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np
from monai.transforms import MapTransform

from atso_med.errors import ConfigError, ImageReadError
from atso_med.flags import as_count


def load_canonical(path: str, series_uid: str | None = None):
    """Read an image and reorient it to canonical axes.

    Args:
        path: NIfTI file or DICOM series folder.
        series_uid: the series to read from a folder that holds several.

    Returns:
        ``(volume, array, meta)``: the volume as stored, the float32 canonical array, and the
        geometry needed to go back (``affine``, ``shape``, ``spacing``, ``orientation`` of the
        input, ``canonical_affine``, ``ornt``, ``source``).

    Raises:
        ImageReadError: the image cannot be read, or it holds NaN voxels.
    """
    from atso_med.data.readers import load_image, reorient_to_canonical

    volume = load_image(path, series_uid=series_uid)
    canonical, ornt = reorient_to_canonical(volume)
    array = np.ascontiguousarray(canonical.array, dtype=np.float32)
    if np.isnan(array).any():
        raise ImageReadError(f"{path}: the image holds NaN voxels; it cannot be segmented")
    meta = {
        "affine": np.asarray(volume.affine, dtype=np.float64),
        "shape": volume.shape,
        "spacing": volume.spacing,
        "orientation": volume.orientation,
        "canonical_affine": np.asarray(canonical.affine, dtype=np.float64),
        "ornt": ornt,
        "source": str(path),
        "qform": volume.meta.get("qform"),  # a NIfTI input's own qform, when it differs from its sform
    }
    return volume, array, meta


class LoadCTd(MapTransform):
    """Read a CT (NIfTI file or DICOM series folder) and its label, both in canonical (RAS) axis order.

    Reorientation is a permutation / flip of array axes (no resampling), so that plane "Z" is the
    axial plane of every case whatever its storage order; the geometry to go back is stored under
    ``meta_key``. The label is placed on the image's voxel grid exactly (a label on another grid is
    refused with :class:`~atso_med.errors.GridMismatchError`), reoriented like the image, and
    binarised: voxels whose value is in ``foreground`` become 1. A ``series_uid`` in the data dict
    picks one series of a DICOM folder that holds several. A label holding a value outside
    ``classes`` is refused, as ``verify`` refuses it. An item whose ``source`` is ``"pseudo"`` (a
    pseudo label the experiment wrote) is an organ mask: its values must be 0 and 1, and 1 is the
    organ whatever ``foreground`` says. A training of several classes (``num_classes > 1``) keeps
    the label's values, the class indices (0 background, ``c`` class ``c``), in their stored dtype,
    pseudo labels included; :class:`~atso_med.data.SliceStackDataset` checks that they lie in
    ``0..num_classes``.

    Args:
        image_key: key of the image path.
        label_key: key of the label path; skipped when absent from the data dict.
        foreground: label values that count as the organ (``None``: every non-zero value).
        meta_key: key under which the geometry of the image is stored.
        classes: the declared label values (``dataset.json``'s ``labels``); ``None`` accepts any
            integer value.
        num_classes: the classes of the training: 1 binarises the label, more keep its values.

    Raises:
        ConfigError: ``foreground`` given with ``num_classes > 1`` (the values are the classes).
        LabelValueError: (when called) a label value outside ``classes``, a NaN or a fraction.
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        foreground: Sequence[int] | None = None,
        meta_key: str = "image_meta",
        allow_missing_keys: bool = True,
        classes: Iterable[int] | None = None,
        num_classes: int = 1,
    ):
        super().__init__(keys=[image_key], allow_missing_keys=allow_missing_keys)
        self.image_key, self.label_key, self.meta_key = image_key, label_key, meta_key
        self.foreground = None if foreground is None else tuple(int(v) for v in foreground)
        self.classes = None if classes is None else frozenset(int(v) for v in classes)
        self.num_classes = as_count(num_classes, "num_classes")
        if self.num_classes > 1 and self.foreground is not None:
            raise ConfigError(
                f"foreground {list(self.foreground)} picks the organ of a one-class training; with num_classes "
                f"{self.num_classes} the label's values are the classes: leave foreground unset"
            )

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        from atso_med.data.labels import ORGAN_MASK_CLASSES, load_label_mask, load_label_values
        from atso_med.data.readers import reorient_to_canonical
        from atso_med.data.volume import Volume

        result = dict(data)
        volume, result[self.image_key], result[self.meta_key] = load_canonical(
            str(data[self.image_key]), series_uid=data.get("series_uid")
        )
        if data.get(self.label_key):
            path = str(data[self.label_key])
            if self.num_classes > 1:
                label = load_label_values(path, volume, self.classes)
            elif data.get("source") == "pseudo":
                label = load_label_mask(path, volume, None, ORGAN_MASK_CLASSES).astype(np.uint8)
            else:
                label = load_label_mask(path, volume, self.foreground, self.classes).astype(np.uint8)
            canonical_label, _ = reorient_to_canonical(Volume(label, volume.affine))
            result[self.label_key] = np.ascontiguousarray(canonical_label.array)
        return result


__all__ = ["LoadCTd", "load_canonical"]
