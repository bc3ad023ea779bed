"""Whole-volume coarse-to-fine RSTN inference with tri-view fusion (the reference's testing).

Round 0 runs each plane's coarse FCN over every 3-slice stack of the volume, averages the (up
to 3) stacks covering a voxel and fuses the planes. Rounds ``1..R`` run, for every plane and
every stack on which the previous fused mask is non-empty, the fine FCN on the box of that mask
(plus a margin), with the saliency computed from the previous round's fused score map (the mean
of the planes' probabilities); skipped stacks count as zero. Each fine round's fused mask is
cleaned (:func:`keep_large_components`) and compared with the previous one; the first round whose
inter-round DSC reaches ``stop_dsc`` is returned, else round ``R``, or the round in which the
mask became empty.

Plane fusion (:func:`~atso_med.inferers.fusion.fuse_planes`):

* ``"majority"``: a voxel is organ when more than half of the planes' masks
  (probability >= threshold) say so: 2 of 3 planes, both of 2 planes, the single plane of 1.
* ``"mean"``: the mean of the planes' probabilities >= threshold (what the reference code does).

With one plane both rules give the same mask.

Several organs (models of ``num_classes = C > 1``, :class:`~atso_med.networks.RSTN`): each plane
gives C class probabilities per voxel, a plane's label map is the most probable class >= the
threshold, and the planes are fused per class (:class:`~atso_med.inferers.fusion.PlaneFusion`);
the fine pass refines the box of the union of the classes, the clean-up keeps each class's large
components, and the inter-round DSC is the mean over the classes present
(:func:`~atso_med.metrics.class_dice.mean_class_dice`). The volumes of probabilities below are
then C times as large.

Host memory (``V`` voxels, float32 volume = ``4 V`` bytes; 512x512x300 -> ``4 V`` = 315 MB):
the inferer never holds all stacks of a plane, only one batch at a time. At the peak of a fine
round it holds the float32 input (``4 V``; no copy if it is already float32), the previous
round's fused score map (``4 V``), the plane being accumulated (``4 V``), the running sum of
the finished planes (``4 V``), the previous mask, the vote counts and a boolean temporary
(``V`` each), plus one batch of stacks and the clean-up's labels on the mask's bounding box
only: about ``19 V`` bytes (:func:`estimate_peak_host_bytes`), 1.5 GB for 512x512x300 with 3
planes (the plane count changes the time, not the peak), plus ``V`` per round mask kept.

The networks come on top, in host memory only when they run on the CPU: about 1.07 GB of
weights per full-size plane model (3.2 GB for 3 planes) and the activations of one batch,
measured at +0.54 GB for one 512x512 stack and +3.0 GB for a batch of 8 (coarse FCN, inference
mode). On a GPU, 3 planes of a 512x512x300 volume need about 2 GB of host memory; on the CPU
about 5.5 GB at ``batch_size=1`` but about 8 GB at 8, so use 1 or 2 there (batching does not
make the CPU faster).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from scipy import ndimage

from atso_med.data.slices import PLANES, iter_stacks, plane_axis, slice_stack
from atso_med.errors import ConfigError, GridMismatchError, ImageReadError
from atso_med.inferers.fusion import FUSIONS, PlaneFusion
from atso_med.metrics.class_dice import mean_class_dice
from atso_med.metrics.dice import dice_score
from atso_med.transforms.triview import StackAccumulator

__all__ = [
    "CoarseToFineInferer",
    "InferenceConfig",
    "VolumePrediction",
    "estimate_peak_host_bytes",
    "keep_large_components",
]

logger = logging.getLogger(__name__)

#: Tolerance on the [0, 1] intensity range of an input volume (float rounding of the window).
_RANGE_TOLERANCE = 1e-3


class PlaneModel(Protocol):
    """What the inferer needs of a plane model (an :class:`~atso_med.networks.RSTN`)."""

    def coarse_probability(self, image: torch.Tensor) -> torch.Tensor: ...

    def fine_probability(
        self, image: torch.Tensor, score_map: torch.Tensor, mask: torch.Tensor, margin: int = 20
    ) -> torch.Tensor: ...


@dataclass
class InferenceConfig:
    """Settings of :class:`CoarseToFineInferer`.

    The defaults are the reference's testing (10 rounds, stop at DSC 0.99, margin 20, 0.5),
    except the fusion rule: the reference thresholds the mean of the planes (``"mean"``), the
    default here is the 2-of-3 vote (``"majority"``).

    Attributes:
        rounds: maximum number of fine rounds ``R`` (0 = coarse only).
        stop_dsc: stop at the first fine round whose inter-round DSC reaches this, in (0, 1].
        margin: box margin in pixels on every side, >= 0.
        threshold: probability threshold of a plane mask / of the mean, in (0, 1).
        fusion: ``"majority"`` (more than half of the planes' masks) or ``"mean"`` (mean
            probability >= threshold).
        batch_size: stacks per network call, >= 1; ``None`` (the default) picks by device: 8 on
            CUDA, 1 on the CPU, where batching is not faster and each full-size 512x512 stack adds
            about 0.4 GB of activations (see :meth:`batch_size_on`).
        amp: run the networks under ``torch.autocast("cuda")`` on a CUDA device; ignored on the
            CPU, which always runs float32.
        cleanup: apply :func:`keep_large_components` to every fine round's fused mask.
        keep_round_masks: return every round's mask in :attr:`VolumePrediction.round_masks`
            (one uint8 volume per round).

    Raises:
        ConfigError: if a value is of the wrong type or out of range.
    """

    rounds: int = 10
    stop_dsc: float = 0.99
    margin: int = 20
    threshold: float = 0.5
    fusion: str = "majority"
    batch_size: int | None = None
    amp: bool = True
    cleanup: bool = True
    keep_round_masks: bool = False

    def __post_init__(self) -> None:
        for name in ("rounds", "margin", "batch_size"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"InferenceConfig.{name} must be an integer, got {value!r}")
            setattr(self, name, int(value))
        if self.rounds < 0:
            raise ConfigError(f"InferenceConfig.rounds must be >= 0, got {self.rounds}")
        if self.margin < 0:
            raise ConfigError(f"InferenceConfig.margin must be >= 0, got {self.margin}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"InferenceConfig.batch_size must be >= 1, got {self.batch_size}")
        for name in ("stop_dsc", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise ConfigError(f"InferenceConfig.{name} must be a number, got {value!r}")
            setattr(self, name, float(value))
        if not 0.0 < self.stop_dsc <= 1.0:
            raise ConfigError(f"InferenceConfig.stop_dsc must be in (0, 1], got {self.stop_dsc}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"InferenceConfig.threshold must be in (0, 1), got {self.threshold}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"InferenceConfig.fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        for name in ("amp", "cleanup", "keep_round_masks"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"InferenceConfig.{name} must be True or False, got {getattr(self, name)!r}")

    def batch_size_on(self, device: str | torch.device) -> int:
        """Stacks per network call on ``device``: ``batch_size``, or by device when it is ``None``."""
        if self.batch_size is not None:
            return self.batch_size
        return 8 if torch.device(device).type == "cuda" else 1


@dataclass
class VolumePrediction:
    """Result of :class:`CoarseToFineInferer` for one volume.

    Attributes:
        mask: uint8 mask of the returned round, shape of the input volume: 0/1, or the classes
            0..C of models of C > 1 classes.
        probability: float32 fused probability of the returned round: the mean of the planes'
            probabilities (coarse for round 0, fine with skipped stacks as 0 afterwards); for
            C > 1 classes one volume per class, ``(C, I, J, K)``.
        rounds: one dict per round run, in order: ``round`` (0 = coarse), ``voxels`` (mask
            size), ``inter_round_dsc`` (DSC with the previous round's mask; ``None`` for round
            0), ``seconds`` (wall time of the round) and, only when a truth was given, ``dsc``.
        stopped_round: the round whose mask is returned.
        round_masks: every round's uint8 mask when ``keep_round_masks`` is set, else ``None``.
    """

    mask: np.ndarray
    probability: np.ndarray
    rounds: list[dict[str, Any]] = field(default_factory=list)
    stopped_round: int = 0
    round_masks: list[np.ndarray] | None = None


def _bounding_slices(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box of the non-zero voxels as slices, ``None`` if there are none."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=others))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def keep_large_components(mask: np.ndarray) -> np.ndarray:
    """Keeps every 6-connected component at least half as large as the largest one.

    The reference's post-processing: it removes small islands far from the organ but keeps a
    pancreas split in two comparable pieces. Skipped (mask returned as is) when the mask is
    empty or covers at least half of the volume, where components are meaningless.

    Args:
        mask: 3D binary mask; non-zero = organ.

    Returns:
        A new uint8 (0/1) mask of the same shape.

    Raises:
        GridMismatchError: if the mask is not 3D.
    """
    binary = np.asarray(mask) != 0
    if binary.ndim != 3:
        raise GridMismatchError(f"keep_large_components expects a 3D mask, got shape {binary.shape}")
    out = binary.view(np.uint8)
    voxels = int(np.count_nonzero(binary))
    if voxels == 0 or 2 * voxels >= binary.size:
        return out
    # Labelling only the bounding box keeps the int32 label array small.
    box = _bounding_slices(binary)
    assert box is not None
    labels, n = ndimage.label(binary[box], structure=ndimage.generate_binary_structure(3, 1))
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = 2 * sizes >= int(sizes.max())
        keep[0] = False
        out[box] = keep[labels]
    return out


def keep_large_class_components(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """:func:`keep_large_components` applied to each class of a label map (0..C) on its own.

    Returns:
        A new uint8 label map; a removed island becomes background.
    """
    if num_classes == 1:
        return keep_large_components(labels)
    out = np.zeros(np.shape(labels), dtype=np.uint8)
    for value in range(1, num_classes + 1):
        out[keep_large_components(labels == value).view(np.bool_)] = value
    return out


class _PlaneStacks:
    """The per-class :class:`StackAccumulator` of one plane: (B, 3C, H, W) stacks in, (C, ...) volumes out.

    With one class, the one accumulator's volume (no class axis), exactly as a binary RSTN's.
    """

    def __init__(self, plane: str, shape: tuple[int, ...], num_classes: int) -> None:
        self.accumulators = [StackAccumulator(plane, shape) for _ in range(num_classes)]

    def add(self, positions: np.ndarray, probability: np.ndarray) -> None:
        if len(self.accumulators) == 1:
            self.accumulators[0].add(positions, probability)
            return
        for index, accumulator in enumerate(self.accumulators):
            accumulator.add(positions, probability[:, 3 * index : 3 * index + 3])

    def result(self, skipped_as_zero: bool = False) -> np.ndarray:
        volumes = [np.asarray(a.result(skipped_as_zero=skipped_as_zero), dtype=np.float32) for a in self.accumulators]
        return volumes[0] if len(volumes) == 1 else np.stack(volumes)


def _batches(positions: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, positions.size, batch_size):
        yield positions[start : start + batch_size]


def _stack_batch(volume: np.ndarray, plane: str, positions: np.ndarray) -> np.ndarray:
    """The 3-slice stacks of ``volume`` at ``positions`` as one ``(B, 3, H, W)`` array; a
    ``(C, I, J, K)`` volume of class maps gives ``(B, 3C, H, W)``, class-major."""
    if volume.ndim == 4:
        return np.concatenate([_stack_batch(channel, plane, positions) for channel in volume], axis=1)
    return np.stack([slice_stack(volume, plane, int(p)) for p in positions])


def _active_positions(mask: np.ndarray, plane: str) -> np.ndarray:
    """Stack positions of a plane whose 3 slices hold at least one mask voxel."""
    axis = plane_axis(plane)
    others = tuple(a for a in range(3) if a != axis)
    slice_hit = mask.any(axis=others)
    stack_hit = slice_hit.copy()
    stack_hit[1:] |= slice_hit[:-1]  # slice j - 1
    stack_hit[:-1] |= slice_hit[1:]  # slice j + 1
    return np.flatnonzero(stack_hit)


class CoarseToFineInferer:
    """RSTN test-time inference of a whole volume with 1 to 3 planes.

    Args:
        models: plane models keyed ``"X"``, ``"Y"``, ``"Z"`` (1 to 3 of them, any case): RSTNs or
            anything with RSTN's ``coarse_probability`` and ``fine_probability``. Modules are
            moved to ``device`` (in place) and run in eval mode; their training flag is restored
            after each call.
        config: the :class:`InferenceConfig`.
        device: where the networks run; batches go there and come back as CPU numpy.
        progress: optional callable receiving each round's record (the dicts of
            :attr:`VolumePrediction.rounds`) as soon as the round is done; rounds are also
            logged at INFO level.

    Raises:
        ConfigError: on no model, more than 3, an unknown or repeated plane, a model without
            the two methods, or a config that is not an :class:`InferenceConfig`.
    """

    def __init__(
        self,
        models: Mapping[str, PlaneModel],
        config: InferenceConfig | None = None,
        device: str | torch.device = "cpu",
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = InferenceConfig() if config is None else config
        if not isinstance(self.config, InferenceConfig):
            raise ConfigError(f"config must be an InferenceConfig, got {type(self.config).__name__}")
        if not isinstance(models, Mapping) or not 1 <= len(models) <= 3:
            raise ConfigError("models must map 1 to 3 of the planes X, Y, Z to a model")
        by_plane: dict[str, PlaneModel] = {}
        for key, model in models.items():
            plane = PLANES[plane_axis(key)]
            if plane in by_plane:
                raise ConfigError(f"plane {plane} is given more than once")
            methods = (getattr(model, "coarse_probability", None), getattr(model, "fine_probability", None))
            if not all(callable(m) for m in methods):
                raise ConfigError(f"the model of plane {plane} has no coarse_probability/fine_probability")
            by_plane[plane] = model
        # Fixed X, Y, Z order: the float sums of the fusion do not depend on the mapping's order.
        self.models = {p: by_plane[p] for p in PLANES if p in by_plane}
        counts = {plane: int(getattr(model, "num_classes", 1)) for plane, model in self.models.items()}
        if len(set(counts.values())) > 1:
            raise ConfigError(f"the plane models segment different numbers of classes: {counts}")
        #: C, the classes the models segment (1: an organ mask).
        self.num_classes = next(iter(counts.values()))
        self.device = torch.device(device)
        self.batch_size = self.config.batch_size_on(self.device)
        for model in self.models.values():
            if isinstance(model, torch.nn.Module):
                model.to(self.device)
        self.progress = progress

    @property
    def planes(self) -> tuple[str, ...]:
        """The planes inferred, in X, Y, Z order."""
        return tuple(self.models)

    # -- helpers --------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda")
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        modules = [m for m in self.models.values() if isinstance(m, torch.nn.Module)]
        flags = [m.training for m in modules]
        try:
            for m in modules:
                m.eval()
            with torch.inference_mode(), self._autocast():
                yield
        finally:
            for m, flag in zip(modules, flags, strict=True):
                m.train(flag)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    @staticmethod
    def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().float().cpu().numpy()

    def _check_volume(self, volume: np.ndarray) -> np.ndarray:
        if not isinstance(volume, np.ndarray):
            raise ImageReadError(f"the volume must be a numpy array, got {type(volume).__name__}")
        if volume.ndim != 3 or min(volume.shape) < 1:
            raise ImageReadError(f"the volume must be a non-empty 3D (I, J, K) array, got shape {volume.shape}")
        volume = np.asarray(volume, dtype=np.float32)  # no copy when already float32
        lo, hi = float(volume.min()), float(volume.max())
        # Also catches NaN, which fails every comparison.
        if not (lo >= -_RANGE_TOLERANCE and hi <= 1.0 + _RANGE_TOLERANCE):
            raise ImageReadError(
                f"the volume must be HU-windowed to [0, 1] (see atso_med.transforms.intensity), "
                f"got values in [{lo}, {hi}]"
            )
        return volume

    # -- rounds ---------------------------------------------------------------------------------

    def coarse_round(self, volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Round 0 alone: every plane's coarse pass over all its stacks, then plane fusion.

        Args:
            volume: (I, J, K) volume in [0, 1].

        Returns:
            ``(mask, probability)``: uint8 fused mask and float32 mean of the planes.

        Raises:
            ImageReadError: if the volume is not a 3D numpy array with values in [0, 1].
        """
        return self._coarse_round(self._check_volume(volume))

    def fine_round(self, volume: np.ndarray, score_map: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One fine round alone: fine passes where ``mask`` is non-empty, fusion, clean-up.

        Args:
            volume: (I, J, K) volume in [0, 1].
            score_map: previous fused probability (the saliency source), same shape (``(C, I, J, K)``
                for C > 1 classes).
            mask: previous mask or label map (the box source: any class), same shape as the volume.

        Returns:
            ``(mask, probability)``: uint8 fused (and cleaned, if configured) mask and float32
            mean of the planes' fine probabilities (skipped stacks count as 0).

        Raises:
            ImageReadError: if the volume is not a 3D numpy array with values in [0, 1].
            GridMismatchError: if the score map or the mask does not have the volume's shape.
        """
        volume = self._check_volume(volume)
        score_shape = volume.shape if self.num_classes == 1 else (self.num_classes, *volume.shape)
        for name, other, expected in (("score_map", score_map, score_shape), ("mask", mask, volume.shape)):
            if tuple(np.shape(other)) != expected:
                raise GridMismatchError(f"{name} shape {tuple(np.shape(other))} differs from the expected {expected}")
        return self._fine_round(volume, np.asarray(score_map, dtype=np.float32), np.asarray(mask) != 0)

    def _fusion(self) -> PlaneFusion:
        num_classes = None if self.num_classes == 1 else self.num_classes
        return PlaneFusion(self.config.fusion, self.config.threshold, num_classes=num_classes)

    def _agreement(self, a: np.ndarray, b: np.ndarray) -> float:
        """DSC of two masks, or the mean over the classes of two label maps."""
        return dice_score(a, b) if self.num_classes == 1 else mean_class_dice(a, b, self.num_classes)

    def _coarse_round(self, volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fusion = self._fusion()
        with self._eval_mode():
            for plane, model in self.models.items():
                acc = _PlaneStacks(plane, volume.shape, self.num_classes)
                for positions, batch in iter_stacks(volume, plane, self.batch_size):
                    prob = model.coarse_probability(self._to_device(batch))
                    acc.add(positions, self._to_numpy(prob))
                fusion.add(acc.result(), owned=True)
                del acc  # release the plane before the next one is accumulated
        return fusion.result()

    def _fine_round(self, volume: np.ndarray, score_map: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`fine_round` on checked inputs; ``prev`` is the previous mask (any class) as bool."""
        cfg = self.config
        fusion = self._fusion()
        with self._eval_mode():
            for plane, model in self.models.items():
                acc = _PlaneStacks(plane, volume.shape, self.num_classes)
                for positions in _batches(_active_positions(prev, plane), self.batch_size):
                    prob = model.fine_probability(
                        self._to_device(_stack_batch(volume, plane, positions)),
                        self._to_device(_stack_batch(score_map, plane, positions)),
                        self._to_device(_stack_batch(prev, plane, positions)),
                        margin=cfg.margin,
                    )
                    acc.add(positions, self._to_numpy(prob))
                fusion.add(acc.result(skipped_as_zero=True), owned=True)
                del acc
        fused, probability = fusion.result()
        if cfg.cleanup:
            fused = keep_large_class_components(fused, self.num_classes)
        return fused, probability

    # -- whole volume ---------------------------------------------------------------------------

    def _record(self, record: dict[str, Any]) -> None:
        dsc = record.get("inter_round_dsc")
        logger.info(
            "round %d: %d voxels, inter-round DSC %s, %.2f s%s",
            record["round"],
            record["voxels"],
            "-" if dsc is None else f"{dsc:.4f}",
            record["seconds"],
            f", DSC {record['dsc']:.4f}" if "dsc" in record else "",
        )
        if self.progress is not None:
            self.progress(dict(record))

    def __call__(self, volume: np.ndarray, truth: np.ndarray | None = None) -> VolumePrediction:
        """Segments one volume.

        Args:
            volume: (I, J, K) CT volume already HU-windowed to [0, 1] (any float dtype;
                converted to float32 once).
            truth: optional ground-truth mask of the same shape (non-zero = organ); each
                round's DSC against it is recorded.

        Returns:
            The :class:`VolumePrediction` of the round where inference stopped.

        Raises:
            ImageReadError: if the volume is not a 3D numpy array with values in [0, 1].
            GridMismatchError: if ``truth`` does not have the volume's shape.
        """
        cfg = self.config
        volume = self._check_volume(volume)
        if truth is not None and tuple(np.shape(truth)) != volume.shape:
            raise GridMismatchError(f"truth shape {tuple(np.shape(truth))} differs from the volume's {volume.shape}")

        def record(r: int, mask: np.ndarray, previous: np.ndarray | None, seconds: float) -> dict[str, Any]:
            rec: dict[str, Any] = {
                "round": r,
                "voxels": int(np.count_nonzero(mask)),
                "inter_round_dsc": None if previous is None else self._agreement(previous, mask),
                "seconds": seconds,
            }
            if truth is not None:
                rec["dsc"] = self._agreement(mask, truth)
            return rec

        start = time.perf_counter()
        mask, probability = self._coarse_round(volume)
        records = [record(0, mask, None, time.perf_counter() - start)]
        self._record(records[-1])
        round_masks = [mask] if cfg.keep_round_masks else None

        r = 0
        # An empty mask has no box to refine: every later round would be empty too.
        while r < cfg.rounds and records[-1]["voxels"] > 0:
            r += 1
            start = time.perf_counter()
            # A mask made here is 0/1 uint8: a bool view costs no copy (a label map needs one).
            organ = mask.view(np.bool_) if self.num_classes == 1 else mask != 0
            new_mask, new_probability = self._fine_round(volume, probability, organ)
            records.append(record(r, new_mask, mask, time.perf_counter() - start))
            self._record(records[-1])
            mask, probability = new_mask, new_probability  # the previous round is released here
            if round_masks is not None:
                round_masks.append(mask)
            if records[-1]["voxels"] == 0 or records[-1]["inter_round_dsc"] >= cfg.stop_dsc:
                break
        return VolumePrediction(
            mask=mask, probability=probability, rounds=records, stopped_round=r, round_masks=round_masks
        )


def estimate_peak_host_bytes(shape: Sequence[int], kept_round_masks: int = 0) -> int:
    """Estimated peak host bytes of the volumes the inferer holds (networks not included).

    The peak is inside a fine round: four float32 volumes (input, previous score map, plane
    accumulator, plane sum) and three one-byte ones (previous mask, votes, a boolean
    temporary), plus one uint8 volume per kept round mask. A batch of stacks and the clean-up's
    labels (bounding box of the mask only) are small next to these; the networks are not
    counted.

    Args:
        shape: the volume shape.
        kept_round_masks: number of round masks kept (``keep_round_masks``).

    Returns:
        Bytes.
    """
    voxels = math.prod(int(s) for s in shape)
    return voxels * (4 * 4 + 3 + int(kept_round_masks))
