"""Loading a CT case for the tri-view pipeline: image in HU and label on the image's grid, both canonical."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from monai.transforms import MapTransform

from atso_med.data.datalist import UNCERTAIN_KEY
from atso_med.errors import ConfigError, ImageReadError
from atso_med.flags import as_count

if TYPE_CHECKING:
    from atso_med.data.class_selection import ClassSelection


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
    turned into the label the networks learn: with a ``selection``, the output classes ``0..C``
    (:meth:`~atso_med.data.class_selection.ClassSelection.remap`); without, an organ mask where
    voxels whose value is in ``foreground`` become 1. A ``series_uid`` in the data dict
    picks one series of a DICOM folder that holds several. A label holding a value outside
    ``classes`` is refused, as ``verify`` refuses it. An item whose ``source`` is ``"pseudo"`` (a
    pseudo label the experiment wrote) already holds output classes: 0 and 1 (the organ whatever
    ``foreground`` says), or ``0..C``; any other value is refused. A training of several classes
    without a ``selection`` (``num_classes > 1``) keeps the label's values as the class indices (0
    background, ``c`` class ``c``); :class:`~atso_med.data.SliceStackDataset` checks that they lie
    in ``0..num_classes``. A pseudo label's mask of uncertain voxels (``uncertain``, written with
    ``pseudo_label_confidence``) is read the same way, onto the image's grid, as 0/1.

    Args:
        image_key: key of the image path.
        label_key: key of the label path; skipped when absent from the data dict.
        foreground: label values that count as the organ (``None``: every non-zero value).
        meta_key: key under which the geometry of the image is stored.
        classes: the declared label values (``dataset.json``'s ``labels``); ``None`` accepts any
            integer value.
        selection: the classes to segment, by name (instead of ``foreground``).
        num_classes: the classes of a training whose labels already hold class indices ``0..C``
            (without a ``selection``): 1 binarises the label, more keep its values.

    Raises:
        ConfigError: both ``foreground`` and ``selection``; ``foreground`` with ``num_classes > 1``;
            a ``num_classes`` other than the selection's.
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
        selection: ClassSelection | None = None,
        num_classes: int = 1,
    ):
        super().__init__(keys=[image_key], allow_missing_keys=allow_missing_keys)
        if foreground is not None and selection is not None:
            raise ConfigError("give the organ either as foreground values or as a class selection, not both")
        self.image_key, self.label_key, self.meta_key = image_key, label_key, meta_key
        self.foreground = None if foreground is None else tuple(int(v) for v in foreground)
        self.classes = None if classes is None else frozenset(int(v) for v in classes)
        self.selection = selection
        self.num_classes = as_count(num_classes, "num_classes")
        if selection is not None and self.num_classes not in (1, selection.num_classes):
            raise ConfigError(
                f"num_classes {self.num_classes} differs from the {selection.num_classes} classes selected "
                f"({selection.describe()})"
            )
        if selection is not None:
            self.num_classes = selection.num_classes
        if self.num_classes > 1 and self.foreground is not None:
            raise ConfigError(
                f"foreground {list(self.foreground)} picks the organ of a one-class training; with num_classes "
                f"{self.num_classes} the label's values are the classes: leave foreground unset"
            )

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        from atso_med.data.labels import ORGAN_MASK_CLASSES, binarize_label, load_label_values

        result = dict(data)
        volume, result[self.image_key], result[self.meta_key] = load_canonical(
            str(data[self.image_key]), series_uid=data.get("series_uid")
        )
        if data.get(self.label_key):
            path = str(data[self.label_key])
            if data.get("source") == "pseudo":
                output_classes = (
                    ORGAN_MASK_CLASSES if self.num_classes == 1 else dict.fromkeys(range(self.num_classes + 1), "")
                )
                label = load_label_values(path, volume, output_classes)
            elif self.selection is not None:
                label = self.selection.remap(load_label_values(path, volume, self.classes), path)
            elif self.num_classes > 1:
                label = load_label_values(path, volume, self.classes)
            else:
                label = binarize_label(load_label_values(path, volume, self.classes), self.foreground)
            result[self.label_key] = _canonical(label, volume.affine)
        if data.get(UNCERTAIN_KEY):
            if data.get("source") != "pseudo":
                raise ConfigError(
                    f"case {data.get('id', data[self.image_key])}: an '{UNCERTAIN_KEY}' mask belongs to a pseudo "
                    f"label (source: pseudo), not to a case of source {data.get('source')!r}"
                )
            uncertain = load_label_values(str(data[UNCERTAIN_KEY]), volume, ORGAN_MASK_CLASSES)
            result[UNCERTAIN_KEY] = _canonical(uncertain, volume.affine)
        return result


def _canonical(label: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A label array on the image's grid, in canonical axis order (uint8 for a boolean mask)."""
    from atso_med.data.readers import reorient_to_canonical
    from atso_med.data.volume import Volume

    if label.dtype == bool:
        label = label.view(np.uint8)
    canonical, _ = reorient_to_canonical(Volume(label, affine))
    return np.ascontiguousarray(canonical.array)


__all__ = ["LoadCTd", "load_canonical"]
