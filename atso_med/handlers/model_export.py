"""Ignite handler that writes the selected model of a training run as ``model.pt``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from atso_med.networks.weight_files import load_checkpoint, save_model_atomic


def _is_main_process() -> bool:
    """Whether this process writes the files: the only one, or rank 0 of a distributed training."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return not distributed or torch.distributed.get_rank() == 0


class ModelExportHandler:
    """When training completes, write ``model.pt``: the best validation checkpoint if there is one, else the last weights.

    In a distributed run only rank 0 writes. The file holds ``{"network": state_dict, "config": run configuration, "iteration": n,
    "selected": "best_validation" | "last"}`` and loads with ``torch.load(..., weights_only=True)``.

    Args:
        output_dir: run folder.
        network: the trained network.
        config: the run's resolved configuration (preset, plane, ...), stored with the weights.
        best_checkpoint: file name of the best-validation checkpoint inside ``output_dir``.
        filename: output file name.
    """

    def __init__(
        self,
        output_dir: str,
        network: torch.nn.Module,
        config: Mapping | None = None,
        best_checkpoint: str = "model_best.pt",
        filename: str = "model.pt",
    ):
        self.output_dir = Path(output_dir)
        self.network = network
        self.config = dict(config or {})
        self.best_checkpoint = best_checkpoint
        self.filename = filename
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not _is_main_process():
            return
        best = self.output_dir / self.best_checkpoint
        if best.is_file():
            # ignite's Checkpoint stores a lone object's state dict unwrapped: this file is the network's weights
            weights, selected = load_checkpoint(best), "best_validation"
        else:
            model = self.network.module if hasattr(self.network, "module") else self.network
            weights, selected = {k: v.detach().cpu() for k, v in model.state_dict().items()}, "last"
        path = save_model_atomic(
            {"network": weights, "config": self.config, "iteration": int(engine.state.iteration), "selected": selected},
            self.output_dir / self.filename,
        )
        self.logger.info(f"wrote {path} ({selected} weights, iteration {engine.state.iteration})")


class StageSnapshotHandler:
    """Write the network after a given iteration with a freshly initialised saliency module.

    This is the paper's "scratch model" (Section 4.2): to save compute, every from-scratch
    generation of STSO and ATSO starts from M0's weights after stages S and I, the saliency module
    re-initialised, and trains stage J only. The saliency module is reset with the run's
    ``init_seed``, so it equals that of a random start and every snapshot of a plane is one file.

    Args:
        output_dir: run folder.
        network: the network being trained.
        iteration: iterations after which to write (the first iteration of stage J); 0 writes
            the initial weights.
        seed: seed of the saliency module's re-initialisation (``None``: the global RNG).
        config: the run's configuration, stored with the weights.
        filename: output file name (``None``: no snapshot is written).
    """

    def __init__(
        self,
        output_dir: str,
        network: torch.nn.Module,
        iteration: int,
        seed: int | None,
        config: Mapping | None = None,
        filename: str | None = "snapshot_SI.pt",
    ):
        self.output_dir = Path(output_dir)
        self.network = network
        self.iteration = int(iteration)
        self.seed = None if seed is None else int(seed)
        self.config = dict(config or {})
        self.filename = filename

    def attach(self, engine: Engine) -> None:
        if not self.filename:
            return
        event = Events.STARTED if self.iteration == 0 else Events.ITERATION_COMPLETED(once=self.iteration)
        engine.add_event_handler(event, self)

    def __call__(self, engine: Engine) -> None:
        if not _is_main_process():
            return
        from atso_med.networks.rstn import SaliencyTransform

        model = self.network.module if hasattr(self.network, "module") else self.network
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        fresh = SaliencyTransform(model.saliency.channels, model.saliency.num_classes)
        fresh.reset_parameters(self.seed, prefix="saliency.")
        weights.update({f"saliency.{k}": v for k, v in fresh.state_dict().items()})
        save_model_atomic(
            {
                "network": weights,
                "config": self.config,
                "iteration": int(engine.state.iteration),
                "selected": "snapshot",
            },
            self.output_dir / str(self.filename),
        )
