"""The transforms around whole-volume inference: one case in, the network's input out, and back.

:class:`PredictionPreprocessing` reads a case and normalises it with the very
:class:`~atso_med.transforms.CTPreprocessingd` training uses; :class:`PredictionPostprocessing`
puts the inferer's mask and probability back on the input's own voxel grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from atso_med.errors import GridMismatchError
from atso_med.transforms.intensity import HU_WINDOW

__all__ = ["PredictionPostprocessing", "PredictionPreprocessing"]


class PredictionPreprocessing:
    """The training preprocessing (:class:`~atso_med.transforms.CTPreprocessingd`) of one case for the inferer.

    Args:
        hu_window: ``(low, high)`` HU window mapped to [0, 1] (the RSTN's [-100, 240]).
        long_axis_spacing: resample canonical axis 2 to this slice spacing (mm); ``None`` = off.
        with_truth: also read the item's ``label`` (for per-round DSC in the statistics only; it
            never changes the prediction).
        foreground: label values counted as organ (``None``: every non-zero value).

    Returns (when called with an item):
        ``{"id", "image": float32 canonical [0, 1] array, "image_meta": {...}}`` plus ``"truth"``
        (canonical uint8, on the inferer's grid) and ``"label"`` (bool, on the original grid) with
        ``with_truth``. ``image_meta`` holds ``affine`` and ``shape`` of the input, ``ornt``,
        ``canonical_affine``, ``spacing``, ``orientation``, ``source``, and the
        ``long_axis_spacing`` record when resampled.
    """

    def __init__(
        self,
        hu_window: Sequence[float] = HU_WINDOW,
        long_axis_spacing: float | None = None,
        with_truth: bool = False,
        foreground: Sequence[int] | None = None,
    ) -> None:
        from atso_med.flags import as_bool
        from atso_med.transforms.preprocessing import CTPreprocessingd

        self.preprocessing = CTPreprocessingd(hu_window, long_axis_spacing, foreground, label_key="truth")
        self.hu_window = self.preprocessing.hu_window
        self.long_axis_spacing = self.preprocessing.long_axis_spacing
        self.with_truth = as_bool(with_truth)

    def __call__(self, item: Mapping[str, Any]) -> dict[str, Any]:
        from atso_med.data.readers import reorient_from_canonical

        case = {"id": item.get("id"), "image": item["image"], "series_uid": item.get("series_uid")}
        if self.with_truth and item.get("label"):
            case["truth"] = item["label"]
        data = self.preprocessing.load(case)
        if "truth" in data:
            # The original grid's mask (for the DSC of the written prediction) comes from the
            # canonical one before any resampling: a permutation / flip, exact.
            original = reorient_from_canonical(data["truth"], data["image_meta"]["ornt"])
            data["label"] = np.ascontiguousarray(original, dtype=bool)
        data = self.preprocessing.normalize(data)
        data.pop("series_uid")
        return data


class PredictionPostprocessing:
    """Put the inferer's mask and probability back on the input's own voxel grid.

    The long-axis resampling is undone first (mask: linear interpolation of the 0/1 mask, then
    >= 0.5, which keeps the inferer's fusion and clean-up; probability: linear), then the
    canonical reorientation (axis permutation / flips only). A label map of C > 1 classes (its
    probability then has one volume per class, ``(C, I, J, K)``) goes back by nearest neighbour,
    and each class's probability as one volume.

    Raises:
        GridMismatchError: when the result does not have the input's shape (a broken invariant).
    """

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        from atso_med.data.readers import reorient_from_canonical
        from atso_med.transforms.spacing import LongAxisSpacing

        d = dict(data)
        meta = d["image_meta"]
        mask, probability = np.asarray(d["mask"]), np.asarray(d["probability"], dtype=np.float32)
        label_map = probability.ndim == mask.ndim + 1
        record = meta.get("long_axis_spacing")
        if record and int(record["slices"]) != int(record["original_slices"]):
            back = LongAxisSpacing(float(record["target_mm"]))
            slices = int(record["original_slices"])
            if label_map:
                mask = back.inverse(mask, slices, mode="nearest")
            else:
                mask = back.inverse(mask.astype(np.float32), slices, mode="linear", threshold=0.5)
            probability = back.inverse(probability, slices, mode="linear")
        d["mask"] = np.ascontiguousarray(reorient_from_canonical(mask, meta["ornt"]), dtype=np.uint8)
        if label_map:
            probability = np.stack([reorient_from_canonical(p, meta["ornt"]) for p in probability])
        else:
            probability = reorient_from_canonical(probability, meta["ornt"])
        d["probability"] = np.ascontiguousarray(probability, dtype=np.float32)
        if tuple(d["mask"].shape) != tuple(meta["shape"]):
            raise GridMismatchError(
                f"prediction shape {d['mask'].shape} differs from the input's {tuple(meta['shape'])} after inversion"
            )
        return d
