"""A normalised 2D U-Net for either half of RSTN, trainable from random weights.

The paper's FCN-8s halves learn only from PASCAL-VOC weights; without them they barely move
(see the bundle docs). This backbone is MONAI's :class:`~monai.networks.nets.UNet` (strided
residual units, batch or instance normalisation, leaky ReLU): on a CPU it trains about three
times faster per step than MONAI's ``BasicUNet`` of the same widths (measured at 64x64). RSTN
feeds it whole slices and boxes of any size, so the input is padded to a size the strides divide
and the logits are cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atso_med.errors import ConfigError
from atso_med.networks.fcn import named_generator

__all__ = ["NORMS", "UNet2d"]

#: Normalisations the backbone accepts (MONAI layer names).
NORMS = ("batch", "instance")


class UNet2d(nn.Module):
    """MONAI ``UNet`` (2D) that accepts any input size and initialises from a seed.

    Args:
        in_channels: input channels (RSTN: the 3 slices of a stack).
        out_channels: logits per pixel (RSTN: one per input slice).
        channels: channels of each resolution level, from the input down to the bottleneck.
        strides: the downsampling factor between consecutive levels (one fewer than ``channels``).
        num_res_units: residual units per block (0: plain convolutions).
        norm: ``"batch"`` or ``"instance"`` (independent of the batch: RSTN's fine half runs
            groups of equal-sized boxes, often of one sample).
        dropout: dropout probability inside each block.

    Raises:
        ConfigError: on malformed ``channels``/``strides``, an unknown ``norm`` or a bad ``dropout``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 2,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        channels = tuple(int(c) for c in channels)
        strides = tuple(int(s) for s in strides)
        if len(channels) < 2 or min(channels) < 1 or len(strides) != len(channels) - 1 or min(strides) < 1:
            raise ConfigError(
                f"U-Net needs >= 2 positive channel counts and one stride fewer, got channels {channels!r}, strides {strides!r}"
            )
        if norm not in NORMS:
            raise ConfigError(f"U-Net norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"U-Net dropout must be in [0, 1), got {dropout!r}")
        self.channels, self.strides, self.norm = channels, strides, norm
        self.divisor = int(np.prod(strides))
        self.net = UNet(
            spatial_dims=2,
            in_channels=int(in_channels),
            out_channels=int(out_channels),
            channels=channels,
            strides=strides,
            num_res_units=int(num_res_units),
            act=("leakyrelu", {"negative_slope": 0.01}),
            norm=norm,
            dropout=float(dropout),
        )

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None, prefix: str = "") -> None:
        """He-normal convolutions (leaky ReLU gain), zero biases, unit normalisation scales.

        Args:
            seed: with a seed, every weight draws from its own generator seeded by
                ``(seed, prefix + name)`` (bit-identical whatever the global RNG state); without,
                the global RNG is used.
            prefix: prepended to the parameter names for the per-parameter seeds.
        """
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                if module.weight.is_meta:
                    continue
                gen = None if seed is None else named_generator(seed, f"{prefix}{name}.weight")
                # ConvTranspose2d stores (in, out, k, k): its "fan_out" is the fan-in of an output.
                mode = "fan_in" if isinstance(module, nn.Conv2d) else "fan_out"
                nn.init.kaiming_normal_(module.weight, a=0.01, mode=mode, nonlinearity="leaky_relu", generator=gen)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.InstanceNorm2d, nn.BatchNorm2d)):
                if module.affine:
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
                if module.track_running_stats:
                    module.reset_running_stats()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a (B, C, H, W) batch of any H and W, at the input's size."""
        height, width = x.shape[-2], x.shape[-1]
        # At least two bottleneck pixels per side: normalisation needs more than one value.
        smallest = 2 * self.divisor
        pad_h = max(smallest, height + (-height) % self.divisor) - height
        pad_w = max(smallest, width + (-width) % self.divisor) - width
        # Zero is the bottom of the HU window (air and fat): the padding looks like body-free space.
        # Padded even by zero pixels, with no branch on the size: an ONNX graph then serves any size.
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        logits = self.net(x)
        top, left = pad_h // 2, pad_w // 2
        return logits[..., top : top + height, left : left + width]
