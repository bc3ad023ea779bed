"""RSTN's training: the stages S -> I -> J, their learning rates, and the batches the network sees.

RSTN trains its coarse and fine halves jointly, in three stages over one run of ``iterations``
draws (Yu et al., CVPR 2018; :class:`~atso_med.engines.schedule.StageSchedule` says where each
stage starts and how the learning rate decays):

- **S**: the fine half sees the raw image in the box of the *label* (it learns to segment a box);
- **I**: the fine half sees image x saliency(coarse probabilities), still in the label's box (the
  saliency module learns);
- **J**: the box comes from the coarse prediction itself, as at test time.

:class:`RSTNTrainer` is MONAI's ``SupervisedTrainer`` with that schedule built in: before every
iteration it sets the mode of its :class:`~atso_med.inferers.RSTNTrainingInferer` (which draws
the reference's random box margins) and scales every parameter group's learning rate. Everything
follows from ``engine.state.iteration``, which a checkpoint restores, so a resumed run continues
in the right stage. The bundle's ``train.json`` wires it with ``_target_``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from torch.optim import Optimizer

from atso_med.engines.schedule import StageSchedule
from atso_med.errors import ConfigError
from atso_med.inferers.slice_inferers import RSTNTrainingInferer

__all__ = ["RSTNTrainer", "prepare_rstn_batch"]


def prepare_rstn_batch(
    batchdata: Mapping, device: torch.device | str | None = None, non_blocking: bool = False, **kwargs
):
    """Batch preparation for MONAI engines: the label also goes to the network (RSTN's boxes in modes S and I).

    Returns:
        ``(image, target, (), {"label": label})`` as MONAI's ``SupervisedTrainer`` expects from a
        ``prepare_batch`` callable; the loss's target is the label, then its voxel weights when the
        batch has ``weight`` (:class:`~atso_med.losses.RSTNLoss` with ``voxel_weights``), then one
        last channel marking the samples labelled at merged groups when the batch has ``grouped``
        (with ``class_groups``).
    """
    image = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
    label = batchdata["label"].to(device=device, non_blocking=non_blocking, **kwargs)
    target = label
    if "weight" in batchdata:  # a pseudo label's uncertain voxels weigh 0 in the loss
        weight = batchdata["weight"].to(device=device, dtype=label.dtype, non_blocking=non_blocking)
        target = torch.cat([label, weight], dim=1)
    if "grouped" in batchdata:  # class reduction: the loss learns which samples are labelled at merged groups
        grouped = batchdata["grouped"].to(device=device, dtype=label.dtype, non_blocking=non_blocking)
        target = torch.cat([label, grouped.reshape(-1, 1, 1, 1).expand(-1, 1, *label.shape[2:])], dim=1)
    return image, target, (), {"label": label}


class _StageStep:
    """Before every iteration: the stage's mode on the inferer, the schedule's factor on every learning rate."""

    def __init__(self, schedule: StageSchedule, inferer: RSTNTrainingInferer, optimizer: Optimizer) -> None:
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
            group.setdefault("initial_lr", group["lr"])  # each group's base rate, remembered on first use
            group["lr"] = group["initial_lr"] * factor
        engine.state.rstn_mode = self.inferer.mode


class RSTNTrainer(SupervisedTrainer):
    """RSTN's S -> I -> J training over one pass of ``schedule.iterations`` drawn batches.

    Args:
        device: where the network trains.
        train_data_loader: batches of ``{"image", "label"}`` 3-slice stacks; it must yield
            ``schedule.iterations`` batches (the run is one epoch of that length).
        network: the RSTN.
        optimizer: its optimiser; each parameter group's rate is the stage schedule's base.
        loss_function: the loss of the network's stacked coarse + fine output and the label.
        schedule: the stage schedule (iterations, stage boundaries, learning-rate policy).
        inferer: the training forward pass, whose mode the trainer sets (it draws the random box
            margins, seeded per iteration so that a resumed run draws the same).
        max_epochs: must be 1 (MONAI's bundle properties name it; the length is ``schedule.iterations``).
        train_handlers: further handlers (progress, statistics, export); the stage step runs
            before all of them at every iteration.
        amp: mixed precision (CUDA).
        **kwargs: other ``SupervisedTrainer`` arguments.

    Raises:
        ConfigError: when ``max_epochs`` is not 1.
    """

    def __init__(
        self,
        device: str | torch.device,
        train_data_loader: Iterable,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        schedule: StageSchedule,
        inferer: RSTNTrainingInferer,
        max_epochs: int = 1,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        **kwargs,
    ) -> None:
        if max_epochs != 1:
            raise ConfigError(
                f"RSTN trains one pass of its schedule's {schedule.iterations} iterations, not {max_epochs} epochs: "
                "set iterations instead"
            )
        super().__init__(
            device=device,
            max_epochs=1,
            epoch_length=schedule.iterations,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            prepare_batch=prepare_rstn_batch,
            inferer=inferer,
            train_handlers=[_StageStep(schedule, inferer, optimizer), *(train_handlers or [])],
            amp=amp,
            **kwargs,
        )
