"""Inferers that call an RSTN the way each engine needs it.

MONAI's engines call ``inferer(inputs, network, *args, **kwargs)``; these classes turn that call
into an RSTN forward pass with the right mode, box source and margins.
"""

from __future__ import annotations

import torch
from monai.inferers import Inferer

from atso_med.errors import ConfigError
from atso_med.networks.rstn import MODES


class RSTNTrainingInferer(Inferer):
    """Training forward pass: mode S, I or J, with RSTN's random box margins and equal-sized boxes.

    The mode is set from outside (by :class:`~atso_med.engines.RSTNTrainer`) at every
    iteration. Margins are drawn from a generator seeded by ``(seed, iteration)``, so a resumed run
    draws the same margins as an uninterrupted one.

    Args:
        seed: seed of the margin draws.
        fixed_margin: margin (px) used on all four sides with probability ``fixed_probability``.
        max_margin: otherwise each side gets an independent integer margin in ``[0, max_margin]``.
        fixed_probability: probability of the fixed margin.
    """

    def __init__(self, seed: int = 0, fixed_margin: int = 20, max_margin: int = 40, fixed_probability: float = 0.5):
        super().__init__()
        self.seed = int(seed)
        self.fixed_margin = int(fixed_margin)
        self.max_margin = int(max_margin)
        self.fixed_probability = float(fixed_probability)
        self.mode = "S"
        self.iteration = 0

    def set_step(self, mode: str, iteration: int) -> None:
        """Set the mode and the 0-based iteration of the next forward pass."""
        if mode not in MODES:
            raise ConfigError(f"unknown RSTN training mode {mode!r}; expected one of {MODES}")
        self.mode, self.iteration = mode, int(iteration)

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, label: torch.Tensor):  # type: ignore[override]
        from atso_med.networks.boxes import sample_training_margins

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.iteration)
        margins = sample_training_margins(
            inputs.shape[0],
            generator,
            fixed_margin=self.fixed_margin,
            max_margin=self.max_margin,
            fixed_probability=self.fixed_probability,
        ).to(inputs.device)
        # Equal boxes: one fine call per batch (every box of a batch grows to the largest).
        return network(inputs, label=label, mode=self.mode, margins=margins, equal_boxes=True)


class RSTNSliceInferer(Inferer):
    """Evaluation of 3-slice stacks: coarse pass, then one fine pass on the box of the coarse mask.

    This is the test-time use of RSTN reduced to a single round on independent stacks, which is
    what model selection on validation cases needs; whole-volume coarse-to-fine rounds with plane
    fusion belong to the volume inferer.

    Args:
        margin: box margin in pixels on every side.
        threshold: probability above which the coarse pass marks the organ.
    """

    def __init__(self, margin: int = 20, threshold: float = 0.5):
        super().__init__()
        self.margin = int(margin)
        self.threshold = float(threshold)

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> torch.Tensor:  # type: ignore[override]
        model = network.module if hasattr(network, "module") else network
        coarse = model.coarse_probability(inputs)
        return model.fine_probability(inputs, coarse, coarse >= self.threshold, margin=self.margin)
