"""Soft Dice losses of RSTN.

The reference computes one soft Dice per sample over all 3 channels x H x W together,
``1 - (2 sum(p g) + eps) / (sum p + sum g + eps)`` with ``eps = 1e-6``, on the coarse
probabilities and on the uncropped fine ones, and trains on ``1/3 coarse + 2/3 fine``. Training
from random weights adds binary cross-entropy to each term (nnU-Net's Dice + CE): Dice alone gives
a weak, noisy gradient while the prediction of a small organ is still nearly empty.

A network of several classes (``num_classes = C > 1``, outputs class-major as
:class:`~atso_med.networks.rstn.RSTN` orders them) gets one soft Dice per sample and class, over
that class's channels x H x W, averaged over the classes: a small organ counts as much as the
liver, where one Dice over all channels together would be dominated by the largest organ. The
cross-entropy stays the mean over every channel. With ``C = 1`` both are the single-organ losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from atso_med.errors import ConfigError
from atso_med.flags import as_count

__all__ = ["RSTNLoss", "SoftDiceLoss", "probability_bce"]

#: Probabilities are clamped this far from 0 and 1 before the logarithm of the cross-entropy.
_BCE_CLAMP = 1e-6


def probability_bce(
    probability: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities, in float32 (safe under CUDA autocast).

    RSTN returns probabilities (its fine half is 0 outside the box), so the cross-entropy is taken
    on them rather than on logits; torch's own ``binary_cross_entropy`` is refused inside autocast.

    Args:
        probability: probabilities in [0, 1].
        target: ground truth of the same shape.
        weight: optional 0/1 weights of the same shape: the mean is taken over the weighted elements.

    Returns:
        Scalar mean cross-entropy.
    """
    return _mean(_bce_terms(probability, target).flatten(), None if weight is None else weight.flatten())


def _bce_terms(probability: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of every element, in float32."""
    p = probability.float().clamp(_BCE_CLAMP, 1.0 - _BCE_CLAMP)
    g = target.to(p.dtype)
    return -(g * p.log() + (1.0 - g) * (1.0 - p).log())


def _per_sample_bce(
    probability: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`probability_bce` of each sample: (B,)."""
    return _mean(_bce_terms(probability, target).flatten(1), None if weight is None else weight.flatten(1))


def _mean(terms: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The mean over the last axis, of the weighted elements only when there are 0/1 weights."""
    if weight is None:
        return terms.mean(-1)
    weight = weight.to(terms.dtype)
    return (terms * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


class SoftDiceLoss(nn.Module):
    """Per-sample (and per-class) soft Dice loss, averaged over the classes and the batch.

    With one class the Dice of a sample is taken over every non-batch dimension; with
    ``num_classes = C`` the channels are split into C equal class-major groups and each group
    (its channels x H x W) has its own Dice. Voxels of weight 0 (a pseudo label's uncertain
    voxels) count neither in the prediction's sum nor in the target's.

    Args:
        eps: smoothing added to numerator and denominator (an empty prediction of an empty
            target then scores a loss of 0).
        num_classes: class groups of the channel axis.

    Raises:
        ConfigError: if ``eps`` is negative or ``num_classes`` is not an integer >= 1.
    """

    def __init__(self, eps: float = 1e-6, num_classes: int = 1) -> None:
        super().__init__()
        if not float(eps) >= 0.0:
            raise ConfigError(f"SoftDiceLoss eps must be >= 0, got {eps!r}")
        self.eps = float(eps)
        self.num_classes = as_count(num_classes, "num_classes")

    def forward(
        self, probability: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Computes the loss.

        Args:
            probability: probabilities in [0, 1], (B, K, ...) with K a multiple of ``num_classes``.
            target: ground truth of the same shape (binary; any numeric or bool dtype).
            weight: optional 0/1 voxel weights of the same shape.

        Returns:
            Scalar loss (float32, or float64 for float64 input): mean over the batch and the
            classes of ``1 - soft Dice``.

        Raises:
            ValueError: if the shapes differ, there is no batch dimension, or the channels do not
                split into ``num_classes`` groups.
        """
        if probability.shape != target.shape or probability.ndim < 2:
            raise ValueError(
                f"SoftDiceLoss expects equal (B, ...) shapes, got {tuple(probability.shape)} and {tuple(target.shape)}"
            )
        if weight is not None and weight.shape != target.shape:
            raise ValueError(
                f"SoftDiceLoss weights of shape {tuple(weight.shape)} differ from the target's {tuple(target.shape)}"
            )
        if probability.shape[1] % self.num_classes:
            raise ValueError(
                f"SoftDiceLoss of {self.num_classes} classes needs a multiple of {self.num_classes} channels, "
                f"got shape {tuple(probability.shape)}"
            )
        return self.per_sample(probability, target, weight).mean()

    def per_sample(
        self, probability: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``1 - soft Dice`` of each sample, averaged over its classes: (B,). Inputs as :meth:`forward`."""
        # At least float32 sums: half precision overflows on a 512x512x3 sum.
        p = probability if probability.dtype == torch.float64 else probability.float()
        # (B, classes, everything of one class): the channels are class-major.
        p = p.reshape(p.shape[0], self.num_classes, -1)
        g = target.to(p.dtype).reshape(p.shape)
        if weight is not None:
            w = weight.to(p.dtype).reshape(p.shape)
            p, g = p * w, g * w
        dice = (2.0 * (p * g).sum(2) + self.eps) / (p.sum(2) + g.sum(2) + self.eps)
        return (1.0 - dice).mean(1)


class RSTNLoss(nn.Module):
    """Weighted sum of the coarse and fine soft Dice losses of an RSTN output.

    Usable directly as MONAI's ``SupervisedTrainer(loss_function=...)``: it is called as
    ``loss(y_pred, y)`` with ``y_pred`` what ``RSTN`` returns (coarse and fine probabilities
    stacked on channels), an :class:`~atso_med.networks.rstn.RSTNOutput`, or any object or
    mapping with ``coarse`` and ``fine`` probabilities.
    The parts of the last call are kept, detached, in :attr:`last_parts`.

    Args:
        coarse_weight: weight of the coarse loss (1/3 in the paper).
        fine_weight: weight of the fine loss (2/3 in the paper).
        eps: soft Dice smoothing.
        bce_weight: weight of the binary cross-entropy added to each part's Dice (0 in the paper).
        num_classes: classes of the network (its channels are class-major); the Dice is per class.
        class_groups: merged groups of the classes (per group its classes, 1-based; every class in
            exactly one group). The label then carries one more channel, last, that marks each
            sample labelled at the groups (:func:`~atso_med.data.slices.group_channels`, the
            paper's class reduction): for those the classes' probabilities are summed per group
            (at most 1) and scored against the groups; the other samples keep the per-class loss.
        voxel_weights: the label carries, after its own channels (and before the group marker), as
            many channels of 0/1 voxel weights (``weight`` of
            :class:`~atso_med.data.SliceStackDataset`): voxels of weight 0, a pseudo label's
            uncertain ones, are left out of every Dice and cross-entropy.

    Raises:
        ConfigError: if a weight is negative, both part weights are zero, ``num_classes`` is not
            an integer >= 1, or the groups do not hold every class exactly once.
    """

    def __init__(
        self,
        coarse_weight: float = 1.0 / 3.0,
        fine_weight: float = 2.0 / 3.0,
        eps: float = 1e-6,
        bce_weight: float = 0.0,
        num_classes: int = 1,
        class_groups: Sequence[Sequence[int]] | None = None,
        voxel_weights: bool = False,
    ) -> None:
        super().__init__()
        self.voxel_weights = bool(voxel_weights)
        if not (float(coarse_weight) >= 0.0 and float(fine_weight) >= 0.0) or coarse_weight + fine_weight == 0:
            raise ConfigError(f"RSTNLoss weights must be >= 0 and not both 0, got {coarse_weight!r}, {fine_weight!r}")
        if not float(bce_weight) >= 0.0:
            raise ConfigError(f"RSTNLoss bce_weight must be >= 0, got {bce_weight!r}")
        self.coarse_weight = float(coarse_weight)
        self.fine_weight = float(fine_weight)
        self.bce_weight = float(bce_weight)
        self.dice = SoftDiceLoss(eps, num_classes)
        self.class_groups = None
        if class_groups is not None:
            self.class_groups = [tuple(int(c) for c in group) for group in class_groups]
            members = sorted(c for group in self.class_groups for c in group)
            if members != list(range(1, self.dice.num_classes + 1)):
                raise ConfigError(
                    f"class_groups must hold each of the classes 1..{self.dice.num_classes} exactly once, "
                    f"got {self.class_groups}"
                )
            self.group_dice = SoftDiceLoss(eps, len(self.class_groups))
        self.last_parts: dict[str, torch.Tensor] = {}

    @staticmethod
    def _get(output: Any, name: str) -> torch.Tensor:
        if isinstance(output, torch.Tensor):  # RSTN.forward's stacked form: coarse channels, then fine
            if output.ndim < 2 or output.shape[1] % 2:
                raise ValueError(f"a stacked RSTN output needs an even channel count, got shape {tuple(output.shape)}")
            coarse, fine = output.chunk(2, dim=1)
            return coarse if name == "coarse" else fine
        if isinstance(output, dict):
            if name in output:
                return output[name]
        elif hasattr(output, name):
            return getattr(output, name)
        raise ValueError(f"RSTNLoss expects an RSTNOutput (with .coarse and .fine), got {type(output).__name__}")

    def components(self, output: Any, label: torch.Tensor) -> dict[str, torch.Tensor]:
        """All parts of the loss, with gradients.

        Args:
            output: an RSTNOutput (or anything with ``coarse``/``fine`` probabilities).
            label: ground truth (B, K, H, W), class-major one-hot for several classes; with one class
                a (B, 1, H, W) label is broadcast over the channels.

        Returns:
            ``{"coarse": ..., "fine": ..., "total": ...}`` scalar tensors.

        Raises:
            ValueError: on a malformed output or mismatched shapes.
        """
        coarse = self._get(output, "coarse")
        fine = self._get(output, "fine")
        grouped = None
        if self.class_groups is not None:
            grouped = label[:, -1].flatten(1).amax(1) > 0.5
            label = label[:, :-1]
        weight = None
        if self.voxel_weights:
            if label.ndim < 2 or label.shape[1] % 2:
                raise ValueError(f"a label with voxel weights needs an even channel count, got {tuple(label.shape)}")
            label, weight = label.chunk(2, dim=1)
        if grouped is not None:
            parts = {
                name: self._mixed_level(self._get(output, name), label, grouped, weight) for name in ("coarse", "fine")
            }
        else:
            if (
                self.dice.num_classes == 1
                and label.ndim == coarse.ndim
                and label.shape[1] == 1
                and coarse.shape[1] != 1
            ):
                label = label.expand_as(coarse)
                weight = None if weight is None else weight.expand_as(coarse)
            parts = {"coarse": self.dice(coarse, label, weight), "fine": self.dice(fine, label, weight)}
            if self.bce_weight:
                parts["coarse"] = parts["coarse"] + self.bce_weight * probability_bce(coarse, label, weight)
                parts["fine"] = parts["fine"] + self.bce_weight * probability_bce(fine, label, weight)
        parts["total"] = self.coarse_weight * parts["coarse"] + self.fine_weight * parts["fine"]
        return parts

    def _mixed_level(
        self, probability: torch.Tensor, label: torch.Tensor, grouped: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-class loss for samples labelled at the classes, per-group loss for those labelled at the groups."""
        per_class = self.dice.per_sample(probability, label, weight)
        group_probability, group_label = self._to_groups(probability), self._to_groups(label, reduce="max")
        group_weight = None if weight is None else self._to_groups(weight, reduce="max")
        per_group = self.group_dice.per_sample(group_probability, group_label, group_weight)
        if self.bce_weight:
            per_class = per_class + self.bce_weight * _per_sample_bce(probability, label, weight)
            per_group = per_group + self.bce_weight * _per_sample_bce(group_probability, group_label, group_weight)
        return torch.where(grouped, per_group, per_class).mean()

    def _to_groups(self, channels: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
        """Class-major channels (B, C * S, H, W) to group-major ones (B, G * S, H, W): summed (at most 1) or max."""
        b, k = channels.shape[:2]
        by_class = channels.float().reshape(b, self.dice.num_classes, k // self.dice.num_classes, *channels.shape[2:])
        groups = []
        for members in self.class_groups:
            picked = by_class[:, [c - 1 for c in members]]
            groups.append(picked.sum(1).clamp(max=1.0) if reduce == "sum" else picked.amax(1))
        return torch.cat(groups, dim=1)

    def forward(self, output: Any, label: torch.Tensor) -> torch.Tensor:
        """Total loss ``coarse_weight * L(coarse) + fine_weight * L(fine)``, ``L = Dice + bce_weight * BCE``.

        Args:
            output: an RSTNOutput.
            label: ground truth, as :meth:`components` takes it.

        Returns:
            The scalar total loss (differentiable); the parts go to :attr:`last_parts`.

        Raises:
            ValueError: on a malformed output or mismatched shapes.
        """
        parts = self.components(output, label)
        self.last_parts = {k: v.detach() for k, v in parts.items()}
        return parts["total"]
