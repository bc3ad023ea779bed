"""Named RSTN networks: the paper's FCN-8s pair, smaller FCN-8s pairs for CPUs, and U-Net pairs that
train from random weights."""

from __future__ import annotations

import inspect
from typing import Any

from atso_med.errors import ConfigError
from atso_med.networks.rstn import RSTN

__all__ = ["RSTN_PRESETS", "build_rstn"]

#: Named networks. FCN-8s halves (the paper's; they learn from pretrained weights): ``full`` is
#: the published network (about 268.6 M parameters), ``small`` (about 5.2 M) and ``tiny`` (about
#: 0.67 M) shrink it for CPU tests. U-Net halves (train from random weights): ``unet`` for GPUs
#: (about 6.5 M per half, widths from 32 as nnU-Net), ``unet_small`` (0.84 M) for CPUs and ``unet_tiny`` (0.16 M) for
#: CPU tests and the demo. Their first level keeps the full resolution (stride 1): a pancreas a few
#: pixels thick is lost to a network that halves the slice before its first features.
RSTN_PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(backbone="fcn8s", width=1.0, fc_channels=4096),
    "small": dict(backbone="fcn8s", width=0.25, fc_channels=256),
    "tiny": dict(backbone="fcn8s", width=0.125, fc_channels=32),
    "unet": dict(backbone="unet", channels=(32, 64, 128, 256, 512), strides=(1, 2, 2, 2), num_res_units=2, dropout=0.0),
    "unet_small": dict(
        backbone="unet", channels=(16, 32, 64, 128, 256), strides=(1, 2, 2, 2), num_res_units=1, dropout=0.0
    ),
    "unet_tiny": dict(backbone="unet", channels=(16, 32, 64, 128), strides=(1, 2, 2), num_res_units=0, dropout=0.0),
}


def build_rstn(preset: str = "full", **overrides: Any) -> RSTN:
    """Constructs an RSTN from a named preset.

    Args:
        preset: one of :data:`RSTN_PRESETS` (``"full"`` = the paper's network).
        **overrides: RSTN constructor arguments replacing the preset's (``width``, ``fc_channels``,
            ``dropout``, ``in_channels``, ``backbone``, ``channels``, ``strides``, ``num_res_units``,
            ``norm``, ``num_classes``).

    Returns:
        A randomly initialised (global RNG) RSTN; call
        :func:`~atso_med.networks.initialization.initialize_rstn` for a seeded one or for weights.

    Raises:
        ConfigError: on an unknown preset or override key, or an invalid value.
    """
    if preset not in RSTN_PRESETS:
        raise ConfigError(f"unknown RSTN preset {preset!r}; expected one of {', '.join(RSTN_PRESETS)}")
    allowed = [p for p in inspect.signature(RSTN.__init__).parameters if p != "self"]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown RSTN option(s) {', '.join(unknown)}; expected among {', '.join(allowed)}")
    kwargs = {**RSTN_PRESETS[preset], **overrides}
    return RSTN(**kwargs)
