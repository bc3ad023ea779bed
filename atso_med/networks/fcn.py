"""FCN-8s on a VGG16 trunk, the segmenter inside each half of RSTN.

The layout follows the published FCN-8s (Long et al.) as RSTN uses it: a VGG16 trunk whose
first convolution pads by 100 pixels, fully convolutional fc6/fc7, three 1x1 score layers and
a decoder of frozen bilinear transposed convolutions with the Caffe crop offsets 5, 9 and 31.
The padding trick makes the output come back at exactly the input size for any input size
(1x1 upwards), so no resizing is ever needed.

Module names (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``, ``score_fr``, ``score_pool4``,
``score_pool3``, ``upscore2``, ``upscore_pool4``, ``upscore8``) are the customary FCN-8s
names, so a state dict converted from the Caffe FCN-8s model by the usual converters loads
key for key (see :mod:`atso_med.networks.initialization`).
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from atso_med.errors import ConfigError

__all__ = ["VGG16_BLOCKS", "FCN8s", "bilinear_kernel", "named_generator", "scaled_channels"]

#: Output channels of the VGG16 trunk's convolutions, block by block.
VGG16_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)

# Caffe FCN-8s crop offsets: they undo the 100-pixel padding through the decoder.
_POOL4_OFFSET = 5
_POOL3_OFFSET = 9
_FINAL_OFFSET = 31


def scaled_channels(channels: int, width: float) -> int:
    """Channel count of a trunk layer at a width multiplier.

    Args:
        channels: the channel count at full size.
        width: the width multiplier.

    Returns:
        ``round(channels * width)``, at least 1.
    """
    return max(1, int(round(channels * width)))


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights of a transposed convolution that upsamples each channel bilinearly on its own.

    Args:
        channels: number of input (= output) channels; channels are not mixed.
        kernel_size: side of the square kernel (4 for 2x, 16 for 8x).

    Returns:
        A float32 tensor (channels, channels, k, k), zero off the channel diagonal.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1.0 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor
    filt = (ramp[:, None] * ramp[None, :]).float()
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    for c in range(channels):
        weight[c, c] = filt
    return weight


def named_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator whose stream depends only on a seed and a parameter name.

    One generator per parameter makes a seeded initialisation independent of the global RNG,
    of the order modules are visited and of whatever else was built before.

    Args:
        seed: the user's seed.
        name: the parameter's full name, e.g. ``"coarse.conv1_1.weight"``.

    Returns:
        A freshly seeded ``torch.Generator``.
    """
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    generator = torch.Generator()
    generator.manual_seed(int.from_bytes(digest[:8], "little") % (2**63))
    return generator


def _crop(x: torch.Tensor, offset: int, height: int, width: int) -> torch.Tensor:
    return x[:, :, offset : offset + height, offset : offset + width]


class FCN8s(nn.Module):
    """FCN-8s with a VGG16 trunk; returns per-pixel logits at the input's size.

    Trainable: every convolution's weight and bias. Frozen (``requires_grad=False``, still
    parameters and still counted by ``parameters()``): the three bilinear transposed
    convolutions ``upscore2``, ``upscore_pool4`` and ``upscore8`` (no bias).

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output logits.
        width: multiplier of the trunk's channel counts (1.0 = VGG16); each is
            ``round(c * width)``, at least 1.
        fc_channels: channels of fc6 and fc7 (4096 in VGG16).
        dropout: element-wise dropout probability after fc6 and fc7 (Caffe drops single
            elements, hence ``nn.Dropout`` rather than ``nn.Dropout2d``).

    Raises:
        ConfigError: if a size or probability is out of range.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: float = 1.0,
        fc_channels: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ConfigError(
                f"FCN8s needs at least one input and one output channel, got {in_channels}, {out_channels}"
            )
        if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
            raise ConfigError(f"FCN8s width must be a positive number, got {width!r}")
        if int(fc_channels) < 1:
            raise ConfigError(f"FCN8s fc_channels must be >= 1, got {fc_channels!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"FCN8s dropout must be in [0, 1), got {dropout!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.width = float(width)
        self.fc_channels = int(fc_channels)
        # An attribute, not the module constants: TorchScript reads no globals.
        self.crop_offsets: tuple[int, int, int] = (_POOL4_OFFSET, _POOL3_OFFSET, _FINAL_OFFSET)

        self.block_channels: tuple[tuple[int, ...], ...] = tuple(
            tuple(scaled_channels(c, width) for c in block) for block in VGG16_BLOCKS
        )
        self.trunk_names: tuple[tuple[str, ...], ...] = tuple(
            tuple(f"conv{b + 1}_{i + 1}" for i in range(len(block))) for b, block in enumerate(self.block_channels)
        )
        prev = self.in_channels
        for names, block in zip(self.trunk_names, self.block_channels, strict=True):
            for name, ch in zip(names, block, strict=True):
                # Only the very first conv pads by 100: that margin is what the decoder's
                # crops remove again, making every input size come back whole.
                padding = 100 if name == "conv1_1" else 1
                setattr(self, name, nn.Conv2d(prev, ch, 3, padding=padding))
                prev = ch
        pool3_ch = self.block_channels[2][-1]
        pool4_ch = self.block_channels[3][-1]
        self.fc6 = nn.Conv2d(prev, self.fc_channels, 7)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(self.fc_channels, self.fc_channels, 1)
        self.drop7 = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(self.fc_channels, self.out_channels, 1)
        self.score_pool4 = nn.Conv2d(pool4_ch, self.out_channels, 1)
        self.score_pool3 = nn.Conv2d(pool3_ch, self.out_channels, 1)
        self.upscore2 = nn.ConvTranspose2d(self.out_channels, self.out_channels, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(self.out_channels, self.out_channels, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(self.out_channels, self.out_channels, 16, stride=8, bias=False)
        for up in self.upsamplers():
            up.weight.requires_grad_(False)
        self.reset_parameters()

    def convolutions(self) -> list[tuple[str, nn.Conv2d]]:
        """The learnable convolutions, trunk first, as (name, module) pairs."""
        names = [n for block in self.trunk_names for n in block]
        names += ["fc6", "fc7", "score_fr", "score_pool4", "score_pool3"]
        return [(n, getattr(self, n)) for n in names]

    def upsamplers(self) -> list[nn.ConvTranspose2d]:
        """The three frozen bilinear transposed convolutions of the decoder."""
        return [self.upscore2, self.upscore_pool4, self.upscore8]

    def score_layers(self) -> list[nn.Conv2d]:
        """The three 1x1 score convolutions (zeroed when starting from pretrained weights)."""
        return [self.score_fr, self.score_pool4, self.score_pool3]

    @torch.no_grad()
    def reset_bilinear(self) -> None:
        """Sets the decoder's transposed convolutions to their fixed bilinear kernels."""
        for up in self.upsamplers():
            if up.weight.is_meta:
                continue
            up.weight.copy_(bilinear_kernel(self.out_channels, up.kernel_size[0]))

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None, prefix: str = "") -> None:
        """Random initialisation: He-normal trunk and fc layers, LeCun-normal score layers.

        Biases start at zero; the decoder gets its bilinear kernels. The reference starts
        from pretrained weights with zero score layers instead (see
        :func:`atso_med.networks.initialization.initialize_rstn`); from scratch the score layers need
        non-zero weights for the trunk to receive any gradient.

        Args:
            seed: with a seed, every parameter draws from its own generator seeded by
                ``(seed, prefix + name)``, which makes the result bit-identical whatever the
                global RNG state; without, the global RNG is used.
            prefix: prepended to the parameter names for the per-parameter seeds.
        """
        score = {id(m) for m in self.score_layers()}
        for name, conv in self.convolutions():
            if conv.weight.is_meta:
                continue
            gen = None if seed is None else named_generator(seed, f"{prefix}{name}.weight")
            if id(conv) in score:
                # Unit-gain init keeps the initial logits O(1), so the sigmoid is not saturated.
                nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear", generator=gen)
            else:
                nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu", generator=gen)
            nn.init.zeros_(conv.bias)
        self.reset_bilinear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Computes logits.

        Args:
            x: images (B, in_channels, H, W), any H, W >= 1.

        Returns:
            Logits (B, out_channels, H, W).

        Raises:
            ValueError: if ``x`` is not 4D with ``in_channels`` channels.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"FCN8s expects (B, {self.in_channels}, H, W) input, got {list(x.shape)}")
        height, width = x.shape[-2], x.shape[-1]
        # Written out layer by layer (VGG16's 2-2-3-3-3 blocks) so that TorchScript compiles it.
        h = F.relu(self.conv1_2(F.relu(self.conv1_1(x), inplace=True)), inplace=True)
        h = F.max_pool2d(h, kernel_size=2, stride=2, ceil_mode=True)
        h = F.relu(self.conv2_2(F.relu(self.conv2_1(h), inplace=True)), inplace=True)
        h = F.max_pool2d(h, kernel_size=2, stride=2, ceil_mode=True)
        h = F.relu(self.conv3_1(h), inplace=True)
        h = F.relu(self.conv3_3(F.relu(self.conv3_2(h), inplace=True)), inplace=True)
        pool3 = F.max_pool2d(h, kernel_size=2, stride=2, ceil_mode=True)
        h = F.relu(self.conv4_1(pool3), inplace=True)
        h = F.relu(self.conv4_3(F.relu(self.conv4_2(h), inplace=True)), inplace=True)
        pool4 = F.max_pool2d(h, kernel_size=2, stride=2, ceil_mode=True)
        h = F.relu(self.conv5_1(pool4), inplace=True)
        h = F.relu(self.conv5_3(F.relu(self.conv5_2(h), inplace=True)), inplace=True)
        h = F.max_pool2d(h, kernel_size=2, stride=2, ceil_mode=True)
        h = self.drop6(F.relu(self.fc6(h), inplace=True))
        h = self.drop7(F.relu(self.fc7(h), inplace=True))
        h = self.upscore2(self.score_fr(h))
        h = h + _crop(self.score_pool4(pool4), self.crop_offsets[0], h.shape[2], h.shape[3])
        h = self.upscore_pool4(h)
        h = h + _crop(self.score_pool3(pool3), self.crop_offsets[1], h.shape[2], h.shape[3])
        h = self.upscore8(h)
        return _crop(h, self.crop_offsets[2], height, width).contiguous()
