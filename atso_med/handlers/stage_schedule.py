"""Ignite handler that applies RSTN's stage schedule to a MONAI trainer."""

from __future__ import annotations

from ignite.engine import Engine, Events
from torch.optim import Optimizer

from atso_med.engines.schedule import StageSchedule
from atso_med.inferers.slice_inferers import RSTNTrainingInferer


class StageScheduleHandler:
    """Before every iteration, set the RSTN mode (S, I, J) and scale each parameter group's learning rate.

    Everything is derived from ``engine.state.iteration``, which a checkpoint restores, so resuming
    continues the schedule instead of restarting it.

    Args:
        schedule: the stage schedule.
        inferer: the training inferer whose mode is set.
        optimizer: optimizer whose groups are scaled; each group's base rate is remembered as
            ``initial_lr`` on first use.
    """

    def __init__(self, schedule: StageSchedule, inferer: RSTNTrainingInferer, optimizer: Optimizer):
        self.schedule = schedule
        self.inferer = inferer
        self.optimizer = optimizer

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        iteration = engine.state.iteration - 1  # ignite counts from 1 once the iteration has started
        self.inferer.set_step(self.schedule.mode_at(iteration), iteration)
        factor = self.schedule.lr_factor_at(iteration)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor
        engine.state.rstn_mode = self.inferer.mode
