"""The ``training`` section of an experiment: how every RSTN of it is trained.

:class:`TrainingConfig` names the recipe (:mod:`atso_med.engines.recipes`) and every value that
replaces one of its values, the seeds, the HU window and how an interrupted training resumes; once
validated, each field holds the value that was trained with, so the experiment's ``config.yaml``
says exactly what ran. :meth:`TrainingConfig.bundle_settings` turns it into train-bundle keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from atso_med.atso.config_fields import (
    config_error,
    read_bool,
    read_choice,
    read_hu_window,
    read_int,
    read_path,
    section,
)
from atso_med.errors import ConfigError
from atso_med.transforms.intensity import HU_WINDOW

__all__ = ["INIT_MODES", "TRAINING_RESUME", "TrainingConfig"]

#: ``restart``: an interrupted training is retrained from its first iteration (bit-identical to an
#: uninterrupted run); ``checkpoint``: it continues from its newest checkpoint (faster for long
#: GPU runs, but the data order after the checkpoint differs, so results are not bit-identical).
TRAINING_RESUME = ("restart", "checkpoint")
#: How from-scratch generations start (see :class:`TrainingConfig`).
INIT_MODES = ("random", "snapshot")

#: Fields of :class:`TrainingConfig` that replace a value of the training recipe (``None``: the recipe's).
_RECIPE_FIELDS = (
    "preset",
    "iterations",
    "batch_size",
    "optimizer",
    "lr_coarse",
    "lr_fine",
    "weight_decay",
    "momentum",
    "stage_fractions",
    "bce_weight",
    "augment",
    "cutout",
)


@dataclass
class TrainingConfig:
    """How every RSTN of the experiment is trained (one training = one plane of one model).

    The recipe gives every value that is left out (``None``); once validated, each of those fields
    holds the resolved value, so the experiment's ``config.yaml`` says exactly what was trained.

    Attributes:
        recipe: ``scratch`` (default: U-Net halves, AdamW, Dice + BCE, augmentation; learns from
            random weights) or ``paper`` (FCN-8s, SGD as published; needs ``init_weights``). See
            :mod:`atso_med.engines.recipes`.
        preset: network preset (``unet``, ``unet_small``, ``unet_tiny``; ``full``, ``small``, ``tiny``).
        iterations: iterations per training.
        iterations_per_case: instead of ``iterations``, this many iterations per training case
            (labeled and pseudo-labelled): a budget of epochs, as the paper's appendix trains "40
            epochs in each generation", so a student of 2 labeled and 19 pseudo-labelled cases
            trains about 10 times as long as M0 on its 2. ``None``: every training runs ``iterations``.
        batch_size: stacks per iteration.
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr_coarse: learning rate of the coarse half.
        lr_fine: learning rate of the fine half and the saliency module.
        weight_decay: weight decay (not on biases).
        momentum: SGD momentum.
        stage_fractions: fractions of the iterations in stages S, I, J.
        bce_weight: cross-entropy added to each soft Dice term.
        augment: random rotation, scaling and intensity changes of every stack.
        cutout: the paper appendix's strong augmentation (cutout), for every strategy alike.
        allow_random_init: train the ``paper`` recipe from random weights anyway.
        init_mode: how STSO's and ATSO's from-scratch generations start: ``random`` (the seeded
            random weights, bit-identical for every such training) or ``snapshot`` (the paper's
            Section 4.2: M0's weights after stages S and I with a freshly initialised saliency
            module, bit-identical for every such training of a plane; they then train stage J only).
        init_seed: seed of the initial weights; every from-scratch training uses it, so all of
            them start from bit-identical weights. ``None``: the experiment's ``seed``.
        init_weights: optional local weights file (e.g. converted FCN-8s) for from-scratch trainings.
        seed: seed of the data order, augmentation and box margins. ``None``: the experiment's ``seed``.
        num_workers: data loader workers.
        amp: CUDA mixed precision (ignored on CPU).
        val_interval: iterations between validations (only with validation cases in the splits).
        resume: ``restart`` or ``checkpoint`` (see :data:`TRAINING_RESUME`).
        save_interval: iterations between checkpoints with ``resume: checkpoint``.
        keep_checkpoints: keep each run's ``checkpoint_*.pt`` (otherwise only ``model.pt`` stays).
        hu_window: the HU window mapped to [0, 1] (the training bundle's ``hu_window``).
        overrides: any other key of the training bundle, passed as given (e.g. ``cache_rate``).
    """

    recipe: str = "scratch"
    preset: str | None = None
    iterations: int | None = None
    iterations_per_case: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr_coarse: float | None = None
    lr_fine: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    stage_fractions: list[float] | None = None
    bce_weight: float | None = None
    augment: bool | None = None
    cutout: bool | None = None
    allow_random_init: bool = False
    init_mode: str = "random"
    init_seed: int | None = None
    init_weights: Path | None = None
    seed: int | None = None
    num_workers: int = 4
    amp: bool = True
    val_interval: int | None = None
    resume: str = "restart"
    save_interval: int | None = None
    keep_checkpoints: bool = False
    hu_window: list[float] = field(default_factory=lambda: list(HU_WINDOW))
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, base: Path, where: str = "training") -> TrainingConfig:
        data = section(data, tuple(f.name for f in fields(cls)), where)
        if data.get("iterations") is not None and data.get("iterations_per_case") is not None:
            raise config_error(where, "give the budget either as 'iterations' or as 'iterations_per_case', not both")
        config = cls(**dict(data.items()))
        config.validate(base, where)
        return config

    def validate(self, base: Path, where: str = "training") -> None:
        """Check every field and fill in the recipe's values.

        Raises:
            ConfigError: naming the key and the bad value; also for the ``paper`` recipe without
                ``init_weights`` (it does not learn from random weights) unless ``allow_random_init``.
        """
        from atso_med.engines.recipes import RecipeError, check_initialization, resolve_recipe

        self.allow_random_init = read_bool(self.allow_random_init, f"{where}.allow_random_init")
        try:
            recipe = resolve_recipe(self.recipe, **{name: getattr(self, name) for name in _RECIPE_FIELDS})
        except RecipeError as error:
            raise config_error(f"{where}.{error.field or 'recipe'}", str(error)) from None
        for name in _RECIPE_FIELDS:
            value = getattr(recipe, name)
            setattr(self, name, list(value) if isinstance(value, tuple) else value)
        read_choice(self.init_mode, INIT_MODES, f"{where}.init_mode")
        for name in ("init_seed", "seed", "val_interval", "save_interval", "iterations_per_case"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, read_int(value, f"{where}.{name}", 0 if "seed" in name else 1))
        if self.init_weights is not None:
            self.init_weights = read_path(self.init_weights, f"{where}.init_weights", base)
            if not self.init_weights.is_file():
                raise config_error(f"{where}.init_weights", f"file not found: {self.init_weights}")
        try:
            check_initialization(recipe, self.init_weights, self.allow_random_init)
        except ConfigError as error:
            raise config_error(f"{where}.recipe", str(error)) from None
        self.num_workers = read_int(self.num_workers, f"{where}.num_workers", 0)
        self.amp = read_bool(self.amp, f"{where}.amp")
        read_choice(self.resume, TRAINING_RESUME, f"{where}.resume")
        self.keep_checkpoints = read_bool(self.keep_checkpoints, f"{where}.keep_checkpoints")
        self.hu_window = read_hu_window(self.hu_window, f"{where}.hu_window")
        if not isinstance(self.overrides, Mapping):
            raise config_error(f"{where}.overrides", "expected a mapping of training bundle keys")
        reserved = sorted(set(self.overrides) & _TRAINING_KEYS_SET_BY_TRAINER)
        if reserved:
            raise config_error(
                f"{where}.overrides",
                f"{', '.join(reserved)} are set by the ATSO trainer for every training; they cannot be overridden",
            )
        self.overrides = dict(self.overrides)

    def iterations_for(self, cases: int, stage_j_only: bool = False) -> int:
        """The iterations of one training.

        Args:
            cases: the training's cases (labeled, pseudo-labelled and truth-labelled).
            stage_j_only: a student that starts from M0's snapshot and trains stage J only: its
                share (``stage_fractions[2]``) of the budget.
        """
        total = self.iterations if self.iterations_per_case is None else self.iterations_per_case * int(cases)
        return max(1, round(total * self.stage_fractions[2])) if stage_j_only else int(total)

    def bundle_settings(self) -> dict[str, Any]:
        """The recipe and its values as training-bundle keys (the bundle calls the optimiser ``optimizer_name``)."""
        settings = {"recipe": self.recipe, "allow_random_init": self.allow_random_init}
        for name in _RECIPE_FIELDS:
            settings["optimizer_name" if name == "optimizer" else name] = getattr(self, name)
        return settings


# Bundle keys the trainer decides per training (where a model goes, what it learns from).
_TRAINING_KEYS_SET_BY_TRAINER = frozenset(
    {"datalist", "output_dir", "plane", "init_weights", "resume", "device", "snapshot_file"}
)
