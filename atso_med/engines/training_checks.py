"""The checks of a training run before any work: its arguments, its output folder, and whether it
is finished already."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from atso_med.data.datalist import read_datalist
from atso_med.engines.checkpoints import latest_checkpoint
from atso_med.errors import ConfigError
from atso_med.files import check_output_folder
from atso_med.flags import as_bool

__all__ = [
    "check_finished_training",
    "check_training_args",
    "finished_training",
]


def finished_training(output_dir: str | os.PathLike) -> Path | None:
    """The model of a finished training in ``output_dir`` (``model.pt``, or MONAI's final checkpoint), or ``None``."""
    for name in ("model.pt", "checkpoint_final.pt"):
        path = Path(output_dir) / name
        if path.is_file():
            return path
    return None


def check_finished_training(output_dir: str | os.PathLike, resume: bool, overwrite: bool) -> Path | None:
    """Refuse to train into (or continue) a finished training unless ``overwrite``.

    Returns:
        The finished model file, when there is one (and ``overwrite`` is on).

    Raises:
        ConfigError: ``output_dir`` holds a finished training and ``overwrite`` is off.
    """
    finished = finished_training(output_dir)
    if finished is not None and not overwrite:
        action = "continue" if resume else "train again"
        raise ConfigError(
            f"{output_dir} holds a finished training ({finished.name}); nothing to {action}: choose another output "
            "folder, or replace it with --overwrite (overwrite=true)"
        )
    return finished


def check_training_args(
    plane: str,
    settings,
    datalist: str,
    output_dir: str | os.PathLike,
    resume: object,
    init_weights: str | os.PathLike | None = None,
    allow_random_init: object = False,
    overwrite: object = False,
    num_classes: object = 1,
    class_names: Sequence[str] | None = None,
    class_activation: str = "sigmoid",
) -> None:
    """Check a training run's main arguments before any data is read or any model is built.

    A finished training (``model.pt`` or ``checkpoint_final.pt`` in ``output_dir``) is a result: a
    new run there is refused unless ``overwrite``, which removes the old run's checkpoints first;
    ``resume`` on it is refused too (``atso-med train --continue`` says it is finished and stops
    before calling this), unless ``overwrite``, which resumes from its newest checkpoint.

    Args:
        plane: the slicing plane.
        settings: the run's resolved :class:`~atso_med.engines.recipes.TrainingRecipe`.
        datalist: the data-list file.
        output_dir: the run folder.
        resume: resume from the newest checkpoint in ``output_dir``.
        init_weights: the local weights file, if any.
        allow_random_init: train the ``paper`` recipe from random weights anyway.
        overwrite: replace a finished training in ``output_dir``.
        num_classes: the classes the network segments.
        class_names: their names (``None``, or ``num_classes`` distinct names).
        class_activation: the network's class head; initial weights of an RSTN with another head are
            refused (the same weights would mean other probabilities).

    Raises:
        ConfigError: naming the bad argument (``num_classes`` and ``class_names`` included); when the ``paper`` recipe would start from random
            weights; an output folder that cannot be written; ``resume`` with nothing to resume;
            a finished training in ``output_dir`` without ``overwrite``; checkpoints of another
            run in ``output_dir`` without ``resume`` (a new run must not mix with an old one's files).
    """
    from atso_med.data.slices import plane_axis
    from atso_med.engines.recipes import check_initialization
    from atso_med.networks.plane_models import class_names_for

    plane_axis(plane)
    names = class_names_for(num_classes, class_names)
    check_initialization(settings, init_weights, allow_random_init)
    if init_weights:
        _check_init_classes(init_weights, names, class_names is not None, class_activation)
    read_datalist(datalist, "training")
    check_output_folder(output_dir)
    resume, overwrite = as_bool(resume), as_bool(overwrite)
    finished = check_finished_training(output_dir, resume, overwrite)
    if resume and latest_checkpoint(output_dir) is None:
        raise ConfigError(f"nothing to continue in {output_dir}: it holds no checkpoint of an interrupted training")
    if not resume and finished is not None:
        for old in Path(output_dir).glob("checkpoint*.pt"):
            old.unlink()
    if not resume and latest_checkpoint(output_dir) is not None:
        raise ConfigError(
            f"{output_dir} already holds checkpoints of a training run: resume it (resume=True, "
            "atso-med train --continue) or choose another output folder"
        )


def _check_init_classes(
    init_weights: str | os.PathLike, names: Sequence[str], named: bool, class_activation: str = "sigmoid"
) -> None:
    """Refuse initial weights of an RSTN that segments other classes than this training, or with another head.

    Pretrained backbone weights (no stored ``config``) carry no classes and pass; names are compared
    when both the file and the training name their classes.

    Raises:
        ConfigError: naming the file, its classes and the training's.
    """
    import torch

    from atso_med.networks.plane_models import stored_classes

    try:
        content = torch.load(init_weights, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - the weights' loading reports an unreadable file with its own message
        return
    if not isinstance(content, Mapping) or not isinstance(content.get("config"), Mapping):
        return
    stored = stored_classes(init_weights)
    both_named = named and content["config"].get("class_names") is not None
    if stored.num_classes != len(names) or (both_named and stored.class_names != tuple(names)):
        raise ConfigError(
            f"init_weights {init_weights} segment {stored.num_classes} class(es) ({', '.join(stored.class_names)}); "
            f"this training learns {len(names)} ({', '.join(names)})"
        )
    stored_head = content["config"].get("class_activation", "sigmoid")
    if len(names) > 1 and stored_head != class_activation:
        raise ConfigError(
            f"init_weights {init_weights} come from an RSTN with the {stored_head} class head; this training has the "
            f"{class_activation} head (class_activation): the same weights would give other probabilities"
        )
