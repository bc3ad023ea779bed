"""CT intensity windowing: clip Hounsfield units to a window and map it linearly to a range.

RSTN feeds its network HU clipped to [-100, 240] and scaled to [0, 1]: :data:`HU_WINDOW`, defined
here once, is the default of every transform, prediction, bundle and experiment setting.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, ScaleIntensityRange
from monai.utils import convert_to_dst_type

from atso_med.errors import ConfigError

__all__ = ["HU_WINDOW", "HUWindow", "HUWindowD", "HUWindowDict", "HUWindowd"]

HU_WINDOW: tuple[float, float] = (-100.0, 240.0)
"""RSTN's HU window ``(low, high)``, mapped to [0, 1]: the pancreas and its neighbours in contrast CT."""


class HUWindow(ScaleIntensityRange):
    """Clip HU to ``[a_min, a_max]`` and map that window linearly onto ``[b_min, b_max]``.

    A thin layer over MONAI's :class:`~monai.transforms.ScaleIntensityRange` with ``clip=True``
    (scaling then clipping to ``[b_min, b_max]`` equals clipping the HU first when
    ``b_max > b_min``, which is therefore required). Unlike MONAI's transform, which always
    returns a ``MetaTensor``, the output keeps the input's type: a numpy array stays a numpy
    array, a plain tensor stays a plain tensor (on its device), a ``MetaTensor`` keeps its
    metadata. The output is always float32.

    Args:
        a_min: lower HU bound of the window.
        a_max: upper HU bound of the window.
        b_min: output value for HU at or below ``a_min``.
        b_max: output value for HU at or above ``a_max``.

    Raises:
        ConfigError: if ``a_max <= a_min`` or ``b_max <= b_min``, or a bound is not finite.
    """

    def __init__(
        self,
        a_min: float = HU_WINDOW[0],
        a_max: float = HU_WINDOW[1],
        b_min: float = 0.0,
        b_max: float = 1.0,
    ) -> None:
        bounds = {"a_min": a_min, "a_max": a_max, "b_min": b_min, "b_max": b_max}
        for name, value in bounds.items():
            try:
                ok = bool(np.isfinite(float(value)))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(f"HU window: {name} must be a finite number, got {value!r}")
        if not float(a_max) > float(a_min):
            raise ConfigError(f"HU window: a_max ({a_max}) must be greater than a_min ({a_min})")
        # MONAI clips after scaling to [b_min, b_max]; a reversed output range would clip wrongly.
        if not float(b_max) > float(b_min):
            raise ConfigError(f"HU window: b_max ({b_max}) must be greater than b_min ({b_min})")
        super().__init__(
            a_min=float(a_min),
            a_max=float(a_max),
            b_min=float(b_min),
            b_max=float(b_max),
            clip=True,
            dtype=np.float32,
        )

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Window ``img``.

        Args:
            img: HU values, any shape, numpy array or torch tensor of any real dtype.

        Returns:
            The windowed values as float32, of the same container type, shape and device as
            ``img``.
        """
        out = super().__call__(img)
        if isinstance(img, MetaTensor):
            # MONAI already carried the metadata over; only the dtype may need fixing.
            return out.to(torch.float32) if isinstance(out, torch.Tensor) else out
        dtype = torch.float32 if isinstance(img, torch.Tensor) else np.float32
        return convert_to_dst_type(out, img, dtype=dtype)[0]


class HUWindowd(MapTransform):
    """Dictionary version of :class:`HUWindow`.

    Args:
        keys: keys of the images to window (never a label).
        a_min: lower HU bound of the window.
        a_max: upper HU bound of the window.
        b_min: output value for HU at or below ``a_min``.
        b_max: output value for HU at or above ``a_max``.
        allow_missing_keys: do not raise if a key is absent.

    Raises:
        ConfigError: as :class:`HUWindow`.
    """

    backend = HUWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        a_min: float = HU_WINDOW[0],
        a_max: float = HU_WINDOW[1],
        b_min: float = 0.0,
        b_max: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.window = HUWindow(a_min=a_min, a_max=a_max, b_min=b_min, b_max=b_max)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Window every selected key of ``data``.

        Args:
            data: a sample dictionary.

        Returns:
            A shallow copy of ``data`` with the selected keys windowed.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.window(d[key])
        return d


# MONAI's alias spellings of dictionary transforms.
HUWindowD = HUWindowDict = HUWindowd
