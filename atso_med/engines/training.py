"""Pieces of the RSTN training workflow that the bundle configs call: batch preparation and the
checks of a run's arguments before any work."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from atso_med.data.datalist import read_datalist
from atso_med.engines.checkpoints import latest_checkpoint
from atso_med.errors import ConfigError
from atso_med.flags import as_bool

__all__ = ["check_training_args", "prepare_rstn_batch"]


def prepare_rstn_batch(
    batchdata: Mapping, device: torch.device | str | None = None, non_blocking: bool = False, **kwargs
):
    """Batch preparation for MONAI engines: the label also goes to the network (RSTN's boxes in modes S and I).

    Returns:
        ``(image, label, (), {"label": label})`` as MONAI's ``SupervisedTrainer`` expects from a
        ``prepare_batch`` callable.
    """
    image = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
    label = batchdata["label"].to(device=device, non_blocking=non_blocking, **kwargs)
    return image, label, (), {"label": label}


def check_training_args(
    plane: str,
    settings,
    datalist: str,
    output_dir: str | os.PathLike,
    resume: object,
    init_weights: str | os.PathLike | None = None,
    allow_random_init: object = False,
) -> None:
    """Check a training run's main arguments before any data is read or any model is built.

    Args:
        plane: the slicing plane.
        settings: the run's resolved :class:`~atso_med.engines.recipes.TrainingRecipe`.
        datalist: the data-list file.
        output_dir: the run folder.
        resume: resume from the newest checkpoint in ``output_dir``.
        init_weights: the local weights file, if any.
        allow_random_init: train the ``paper`` recipe from random weights anyway.

    Raises:
        ConfigError: naming the bad argument; when the ``paper`` recipe would start from random
            weights; also when ``output_dir`` already holds checkpoints of another run and ``resume``
            is off (a new run must not mix with an old one's files).
    """
    from atso_med.engines.recipes import check_initialization
    from atso_med.transforms.triview import plane_axis

    plane_axis(plane)
    check_initialization(settings, init_weights, allow_random_init)
    read_datalist(datalist, "training")
    if not as_bool(resume) and latest_checkpoint(output_dir) is not None:
        raise ConfigError(
            f"{output_dir} already holds checkpoints of a training run: resume it (resume=True, "
            "atso-med train --continue) or choose another output folder"
        )
