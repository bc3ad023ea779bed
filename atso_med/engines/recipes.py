"""Training recipes: named sets of network, optimiser, schedule, loss and augmentation settings.

A training run names one recipe (``scratch`` by default, ``paper`` for the published setting) and
may replace any of its values; the resolved :class:`TrainingRecipe` is what the run uses and what
``model.pt`` records.

* ``paper``: RSTN as published. FCN-8s halves at full size, SGD with momentum 0.99, coarse rate
  1e-5 and fine rate 1e-4 (biases twice that, no decay on them), 80,000 iterations of batch 1 in
  stages S, I, J with three halvings in J, soft Dice loss, no augmentation. It assumes PASCAL-VOC
  FCN-8s weights: from random weights FCN-8s does not learn at these rates, so the recipe is
  refused without ``init_weights`` unless ``allow_random_init`` forces it.
* ``scratch``: trains from random weights. U-Net halves with batch normalisation, AdamW at 3e-3
  (decoupled weight decay 1e-4, none on biases), a linear warm-up over the first 5 % of the
  iterations then nnU-Net's polynomial decay ``(1 - t / T) ** 0.9``, soft Dice plus binary
  cross-entropy, and MONAI augmentation of every stack (rotation, scaling, intensity scale and
  shift, noise). Stages S, I, J as in the paper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from atso_med.errors import ConfigError

__all__ = [
    "LR_POLICIES",
    "OPTIMIZERS",
    "RECIPES",
    "RecipeError",
    "TrainingRecipe",
    "build_optimizer",
    "check_initialization",
    "resolve_recipe",
]

#: Optimisers a recipe may name.
OPTIMIZERS = ("sgd", "adam", "adamw")
#: ``stages``: constant rate, halved ``j_halvings`` times in stage J (the paper); ``poly``: linear
#: warm-up then polynomial decay to zero (nnU-Net).
LR_POLICIES = ("stages", "poly")


class RecipeError(ConfigError):
    """A bad recipe value; ``field`` names it (``None`` for the recipe's name)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything about how one RSTN trains, except the data, the plane and the seeds.

    Attributes:
        name: the recipe this was resolved from (``paper`` or ``scratch``).
        preset: network preset (see :data:`atso_med.networks.RSTN_PRESETS`).
        iterations: training iterations.
        batch_size: stacks per iteration.
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr_coarse: learning rate of the coarse half.
        lr_fine: learning rate of the fine half and the saliency module.
        bias_lr_mult: learning-rate multiplier of biases.
        weight_decay: weight decay of non-bias parameters (decoupled for AdamW).
        momentum: SGD momentum (ignored by Adam and AdamW).
        nesterov: SGD with Nesterov momentum.
        stage_fractions: fractions of the iterations spent in stages S, I and J.
        lr_policy: one of :data:`LR_POLICIES`.
        j_halvings: halvings in stage J (``stages`` policy).
        warmup_fraction: share of the iterations of linear warm-up (``poly`` policy).
        bce_weight: weight of binary cross-entropy added to each soft Dice term (0: Dice only).
        augment: random rotation, scaling, intensity scale/shift and noise of every stack.
        cutout: the paper appendix's strong augmentation (MONAI ``RandCoarseDropoutd``).
    """

    name: str
    preset: str
    iterations: int
    batch_size: int
    optimizer: str
    lr_coarse: float
    lr_fine: float
    bias_lr_mult: float
    weight_decay: float
    momentum: float
    nesterov: bool
    stage_fractions: tuple[float, float, float]
    lr_policy: str
    j_halvings: int
    warmup_fraction: float
    bce_weight: float
    augment: bool
    cutout: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (what a run records)."""
        out = dataclasses.asdict(self)
        out["stage_fractions"] = list(self.stage_fractions)
        return out

    @property
    def backbone(self) -> str:
        """``fcn8s`` or ``unet``: the halves of the preset's network."""
        from atso_med.networks import RSTN_PRESETS

        return RSTN_PRESETS[self.preset]["backbone"]


_PAPER = dict(
    preset="full",
    iterations=80000,
    batch_size=1,
    optimizer="sgd",
    lr_coarse=1e-5,
    lr_fine=1e-4,
    bias_lr_mult=2.0,
    weight_decay=5e-4,
    momentum=0.99,
    nesterov=False,
    stage_fractions=(0.125, 0.375, 0.5),
    lr_policy="stages",
    j_halvings=3,
    warmup_fraction=0.0,
    bce_weight=0.0,
    augment=False,
    cutout=False,
)

#: The named recipes (values before a run's own replacements).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": _PAPER,
    "scratch": {
        **_PAPER,
        "preset": "unet",
        "iterations": 20000,
        "batch_size": 8,
        "optimizer": "adamw",
        "lr_coarse": 3e-3,
        "lr_fine": 3e-3,
        "bias_lr_mult": 1.0,
        "weight_decay": 1e-4,
        "momentum": 0.9,
        "lr_policy": "poly",
        "warmup_fraction": 0.05,
        "bce_weight": 1.0,
        "augment": True,
    },
}


def _number(name: str, value: Any, minimum: float, integer: bool = False, maximum: float | None = None) -> Any:
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as text
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and float(value) != int(value)):
        raise RecipeError(name, f"{name} must be {'a whole number' if integer else 'a number'}, got {value!r}")
    value = int(value) if integer else float(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise RecipeError(name, f"{name} must be {bound}, got {value!r}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise RecipeError(name, f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")
    return value


def resolve_recipe(recipe: str = "scratch", **replacements: Any) -> TrainingRecipe:
    """The named recipe with the given values replaced; ``None`` keeps the recipe's value.

    Args:
        recipe: ``scratch`` or ``paper``.
        **replacements: any field of :class:`TrainingRecipe` but ``name``.

    Returns:
        The checked, resolved recipe.

    Raises:
        RecipeError: (a :class:`ConfigError`) on an unknown recipe or field, or a value out of
            range; its ``field`` names the value.
    """
    from atso_med.flags import as_bool
    from atso_med.networks import RSTN_PRESETS

    if recipe not in RECIPES:
        raise RecipeError(None, f"unknown training recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    unknown = sorted(set(replacements) - set(RECIPES[recipe]))
    if unknown:
        raise RecipeError(
            unknown[0], f"unknown recipe value(s) {', '.join(unknown)}; expected among {', '.join(RECIPES[recipe])}"
        )
    values = {**RECIPES[recipe], **{k: v for k, v in replacements.items() if v is not None}}
    _choice("preset", values["preset"], list(RSTN_PRESETS))
    _choice("optimizer", values["optimizer"], OPTIMIZERS)
    _choice("lr_policy", values["lr_policy"], LR_POLICIES)
    for name in ("iterations", "batch_size"):
        values[name] = _number(name, values[name], 1, integer=True)
    values["j_halvings"] = _number("j_halvings", values["j_halvings"], 0, integer=True)
    for name in ("lr_coarse", "lr_fine", "bias_lr_mult", "weight_decay", "momentum", "bce_weight"):
        values[name] = _number(name, values[name], 0.0)
    values["warmup_fraction"] = _number("warmup_fraction", values["warmup_fraction"], 0.0, maximum=0.5)
    for name in ("nesterov", "augment", "cutout"):
        try:
            values[name] = as_bool(values[name])
        except ConfigError as error:
            raise RecipeError(name, f"{name}: {error}") from None
    fractions = values["stage_fractions"]
    if (
        not isinstance(fractions, (list, tuple))
        or len(fractions) != 3
        or not math.isclose(sum(_number("stage_fractions", f, 0.0) for f in fractions), 1.0, abs_tol=1e-6)
    ):
        raise RecipeError(
            "stage_fractions",
            f"stage_fractions must be 3 non-negative numbers (S, I, J) summing to 1, got {fractions!r}",
        )
    values["stage_fractions"] = tuple(float(f) for f in fractions)
    if values["nesterov"] and (values["optimizer"] != "sgd" or values["momentum"] == 0):
        raise RecipeError("nesterov", "nesterov needs optimizer 'sgd' with a momentum above 0")
    return TrainingRecipe(name=recipe, **values)


def check_initialization(recipe: TrainingRecipe, init_weights: Any, allow_random_init: Any = False) -> None:
    """Refuse, before any work, a recipe that cannot learn from the initial weights it gets.

    The ``paper`` recipe's FCN-8s at its SGD rates learns only from pretrained weights (measured:
    loss still about 0.99 after 300 iterations from random weights); days of GPU time would be spent
    on models that segment nothing.

    Args:
        recipe: the resolved recipe.
        init_weights: the run's local weights file, or ``None``.
        allow_random_init: force a random initialisation anyway.

    Raises:
        ConfigError: for ``paper`` without weights and without ``allow_random_init``.
    """
    from atso_med.flags import as_bool

    if recipe.name != "paper" or init_weights or as_bool(allow_random_init):
        return
    raise ConfigError(
        "the 'paper' recipe trains FCN-8s halves with the published SGD rates, which learn only from pretrained "
        "weights: set init_weights to a local FCN-8s or VGG16 state-dict file (for example PASCAL-VOC FCN-8s "
        "converted to PyTorch, or torchvision's vgg16 weights file, downloaded by you; atso-med never downloads), "
        "or train with the 'scratch' recipe (U-Net halves, trains from random weights); allow_random_init=True "
        "forces a random start"
    )


def build_optimizer(network: torch.nn.Module, recipe: TrainingRecipe) -> torch.optim.Optimizer:
    """The recipe's optimiser over RSTN's parameter groups (coarse / fine rates, no decay on biases).

    Args:
        network: the RSTN (or DDP / DataParallel around it).
        recipe: the resolved recipe.

    Returns:
        SGD, Adam or AdamW; every group carries ``initial_lr`` for the schedule.
    """
    from atso_med.networks import parameter_groups

    groups = parameter_groups(
        network,
        coarse_lr=recipe.lr_coarse,
        fine_lr=recipe.lr_fine,
        bias_lr_mult=recipe.bias_lr_mult,
        weight_decay=recipe.weight_decay,
    )
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr_fine, momentum=recipe.momentum, nesterov=recipe.nesterov)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr_fine)
    return torch.optim.AdamW(groups, lr=recipe.lr_fine)
