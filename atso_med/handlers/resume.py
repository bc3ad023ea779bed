"""Resuming a training run from a checkpoint that has been read already (once, memory-mapped)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from atso_med.errors import ConfigError

__all__ = ["ResumeHandler"]

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
