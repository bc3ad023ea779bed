"""RSTN: recurrent saliency transformation network (coarse FCN-8s -> saliency -> fine FCN-8s).

A coarse FCN-8s segments the whole image; its sigmoid probabilities pass through a small
saliency transformation module whose output multiplies the image; a fine FCN-8s (no weight
sharing) segments the bounding box of a mask plus a margin, at native resolution, and its
logits are pasted back into a full-size canvas that is very negative outside the box.

Boxes are ``(top, bottom, left, right)`` with ``top``/``left`` inclusive and
``bottom``/``right`` exclusive, so a box's crop is ``x[..., top:bottom, left:right]``.

Several organs at once (``num_classes = C > 1``): each half predicts ``C x in_channels`` outputs,
class-major (channels ``c * in_channels`` to ``(c + 1) * in_channels - 1`` are the slices of class
``c + 1``), each with its own sigmoid by default: one-vs-rest, so the classes' maps are independent of
each other; ``class_activation="softmax"`` makes them compete instead
(:mod:`~atso_med.networks.activation`, what class reduction needs). The saliency module reads all ``C x in_channels`` coarse
probabilities and returns ``in_channels`` maps, one per input slice, that multiply the image.
There is one fine pass whatever C: its box is that of the union of the classes' foreground (the
label in modes S and I, the coarse prediction >= 0.5 of any class in J). A pass per class, each in
its own box, would cost C fine passes per stack in training and at test time; the organs of one
abdominal slice lie close together, so their union box is not much larger than the largest
organ's, and the fine half still sees the image at native resolution. The price is that a small
organ next to a large one is refined inside the large one's box instead of a tight crop of its own.
With ``C = 1`` the network, its initialisation and every output are those of the single-organ
RSTN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from atso_med.errors import ConfigError
from atso_med.flags import as_count
from atso_med.networks.activation import check_class_activation, class_probabilities
from atso_med.networks.boxes import DEFAULT_MARGIN, box_from_mask, equalize_boxes
from atso_med.networks.fcn import FCN8s, named_generator
from atso_med.networks.scriptable import ScriptableRSTN
from atso_med.networks.unet import UNet2d

__all__ = [
    "BACKBONES",
    "FILL_LOGIT",
    "MODES",
    "RSTN",
    "RSTNOutput",
    "SaliencyTransform",
]

#: Logit outside the fine box: sigmoid (and softmax) give exactly 0 in float32, and the value is
#: representable in float16/bfloat16 so AMP cannot turn it into -inf/NaN.
FILL_LOGIT = -1.0e4
#: The networks each half of an RSTN can be: the paper's FCN-8s, or a U-Net that trains from scratch.
BACKBONES = ("fcn8s", "unet")
#: Training / inference modes: S (box from label, raw image), I (box from label, image x
#: saliency), J (box from the coarse prediction, image x saliency).
MODES = ("S", "I", "J")


class RSTNOutput(NamedTuple):
    """What :meth:`RSTN.forward` returns.

    Attributes:
        coarse: coarse probabilities (sigmoid or softmax), float32, (B, K, H, W) with ``K = in_channels * num_classes``.
        fine: fine probabilities (sigmoid or softmax), float32, (B, K, H, W); 0 outside each box.
        boxes: int64 (B, 4) boxes ``(top, bottom, left, right)`` the fine FCN saw.
    """

    coarse: torch.Tensor
    fine: torch.Tensor
    boxes: torch.Tensor

    def stacked(self) -> torch.Tensor:
        """Coarse and fine probabilities concatenated on the channel axis: (B, 2K, H, W)."""
        return torch.cat([self.coarse, self.fine], dim=1)


class SaliencyTransform(nn.Module):
    """Saliency transformation: conv 3x3 -> ReLU -> conv 5x5, no final activation.

    The first conv reads the probabilities of every class (``channels * num_classes`` inputs) and
    both convs have ``channels`` outputs, one map per input slice. Initialised so that the map
    starts as a per-channel constant: the first conv is Xavier-normal with bias 1, the second has
    zero weights and biases spread evenly over [1.0, 2.0] (exactly (1.0, 1.5, 2.0) for 3 channels).

    Args:
        channels: output channels (one per input slice).
        num_classes: classes whose probabilities come in (``channels`` each, class-major).

    Raises:
        ConfigError: if ``channels < 1`` or ``num_classes < 1``.
    """

    def __init__(self, channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()
        if int(channels) < 1:
            raise ConfigError(f"SaliencyTransform needs >= 1 channel, got {channels!r}")
        self.channels = int(channels)
        self.num_classes = as_count(num_classes, "SaliencyTransform num_classes")
        self.conv1 = nn.Conv2d(self.channels * self.num_classes, self.channels, 3, padding=1)
        self.conv2 = nn.Conv2d(self.channels, self.channels, 5, padding=2)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None, prefix: str = "") -> None:
        """Applies the reference initialisation.

        Args:
            seed: seeds the Xavier draw of ``conv1.weight`` through its own generator;
                ``None`` uses the global RNG.
            prefix: prepended to the parameter name for the per-parameter seed.
        """
        if self.conv1.weight.is_meta:
            return
        gen = None if seed is None else named_generator(seed, f"{prefix}conv1.weight")
        nn.init.xavier_normal_(self.conv1.weight, generator=gen)
        nn.init.ones_(self.conv1.bias)
        nn.init.zeros_(self.conv2.weight)
        self.conv2.bias.copy_(torch.linspace(1.0, 2.0, self.channels) if self.channels > 1 else torch.ones(1))

    def forward(self, probability: torch.Tensor) -> torch.Tensor:
        """Maps probabilities (B, channels * num_classes, H, W) to a saliency map (B, channels, H, W).

        Args:
            probability: coarse probabilities or a fused score map, class-major.

        Returns:
            The saliency map (B, channels, H, W).
        """
        return self.conv2(F.relu(self.conv1(probability)))


class RSTN(nn.Module):
    """Recurrent saliency transformation network (Yu et al., CVPR 2018).

    Two segmentation networks (``coarse`` and ``fine``, same layout, no weight sharing) and a
    :class:`SaliencyTransform` (``saliency``). The network predicts one output per input channel
    and class (the reference feeds 3 adjacent slices and predicts all 3 for its one organ), with a
    sigmoid per output; see the module's description for several classes.

    Each half is a ``backbone``: ``"fcn8s"``, the paper's FCN-8s (at full size 268,555,786
    parameters in all: 268,550,602 trainable plus 2 x 2,592 frozen bilinear decoder weights),
    which learns only from pretrained weights; or ``"unet"``, a normalised 2D U-Net
    (:class:`~atso_med.networks.unet.UNet2d`) that trains from random weights. Construction gives
    a random initialisation from the global RNG; use
    :func:`atso_med.networks.initialization.initialize_rstn` for a seeded one or for weights from a local file.

    Args:
        width: FCN-8s trunk width multiplier (1.0 = VGG16).
        fc_channels: FCN-8s channels of fc6/fc7 (4096 in the paper).
        dropout: FCN-8s: dropout after fc6 and fc7; U-Net: dropout inside each block.
        in_channels: input slices per sample = outputs per sample and class (3 in the paper).
        backbone: ``"fcn8s"`` or ``"unet"``.
        channels: U-Net channels per level (see :class:`~atso_med.networks.unet.UNet2d`).
        strides: U-Net downsampling factors between levels.
        num_res_units: U-Net residual units per block.
        norm: U-Net normalisation, ``"batch"`` or ``"instance"``.
        num_classes: organs segmented at once (C); the halves have ``in_channels * C`` outputs.
        class_activation: ``"sigmoid"`` (one per output) or ``"softmax"`` (the classes of a pixel
            compete; the same for C = 1), see :mod:`~atso_med.networks.activation`.

    Raises:
        ConfigError: if the backbone is unknown or a size or probability is out of range.
    """

    def __init__(
        self,
        width: float = 1.0,
        fc_channels: int = 4096,
        dropout: float = 0.5,
        in_channels: int = 3,
        backbone: str = "fcn8s",
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 2,
        norm: str = "batch",
        num_classes: int = 1,
        class_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"unknown RSTN backbone {backbone!r}; expected one of {', '.join(BACKBONES)}")
        self.backbone = backbone
        self.width = width
        self.fc_channels = fc_channels
        self.in_channels = int(in_channels)
        self.num_classes = as_count(num_classes, "RSTN num_classes")
        self.class_activation = check_class_activation(class_activation)
        #: Outputs of each half: ``in_channels`` per class, class-major.
        self.out_channels = self.in_channels * self.num_classes
        out = self.out_channels

        def half() -> nn.Module:
            if backbone == "unet":
                return UNet2d(in_channels, out, channels, strides, num_res_units, norm=norm, dropout=dropout)
            return FCN8s(in_channels, out, width=width, fc_channels=fc_channels, dropout=dropout)

        self.coarse = half()
        self.fine = half()
        self.saliency = SaliencyTransform(in_channels, self.num_classes)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-initialises both halves randomly and the saliency module as the reference does.

        Args:
            seed: see :meth:`FCN8s.reset_parameters`; ``None`` uses the global RNG.
        """
        self.coarse.reset_parameters(seed, prefix="coarse.")
        self.fine.reset_parameters(seed, prefix="fine.")
        self.saliency.reset_parameters(seed, prefix="saliency.")

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script`` compiles in place of this module (and MONAI's ``ckpt_export`` saves).

        Returns:
            A :class:`~atso_med.networks.scriptable.ScriptableRSTN` sharing this network's modules: the
            inference passes (``forward(image)``, ``coarse_probability``, ``fine_probability``).
        """
        return ScriptableRSTN(self)

    # -- helpers -----------------------------------------------------------------------------

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return class_probabilities(logits, self.num_classes, self.class_activation == "softmax")

    def _check_image(self, image: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"RSTN expects images (B, {self.in_channels}, H, W), got {tuple(image.shape)}")

    def _check_mask(self, mask: torch.Tensor, image: torch.Tensor, what: str) -> None:
        b, _, h, w = image.shape
        allowed = sorted({1, self.in_channels, self.out_channels})
        if mask.ndim != 4 or mask.shape[0] != b or mask.shape[2:] != (h, w) or mask.shape[1] not in allowed:
            raise ValueError(
                f"{what} must be (B, {' or '.join(map(str, allowed))}, H, W) matching the image "
                f"{tuple(image.shape)}, got {tuple(mask.shape)}"
            )

    def _fine_canvas(
        self, fine_input: torch.Tensor, boxes: torch.Tensor, active: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Runs the fine FCN on each sample's box and pastes the logits into full-size canvases.

        Samples whose crops have the same size run together; the others one group at a time.
        Inactive samples get a canvas of :data:`FILL_LOGIT` and no computation.
        """
        batch, _, height, width = fine_input.shape
        box_list = boxes.detach().to("cpu").tolist()
        act = [True] * batch if active is None else [bool(a) for a in active.detach().to("cpu").tolist()]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (top, bottom, left, right) in enumerate(box_list):
            if act[i]:
                groups.setdefault((bottom - top, right - left), []).append(i)
        pieces: list[torch.Tensor | None] = [None] * batch
        for idx in groups.values():
            crops = torch.cat(
                [
                    fine_input[i : i + 1, :, box_list[i][0] : box_list[i][1], box_list[i][2] : box_list[i][3]]
                    for i in idx
                ]
            )
            logits = self.fine(crops)
            for k, i in enumerate(idx):
                top, bottom, left, right = box_list[i]
                # Constant padding is differentiable w.r.t. the crop, and keeps the fill value
                # in the logits' own dtype (half under AMP).
                pieces[i] = F.pad(logits[k : k + 1], (left, width - right, top, height - bottom), value=FILL_LOGIT)
        for i in range(batch):
            if pieces[i] is None:
                pieces[i] = fine_input.new_full((1, self.out_channels, height, width), FILL_LOGIT)
        return torch.cat(pieces)  # type: ignore[arg-type]

    # -- public API --------------------------------------------------------------------------

    def coarse_probability(self, image: torch.Tensor) -> torch.Tensor:
        """Coarse probabilities of whole images.

        Args:
            image: (B, in_channels, H, W) images.

        Returns:
            float32 probabilities (B, K, H, W), ``K = in_channels * num_classes``, class-major.

        Raises:
            ValueError: on a malformed image.
        """
        self._check_image(image)
        return self._probabilities(self.coarse(image))

    def fine_probability(
        self,
        image: torch.Tensor,
        score_map: torch.Tensor,
        mask: torch.Tensor,
        margin: int | Sequence[int] | torch.Tensor = DEFAULT_MARGIN,
    ) -> torch.Tensor:
        """Test-time fine pass: saliency from a score map, fine FCN in the box of a given mask.

        Args:
            image: (B, in_channels, H, W) images.
            score_map: coarse probabilities or the previous round's fused score map,
                (B, K, H, W) with ``K = in_channels * num_classes``; it feeds the saliency module.
            mask: the previous round's binary mask, (B, K, H, W), (B, in_channels, H, W) or
                (B, 1, H, W); its box (joint over channels, so over classes too) plus ``margin``
                is what the fine FCN sees.
            margin: pixels per side (int, 4 values or a (B, 4) tensor).

        Returns:
            float32 fine probabilities (B, K, H, W): 0 outside each box, and 0 everywhere
            for a sample whose mask is empty (that sample is not computed).

        Raises:
            ValueError: on malformed shapes.
            ConfigError: on malformed margins.
        """
        self._check_image(image)
        expected = (image.shape[0], self.out_channels, *image.shape[2:])
        if tuple(score_map.shape) != expected:
            raise ValueError(f"score_map must have the shape {expected}, got {tuple(score_map.shape)}")
        self._check_mask(mask, image, "mask")
        boxes = box_from_mask(mask, margin)
        active = (mask != 0).flatten(1).any(dim=1)
        fine_input = image * self.saliency(score_map.to(image.dtype))
        return self._probabilities(self._fine_canvas(fine_input, boxes, active))

    def forward(
        self,
        image: torch.Tensor,
        label: torch.Tensor | None = None,
        mode: str = "J",
        margins: int | Sequence[int] | torch.Tensor | None = None,
        equal_boxes: bool = False,
    ) -> torch.Tensor:
        """One coarse -> saliency -> fine pass, as one tensor.

        MONAI's engines, post-transforms and bundle checks handle plain tensors, so the module's
        call returns :meth:`RSTNOutput.stacked`: channels ``0..K-1`` are the coarse and
        ``K..2K-1`` the fine probabilities (``K = in_channels * num_classes``). Arguments as in
        :meth:`forward_parts`.

        Returns:
            (B, 2K, H, W) float32 probabilities.
        """
        return self.forward_parts(image, label, mode=mode, margins=margins, equal_boxes=equal_boxes).stacked()

    def forward_parts(
        self,
        image: torch.Tensor,
        label: torch.Tensor | None = None,
        mode: str = "J",
        margins: int | Sequence[int] | torch.Tensor | None = None,
        equal_boxes: bool = False,
    ) -> RSTNOutput:
        """One coarse -> saliency -> fine pass.

        Args:
            image: (B, in_channels, H, W) images.
            label: ground truth, (B, K, H, W) class-major one-hot (``K = in_channels *
                num_classes``), (B, in_channels, H, W) or (B, 1, H, W); its box is that of every
                non-zero channel together. Required in modes S and I, optional in J (the fallback
                box where the coarse prediction is empty).
            mode: ``"S"``: box from the label, fine input = raw image; ``"I"``: box from the
                label, fine input = image x saliency(coarse); ``"J"``: box from the coarse
                probabilities >= 0.5 (joint over channels, so the union of the classes), per
                sample falling back to the label and then to the whole image where empty;
                image x saliency(coarse).
            margins: per-side margins: an int, 4 values or a (B, 4) tensor (top, bottom,
                left, right); ``None`` = 20 on every side. Trainers pass
                :func:`sample_training_margins` to reproduce the reference's training.
            equal_boxes: grow every box to the batch's largest (:func:`equalize_boxes`), so the
                fine half sees the whole batch in one call instead of one call per box size. In
                training the margins are random anyway, and a wider box is one more draw of them;
                off by default, where every sample's result equals its result alone.

        Returns:
            :class:`RSTNOutput` with float32 coarse and fine probabilities and the boxes.

        Raises:
            ConfigError: on an unknown mode, a missing label in mode S/I, bad margins.
            ValueError: on malformed shapes.
        """
        mode_u = str(mode).upper()
        if mode_u not in MODES:
            raise ConfigError(f"unknown RSTN mode {mode!r}; expected one of {', '.join(MODES)}")
        self._check_image(image)
        if label is not None:
            self._check_mask(label, image, "label")
        elif mode_u in ("S", "I"):
            raise ConfigError(f"RSTN mode {mode_u} takes its box from the label, but no label was given")
        _batch, _, height, width = image.shape

        coarse_prob = self._probabilities(self.coarse(image))
        with torch.no_grad():
            if mode_u == "J":
                pred = coarse_prob >= 0.5
                has_pred = pred.flatten(1).any(dim=1)
                if label is not None:
                    gt = (label > 0.5).any(dim=1, keepdim=True).expand_as(pred)
                    mask = torch.where(has_pred[:, None, None, None], pred, gt)
                else:
                    mask = pred
            else:
                mask = label > 0.5  # type: ignore[operator]
            # An empty mask gives the whole image (box_from_mask's convention).
            boxes = box_from_mask(mask, margins)
            if equal_boxes:
                boxes = equalize_boxes(boxes, height, width)

        if mode_u == "S":
            fine_input = image
        else:
            fine_input = image * self.saliency(coarse_prob.to(image.dtype))
        fine_prob = self._probabilities(self._fine_canvas(fine_input, boxes))
        return RSTNOutput(coarse=coarse_prob, fine=fine_prob, boxes=boxes)
