"""The CT preprocessing, one definition for training and inference: load -> long-axis spacing -> HU window.

Training (the bundle's ``train.json``) and inference (:class:`~atso_med.transforms.prediction_io.PredictionPreprocessing`)
both build this transform, so a network is tested on exactly the signal it was trained on. The
order matters where ``long_axis_spacing`` is set: the raw HU are resampled, then windowed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from monai.transforms import Compose, Transform

from atso_med.data.datalist import UNCERTAIN_KEY
from atso_med.errors import ConfigError
from atso_med.transforms.case_loading import LoadCTd
from atso_med.transforms.intensity import HU_WINDOW, HUWindowd
from atso_med.transforms.spacing import LongAxisSpacingd

if TYPE_CHECKING:
    from atso_med.data.class_selection import ClassSelection

__all__ = ["CTPreprocessingd", "optional_spacing_mm"]


def optional_spacing_mm(value: Any) -> float | None:
    """A long-axis spacing option: ``None`` / ``"none"`` / ``0`` means off, else a positive number."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "off")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"long_axis_spacing must be a number of millimetres or null, got {value!r}") from None
    if number == 0:
        return None
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"long_axis_spacing must be a positive number of millimetres, got {value!r}")
    return number


class CTPreprocessingd(Transform):
    """Read a case (data-list item) and turn it into the networks' input.

    Steps: :class:`~atso_med.transforms.LoadCTd` (canonical image in HU, canonical label as the networks learn it,
    geometry under ``image_meta``), :class:`~atso_med.transforms.LongAxisSpacingd` (image linear,
    label and a pseudo label's uncertain voxels nearest; identity when ``long_axis_spacing`` is ``None``), then
    :class:`~atso_med.transforms.HUWindowd` on the image. :attr:`load` and :attr:`normalize` are the
    two halves, for a caller that needs the label on the original grid as well.

    Args:
        hu_window: ``(low, high)`` HU window mapped to [0, 1] (RSTN's [-100, 240]).
        long_axis_spacing: resample canonical axis 2 to this slice spacing (mm); ``None`` = off.
        foreground: label values counted as organ (``None``: every non-zero value).
        label_key: key of the label (path before loading, canonical mask after).
        classes: the declared label values (a label holding another is refused); ``None`` accepts
            any integer value.
        selection: the classes to segment, by name (instead of ``foreground``): the label
            becomes the output classes ``0..C``.
        num_classes: the classes of a training whose labels already hold class indices (without a
            ``selection``): 1 binarises the label, more keep its values (see
            :class:`~atso_med.transforms.LoadCTd`).

    Raises:
        ConfigError: a window that is not two numbers, a bad spacing, or a label definition
            :class:`~atso_med.transforms.LoadCTd` refuses.
    """

    def __init__(
        self,
        hu_window: Sequence[float] = HU_WINDOW,
        long_axis_spacing: float | None = None,
        foreground: Sequence[int] | None = None,
        label_key: str = "label",
        classes: Iterable[int] | None = None,
        selection: ClassSelection | None = None,
        num_classes: int = 1,
    ) -> None:
        if len(hu_window) != 2:
            raise ConfigError(f"hu_window must be [low, high], got {hu_window!r}")
        self.hu_window = (float(hu_window[0]), float(hu_window[1]))
        self.long_axis_spacing = optional_spacing_mm(long_axis_spacing)
        self.load = LoadCTd(
            label_key=label_key, foreground=foreground, classes=classes, selection=selection, num_classes=num_classes
        )
        self.normalize = Compose(
            [
                LongAxisSpacingd(
                    ["image", label_key, UNCERTAIN_KEY],
                    self.long_axis_spacing,
                    mode=["linear", "nearest", "nearest"],
                    allow_missing_keys=True,
                ),
                HUWindowd("image", a_min=self.hu_window[0], a_max=self.hu_window[1]),
            ]
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return self.normalize(self.load(data))
