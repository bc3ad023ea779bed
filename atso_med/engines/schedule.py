"""RSTN's stage schedule: training modes S -> I -> J and the learning-rate factor of every iteration.

The schedule is a pure function of the iteration count, so a run resumed from a checkpoint (which
restores the count) continues in the right stage with the right learning rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from atso_med.errors import ConfigError


@dataclass(frozen=True)
class StageSchedule:
    """Which RSTN training mode and learning-rate factor apply at each iteration.

    The reference trains 10K iterations in mode S, 30K in I and 40K in J (80K in all), halving the
    learning rate at 50K, 60K and 70K: fractions 1/8, 3/8, 1/2, and three halvings evenly spread
    over J (``lr_policy="stages"``). From random weights the rate instead warms up linearly and
    then decays as nnU-Net's ``(1 - t / T) ** 0.9`` over the whole run (``lr_policy="poly"``).

    Attributes:
        iterations: total training iterations.
        fractions: fractions of ``iterations`` spent in S, I and J (they must sum to 1).
        j_halvings: how many times the learning rate halves, evenly spaced within stage J (``stages``).
        lr_policy: ``"stages"`` or ``"poly"``.
        warmup_fraction: share of the iterations of linear warm-up (``poly``).
    """

    iterations: int
    fractions: tuple[float, float, float] = (1 / 8, 3 / 8, 1 / 2)
    j_halvings: int = 3
    lr_policy: str = "stages"
    warmup_fraction: float = 0.0

    def __post_init__(self) -> None:
        if int(self.iterations) < 1:
            raise ConfigError(f"iterations must be at least 1, got {self.iterations}")
        fractions = tuple(float(f) for f in self.fractions)
        if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            raise ConfigError(
                f"stage fractions (S, I, J) must be 3 non-negative numbers summing to 1, got {self.fractions}"
            )
        if int(self.j_halvings) < 0:
            raise ConfigError(f"j_halvings must be >= 0, got {self.j_halvings}")
        if self.lr_policy not in ("stages", "poly"):
            raise ConfigError(f"lr_policy must be 'stages' or 'poly', got {self.lr_policy!r}")
        if not 0.0 <= float(self.warmup_fraction) <= 0.5:
            raise ConfigError(f"warmup_fraction must be in [0, 0.5], got {self.warmup_fraction!r}")
        object.__setattr__(self, "fractions", fractions)

    @property
    def boundaries(self) -> tuple[int, int]:
        """First iteration (0-based) of stage I and of stage J."""
        s_end = round(self.iterations * self.fractions[0])
        i_end = round(self.iterations * (self.fractions[0] + self.fractions[1]))
        return s_end, i_end

    def mode_at(self, iteration: int) -> str:
        """Training mode ("S", "I" or "J") of the 0-based ``iteration``."""
        s_end, i_end = self.boundaries
        if iteration < s_end:
            return "S"
        return "I" if iteration < i_end else "J"

    def lr_factor_at(self, iteration: int) -> float:
        """Learning-rate multiplier of the 0-based ``iteration``.

        ``stages``: 1 before J, halved ``j_halvings`` times in J. ``poly``: ``(i + 1) / W`` during the
        ``W`` warm-up iterations, then ``(1 - (i - W) / (T - W)) ** 0.9``.
        """
        if self.lr_policy == "poly":
            warmup = round(self.iterations * float(self.warmup_fraction))
            if iteration < warmup:
                return (iteration + 1) / warmup
            return max(0.0, 1.0 - (iteration - warmup) / max(1, self.iterations - warmup)) ** 0.9
        _, j_start = self.boundaries
        j_length = self.iterations - j_start
        if iteration < j_start or j_length <= 0 or self.j_halvings == 0:
            return 1.0
        step = j_length / (self.j_halvings + 1)
        return 0.5 ** min(self.j_halvings, int((iteration - j_start) // step))
