"""Resuming a training run from its newest complete checkpoint, read once (memory-mapped)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from atso_med.engines.checkpoints import newest_checkpoint
from atso_med.errors import ConfigError
from atso_med.networks.weight_files import check_state_matches

__all__ = ["ResumeHandler", "attach_resume"]

logger = logging.getLogger(__name__)


class ResumeHandler:
    """Load a checkpoint's objects into the run when its trainer starts.

    MONAI's ``CheckpointLoader`` reads its file itself; this handler takes the content that
    :func:`~atso_med.engines.checkpoints.newest_checkpoint` read while choosing the file, so a resume
    reads the checkpoint once. Ignite's ``Checkpoint.load_objects`` loads a DDP-wrapped network's
    weights into its ``module``, as the saver stored them.

    Args:
        content: the checkpoint's ``{name: state}``.
        load_dict: ``{name: object}`` to restore (network, optimizer, trainer, ...).
        source: the checkpoint file, for messages.
    """

    def __init__(self, content: Mapping, load_dict: Mapping, source: str | os.PathLike) -> None:
        missing = sorted(set(load_dict) - set(content))
        if missing:
            raise ConfigError(f"checkpoint {source} lacks {', '.join(missing)}; it cannot resume this run")
        self.content, self.load_dict, self.source = content, dict(load_dict), str(source)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        # Keep the run's own max_epochs: the checkpoint's trainer state must not shorten or extend it.
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self.load_dict, checkpoint=dict(self.content), strict=True)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ConfigError(
                f"checkpoint {self.source} is at epoch {engine.state.epoch}, beyond this run's {max_epochs}: "
                "train for more iterations to continue it"
            )
        engine.state.max_epochs = max_epochs
        logger.info("Restored all variables from %s", self.source)


def attach_resume(trainer, output_dir: str | os.PathLike, load_dict: Mapping, network: torch.nn.Module) -> Path | None:
    """Resume ``trainer`` from the newest complete checkpoint in ``output_dir``, if there is one.

    The checkpoint's network weights are checked against ``network`` first (unwrapped from DDP,
    as the checkpoint saver stores it), so a checkpoint of another width is refused with a message
    instead of a shape error deep inside torch.

    Returns:
        The checkpoint resumed from, or ``None`` when the run starts fresh.
    """
    found = newest_checkpoint(output_dir)
    if found is None:
        return None
    path, content = found
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    check_state_matches(content["network"], network.module if isinstance(network, parallel) else network, str(path))
    ResumeHandler(content, load_dict, path).attach(trainer)
    return path
