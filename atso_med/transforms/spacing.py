"""Long-axis spacing normalisation: resample a canonical volume along Z to a fixed slice spacing, and back.

The ATSO transfer experiment (NIH Pancreas-CT -> MSD) normalises the distance between axial
slices before training and testing, then rescales the outputs to the original size. Only the
long axis (canonical array axis 2, superior-inferior) is touched; in-plane pixels stay as they
are, so the 2D networks see the same in-plane resolution.

Grid convention ("align corners"): the first and the last slice of the resampled volume lie
exactly on the first and the last slice of the original one. For ``K`` slices ``s`` mm apart and a
target of ``t`` mm, the resampled volume has ``N = round((K - 1) * s / t) + 1`` slices, whose
spacing ``(K - 1) * s / (N - 1)`` is the target up to ``t / (2 (N - 1))``. Because both grids
cover the same extent, the inverse needs nothing but the original slice count, it lands exactly on
the original grid, and a volume already at the target spacing is returned unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type

from atso_med.errors import ConfigError

__all__ = [
    "INTERPOLATION_MODES",
    "LongAxisSpacing",
    "LongAxisSpacingD",
    "LongAxisSpacingDict",
    "LongAxisSpacingd",
    "long_axis_slices",
    "resample_long_axis",
]

#: ``linear`` for images and probabilities, ``nearest`` for labels.
INTERPOLATION_MODES = ("linear", "nearest")
# Spacings equal to this relative tolerance count as equal (NIfTI stores float32 affines).
_SPACING_RTOL = 1e-4


def _check_spacing(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number of millimetres, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{what} must be a positive finite number of millimetres, got {value!r}")
    return number


def _check_mode(mode: str) -> str:
    if mode not in INTERPOLATION_MODES:
        raise ConfigError(f"unknown interpolation mode {mode!r}; expected one of {INTERPOLATION_MODES}")
    return mode


def long_axis_slices(slices: int, spacing_mm: float, target_mm: float) -> int:
    """Slice count after resampling ``slices`` slices ``spacing_mm`` apart to about ``target_mm``.

    Args:
        slices: slices along the long axis (>= 1).
        spacing_mm: their spacing.
        target_mm: the wanted spacing.

    Returns:
        ``round((slices - 1) * spacing_mm / target_mm) + 1``; ``slices`` itself when the spacings
        agree within a relative 1e-4 or there is a single slice.

    Raises:
        ConfigError: for a non-positive count or spacing.
    """
    if int(slices) < 1:
        raise ConfigError(f"a volume needs at least one slice, got {slices}")
    spacing_mm = _check_spacing(spacing_mm, "slice spacing")
    target_mm = _check_spacing(target_mm, "target slice spacing")
    if slices == 1 or math.isclose(spacing_mm, target_mm, rel_tol=_SPACING_RTOL):
        return int(slices)
    return int(round((slices - 1) * spacing_mm / target_mm)) + 1


def resample_long_axis(array: np.ndarray, slices: int, mode: str = "linear") -> np.ndarray:
    """Resample the last axis of ``array`` to ``slices`` samples over the same extent (align corners).

    Output sample ``n`` lies at input position ``n (K - 1) / (slices - 1)``. Linear mode blends the
    two neighbouring input slices (float32 out); nearest mode copies the closer one, ties going to
    the later slice (dtype kept). Works slice by slice, so memory stays at input plus output.

    Args:
        array: volume whose last axis is the long axis (``(I, J, K)`` or ``(C, I, J, K)``).
        slices: output length of the last axis.
        mode: ``"linear"`` or ``"nearest"``.

    Returns:
        A new array; the input is never modified. Same length in: a copy.
    """
    mode = _check_mode(mode)
    if int(slices) < 1:
        raise ConfigError(f"cannot resample to {slices} slices")
    source = np.asarray(array)
    length = source.shape[-1]
    if length == slices:
        return source.copy()
    dtype = np.float32 if mode == "linear" else source.dtype
    out = np.empty((*source.shape[:-1], int(slices)), dtype=dtype)
    # Exact rational positions; float64 keeps them exact enough for thousands of slices.
    scale = (length - 1) / (slices - 1) if slices > 1 else 0.0
    for n in range(int(slices)):
        position = n * scale
        if mode == "nearest":
            out[..., n] = source[..., min(int(math.floor(position + 0.5)), length - 1)]
            continue
        lower = min(int(math.floor(position)), length - 1)
        upper = min(lower + 1, length - 1)
        weight = position - lower
        if weight <= 1e-9 or upper == lower:
            out[..., n] = source[..., lower]
        elif weight >= 1 - 1e-9:
            out[..., n] = source[..., upper]
        else:
            out[..., n] = (1.0 - weight) * source[..., lower].astype(np.float32) + weight * source[..., upper].astype(
                np.float32
            )
    return out


class LongAxisSpacing(Transform):
    """Resample a canonical volume along its last (Z, superior-inferior) axis to ``target_mm`` slice spacing.

    Array transform. The input's slice spacing is passed to the call (see the module docstring for
    the grid). :meth:`inverse` puts a resampled array (a probability map, a mask) back on the
    original slice count.

    Args:
        target_mm: wanted slice spacing in mm.
        mode: default interpolation: ``"linear"`` (images) or ``"nearest"`` (labels).

    Raises:
        ConfigError: for a non-positive spacing or an unknown mode.
    """

    backend = [np.ndarray, torch.Tensor]  # type: ignore[assignment]

    def __init__(self, target_mm: float, mode: str = "linear") -> None:
        self.target_mm = _check_spacing(target_mm, "target slice spacing")
        self.mode = _check_mode(mode)

    def slices_for(self, slices: int, spacing_mm: float) -> int:
        """Slice count of the resampled volume (:func:`long_axis_slices`)."""
        return long_axis_slices(slices, spacing_mm, self.target_mm)

    def effective_spacing(self, slices: int, spacing_mm: float) -> float:
        """The actual slice spacing after resampling (the target up to rounding of the count)."""
        new = self.slices_for(slices, spacing_mm)
        if new == slices:
            return float(spacing_mm)
        return (slices - 1) * float(spacing_mm) / (new - 1)

    def __call__(  # type: ignore[override]
        self, img: NdarrayOrTensor, spacing_mm: float, mode: str | None = None
    ) -> NdarrayOrTensor:
        """Resample ``img`` along its last axis.

        Args:
            img: canonical volume ``(I, J, K)`` or ``(C, I, J, K)``, numpy or torch.
            spacing_mm: its slice spacing (mm) along the last axis.
            mode: overrides the default interpolation.

        Returns:
            The resampled volume, same container type (float32 for linear, the input dtype for
            nearest); ``img`` itself when the spacing already matches.
        """
        new = self.slices_for(int(np.shape(img)[-1]), spacing_mm)
        if new == np.shape(img)[-1]:
            return img  # identity: nothing to resample, no copy
        mode = _check_mode(mode or self.mode)
        data = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        out = resample_long_axis(data, new, mode)
        return convert_to_dst_type(out, img, dtype=out.dtype)[0] if isinstance(img, torch.Tensor) else out

    def inverse(  # type: ignore[override]
        self, img: NdarrayOrTensor, original_slices: int, mode: str = "linear", threshold: float | None = None
    ) -> NdarrayOrTensor:
        """Put a resampled array back on the original slice count.

        Args:
            img: resampled volume (last axis = long axis).
            original_slices: slice count of the original volume.
            mode: ``"linear"`` (probabilities, or masks to be thresholded) or ``"nearest"``.
            threshold: when given, return ``uint8(value >= threshold)``: linear interpolation then
                threshold turns a probability map (or a mask cast to float) back into a mask.

        Returns:
            The array on the original grid; same container type as ``img``.
        """
        mode = _check_mode(mode)
        if int(original_slices) < 1:
            raise ConfigError(f"original slice count must be >= 1, got {original_slices}")
        data = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if data.shape[-1] == original_slices:
            out = data  # nothing was resampled
        else:
            out = resample_long_axis(data, int(original_slices), mode)
        if threshold is not None:
            out = (np.asarray(out, dtype=np.float32) >= float(threshold)).astype(np.uint8)
        return convert_to_dst_type(out, img, dtype=out.dtype)[0] if isinstance(img, torch.Tensor) else out


class LongAxisSpacingd(MapTransform):
    """Dictionary form of :class:`LongAxisSpacing`, reading the slice spacing from the image's geometry.

    The slice spacing is the length of column 2 of ``data[meta_key]["canonical_affine"]`` (what
    :class:`~atso_med.transforms.LoadCTd` stores). After resampling, that affine is replaced by the
    resampled grid's and the original geometry is recorded under ``meta["long_axis_spacing"]``,
    which :meth:`inverse` uses to go back.

    Args:
        keys: keys to resample (images and labels).
        target_mm: wanted slice spacing (mm); ``None`` turns the transform into the identity
            (both ways), so a pipeline can carry it with the option off.
        mode: interpolation per key (one value for all, or one per key); default ``linear`` for
            every key. Use ``nearest`` for labels.
        meta_key: key of the geometry dict.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        target_mm: float | None,
        mode: str | Sequence[str] = "linear",
        meta_key: str = "image_meta",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spacing = None if target_mm is None else LongAxisSpacing(target_mm)
        modes = [mode] * len(self.keys) if isinstance(mode, str) else list(mode)
        if len(modes) != len(self.keys):
            raise ConfigError(f"LongAxisSpacingd: {len(self.keys)} keys but {len(modes)} modes")
        self.modes = dict(zip(self.keys, (_check_mode(m) for m in modes), strict=True))
        self.meta_key = meta_key

    def _meta(self, data: Mapping) -> dict:
        meta = data.get(self.meta_key)
        if not isinstance(meta, Mapping) or "canonical_affine" not in meta:
            raise ConfigError(
                f"LongAxisSpacingd needs data[{self.meta_key!r}]['canonical_affine'] "
                "(load the image with LoadCTd first)"
            )
        return dict(meta)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.spacing is None:
            return d
        meta = self._meta(d)
        affine = np.asarray(meta["canonical_affine"], dtype=np.float64)
        spacing = float(np.linalg.norm(affine[:3, 2]))
        slices = None
        for key in self.key_iterator(d):
            k = int(np.shape(d[key])[-1])
            if slices is not None and k != slices:
                raise ConfigError(f"LongAxisSpacingd: key {key!r} has {k} slices, others {slices}")
            slices = k
            d[key] = self.spacing(d[key], spacing, mode=self.modes[key])
        if slices is None:
            return d
        new = self.spacing.slices_for(slices, spacing)
        resampled = affine.copy()
        if new != slices:
            resampled[:3, 2] = affine[:3, 2] * (slices - 1) / (new - 1)
        meta["long_axis_spacing"] = {
            "original_slices": slices,
            "original_spacing_mm": spacing,
            "target_mm": self.spacing.target_mm,
            "slices": new,
            "spacing_mm": self.spacing.effective_spacing(slices, spacing),
            "original_canonical_affine": affine,
        }
        meta["canonical_affine"] = resampled
        d[self.meta_key] = meta
        return d

    def inverse(self, data: Mapping[Hashable, Any], keys: KeysCollection | None = None) -> dict[Hashable, Any]:
        """Resample ``keys`` (default: this transform's keys) back to the original slice count.

        Keys whose mode is ``nearest`` go back by nearest neighbour; ``linear`` ones by linear
        interpolation (probabilities stay probabilities: threshold them afterwards if a mask is
        needed, or use :meth:`LongAxisSpacing.inverse` with ``threshold``).

        Raises:
            ConfigError: when the data was not resampled by this transform.
        """
        d = dict(data)
        if self.spacing is None:
            return d
        meta = self._meta(d)
        record = meta.get("long_axis_spacing")
        if not isinstance(record, Mapping):
            raise ConfigError("LongAxisSpacingd.inverse: the data carries no long_axis_spacing record")
        for key in self.keys if keys is None else ([keys] if isinstance(keys, str) else list(keys)):
            if key not in d:
                if self.allow_missing_keys:
                    continue
                raise KeyError(key)
            d[key] = self.spacing.inverse(d[key], int(record["original_slices"]), mode=self.modes.get(key, "linear"))
        meta["canonical_affine"] = np.asarray(record["original_canonical_affine"], dtype=np.float64)
        meta.pop("long_axis_spacing")
        d[self.meta_key] = meta
        return d


# MONAI's alias spellings of dictionary transforms.
LongAxisSpacingD = LongAxisSpacingDict = LongAxisSpacingd
