"""RSTN in a form that TorchScript and ONNX export: the inference passes, and its three parts.

:class:`~atso_med.networks.rstn.RSTN`'s training forward takes a label, a mode and per-sample
margins, and groups boxes by size in Python: TorchScript cannot compile that. Scripting an RSTN
(``torch.jit.script``, which MONAI's ``ckpt_export`` calls) therefore compiles
:class:`ScriptableRSTN` instead, through the ``__prepare_scriptable__`` hook: the same coarse,
fine and saliency modules (same state-dict keys) behind the inference passes only,

- ``forward(image)``: one coarse -> saliency -> fine pass, box from the coarse mask (the output
  of ``RSTN(image)``: coarse then fine probabilities, (B, 2K, H, W), ``K = in_channels *
  num_classes``);
- ``coarse_probability(image)`` and ``fine_probability(image, score_map, mask, margin)``: the
  two calls the whole-volume coarse-to-fine inference makes
  (:class:`~atso_med.inferers.CoarseToFineInferer`), so a loaded ``model.ts`` can stand in for the
  PyTorch model there.

ONNX graphs have no data-dependent crops, so ONNX export takes the parts one at a time
(:class:`RSTNPart`): the coarse network, the saliency module and the fine network, each a
module with the RSTN's state-dict keys (it loads ``model.pt`` as it is) and one image input.
Inference with them: ``p = sigmoid(coarse(x))``; box of ``p >= 0.5`` (joint over channels, so over
the classes too) plus a margin; ``f = sigmoid(fine((x * saliency(p))[box]))`` pasted into zeros.
Networks of several classes export the same way (their outputs are class-major, as the RSTN's); with
``class_activation="softmax"`` the sigmoids are :func:`~atso_med.networks.activation.class_probabilities`.
"""

from __future__ import annotations

import torch
from torch import nn

from atso_med.errors import ConfigError
from atso_med.networks.activation import class_probabilities
from atso_med.networks.boxes import DEFAULT_MARGIN, mask_boxes

__all__ = ["PARTS", "RSTNPart", "ScriptableRSTN"]

#: The parts of an RSTN that export on their own, as :class:`RSTNPart` names them.
PARTS = ("coarse", "saliency", "fine")


class ScriptableRSTN(nn.Module):
    """The inference passes of an RSTN, in code TorchScript compiles; shares the RSTN's modules.

    Args:
        rstn: the network whose ``coarse``, ``fine`` and ``saliency`` modules are used (not copied).
    """

    def __init__(self, rstn: nn.Module) -> None:
        super().__init__()
        self.coarse = rstn.coarse
        self.fine = rstn.fine
        self.saliency = rstn.saliency
        self.in_channels = int(rstn.in_channels)
        self.out_channels = int(rstn.out_channels)
        self.num_classes = int(rstn.num_classes)
        self.softmax = rstn.class_activation == "softmax"
        self.margin = DEFAULT_MARGIN  # an attribute: TorchScript reads no globals

    def _fine_canvas(
        self, fine_input: torch.Tensor, inside: torch.Tensor, margin: int, skip_empty: bool
    ) -> torch.Tensor:
        """Fine probabilities of each sample's box, 0 outside; an empty mask gives the whole image or zeros."""
        batch, height, width = fine_input.shape[0], fine_input.shape[2], fine_input.shape[3]
        out = torch.zeros([batch, self.out_channels, height, width], dtype=torch.float32, device=fine_input.device)
        for i in range(batch):
            empty = not bool(inside[i].any())
            if empty and skip_empty:
                continue
            margins = torch.full((1, 4), margin, dtype=torch.int64)
            box: list[int] = mask_boxes(inside[i : i + 1], margins)[0].tolist()  # empty: the whole image
            top, bottom, left, right = box[0], box[1], box[2], box[3]
            logits = self.fine(fine_input[i : i + 1, :, top:bottom, left:right])
            out[i : i + 1, :, top:bottom, left:right] = class_probabilities(logits, self.num_classes, self.softmax)
        return out

    @torch.jit.export
    def coarse_probability(self, image: torch.Tensor) -> torch.Tensor:
        """Coarse probabilities, as :meth:`RSTN.coarse_probability <atso_med.networks.RSTN.coarse_probability>`.

        Args:
            image: (B, in_channels, H, W) images.

        Returns:
            float32 probabilities (B, K, H, W).
        """
        return class_probabilities(self.coarse(image), self.num_classes, self.softmax)

    @torch.jit.export
    def fine_probability(
        self, image: torch.Tensor, score_map: torch.Tensor, mask: torch.Tensor, margin: int = DEFAULT_MARGIN
    ) -> torch.Tensor:
        """Test-time fine pass, as :meth:`RSTN.fine_probability <atso_med.networks.RSTN.fine_probability>`.

        Args:
            image: (B, in_channels, H, W) images.
            score_map: probabilities that feed the saliency module, (B, K, H, W).
            mask: the previous mask, (B, K or in_channels or 1, H, W); its box plus ``margin`` is what the
                fine half sees.
            margin: pixels on every side of the box.

        Returns:
            float32 fine probabilities (B, K, H, W): 0 outside each box and for an empty mask.
        """
        fine_input = image * self.saliency(score_map.to(image.dtype))
        return self._fine_canvas(fine_input, mask != 0, margin, skip_empty=True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """One coarse -> saliency -> fine pass with the box of the coarse mask, as ``RSTN(image)``.

        Args:
            image: (B, in_channels, H, W) images.

        Returns:
            (B, 2K, H, W) float32: coarse then fine probabilities (an empty coarse mask: the whole image's box).
        """
        coarse = self.coarse_probability(image)
        fine_input = image * self.saliency(coarse.to(image.dtype))
        fine = self._fine_canvas(fine_input, coarse >= 0.5, self.margin, skip_empty=False)
        return torch.cat([coarse, fine], dim=1)


class RSTNPart(nn.Module):
    """One part of an RSTN as a module of one input, for ONNX export; loads the RSTN's state dict.

    It holds all three modules under the RSTN's names (so ``model.pt``'s ``network`` weights load
    key for key) and runs one of them: ``"coarse"`` and ``"fine"`` give logits of an image or a
    box crop, ``"saliency"`` maps probabilities to the saliency map.

    Args:
        rstn: the network whose modules are used (not copied).
        part: one of :data:`PARTS`.

    Raises:
        ConfigError: on an unknown part.
    """

    def __init__(self, rstn: nn.Module, part: str) -> None:
        super().__init__()
        if part not in PARTS:
            raise ConfigError(f"unknown RSTN part {part!r}; expected one of {', '.join(PARTS)}")
        self.part = part
        self.coarse = rstn.coarse
        self.fine = rstn.fine
        self.saliency = rstn.saliency

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Runs the chosen part.

        Args:
            x: (B, in_channels, H, W) images (coarse, fine) or (B, K, H, W) probabilities (saliency).

        Returns:
            (B, K, H, W) logits (coarse, fine) or the (B, in_channels, H, W) saliency map.
        """
        return getattr(self, self.part)(x)
