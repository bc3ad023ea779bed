"""Experiment configuration: what an ATSO run trains, with which recipe, on which data, where.

An experiment is described by a YAML file (documented in ``examples/experiment.yaml``) and read
into :class:`ExperimentConfig`. Every value is checked before any work starts; unknown keys are
refused (a typo such as ``generatons`` must not silently fall back to a default). Relative paths
are resolved against the YAML file's folder. :meth:`ExperimentConfig.resolved` gives the form
written to ``<output_dir>/config.yaml``: every default filled in and every path absolute, so the
experiment folder documents exactly what ran.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from atso_med.atso.distributed import RaySettings
from atso_med.atso.tracking import MLflowSettings
from atso_med.data.slices import PLANES
from atso_med.errors import ConfigError
from atso_med.inferers.coarse_to_fine import InferenceConfig

#: Strategies in report order. ``supervised`` is generation 0 (M0, labeled cases only) and is
#: always trained, since every other semi-supervised strategy starts from it.
STRATEGIES = ("supervised", "fully_supervised", "self_learning", "stso", "atso")
#: Strategies that run generations of pseudo labels.
SEMI_SUPERVISED = ("self_learning", "stso", "atso")
#: ``restart``: an interrupted training is retrained from its first iteration (bit-identical to an
#: uninterrupted run); ``checkpoint``: it continues from its newest checkpoint (faster for long
#: GPU runs, but the data order after the checkpoint differs, so results are not bit-identical).
TRAINING_RESUME = ("restart", "checkpoint")
#: How from-scratch generations start (see :class:`TrainingConfig`).
INIT_MODES = ("random", "snapshot")
REPORT_METRICS = ("mean", "global")


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _section(data: Any, allowed: tuple[str, ...], where: str) -> Mapping:
    """A section of the configuration: a mapping (empty when absent) with no key outside ``allowed``."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise _fail(where, "expected a mapping")
    _check_keys(data, allowed, where)
    return data


def _check_keys(data: Mapping, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def _int(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(where, f"must be >= {minimum}, got {value}")
    return value


def _float(value: Any, where: str, minimum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, str):
        # YAML 1.1 reads 1e-5 (no dot) as text; accept what is plainly a number.
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise _fail(where, f"expected a finite number, got {value!r}")
    value = float(value)
    if positive and value <= 0:
        raise _fail(where, f"must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise _fail(where, f"must be >= {minimum}, got {value}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"expected true or false, got {value!r}")
    return value


def _amount(value: Any, where: str) -> int | float:
    """A count (int) or a fraction (float in [0, 1]), as splits take them."""
    from atso_med.data.split_protocols import parse_amount
    from atso_med.errors import SplitError

    try:
        return parse_amount(value, where)
    except SplitError as error:
        raise ConfigError(str(error)) from None


def _path(value: Any, where: str, base: Path) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _fail(where, f"expected a path, got {value!r}")
    path = Path(os.path.expandvars(str(value))).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


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
        overrides: any other key of the training bundle, passed as given (e.g. ``cache_rate``).
    """

    recipe: str = "scratch"
    preset: str | None = None
    iterations: int | None = None
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
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, base: Path, where: str = "training") -> TrainingConfig:
        data = _section(data, tuple(f.name for f in fields(cls)), where)
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

        self.allow_random_init = _bool(self.allow_random_init, f"{where}.allow_random_init")
        try:
            recipe = resolve_recipe(self.recipe, **{name: getattr(self, name) for name in _RECIPE_FIELDS})
        except RecipeError as error:
            raise _fail(f"{where}.{error.field or 'recipe'}", str(error)) from None
        for name in _RECIPE_FIELDS:
            value = getattr(recipe, name)
            setattr(self, name, list(value) if isinstance(value, tuple) else value)
        if self.init_mode not in INIT_MODES:
            raise _fail(f"{where}.init_mode", f"expected one of {', '.join(INIT_MODES)}, got {self.init_mode!r}")
        for name in ("init_seed", "seed", "val_interval", "save_interval"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _int(value, f"{where}.{name}", 0 if "seed" in name else 1))
        if self.init_weights is not None:
            self.init_weights = _path(self.init_weights, f"{where}.init_weights", base)
            if not self.init_weights.is_file():
                raise _fail(f"{where}.init_weights", f"file not found: {self.init_weights}")
        try:
            check_initialization(recipe, self.init_weights, self.allow_random_init)
        except ConfigError as error:
            raise _fail(f"{where}.recipe", str(error)) from None
        self.num_workers = _int(self.num_workers, f"{where}.num_workers", 0)
        self.amp = _bool(self.amp, f"{where}.amp")
        if self.resume not in TRAINING_RESUME:
            raise _fail(f"{where}.resume", f"expected one of {', '.join(TRAINING_RESUME)}, got {self.resume!r}")
        self.keep_checkpoints = _bool(self.keep_checkpoints, f"{where}.keep_checkpoints")
        if not isinstance(self.overrides, Mapping):
            raise _fail(f"{where}.overrides", "expected a mapping of training bundle keys")
        reserved = sorted(set(self.overrides) & _TRAINING_KEYS_SET_BY_TRAINER)
        if reserved:
            raise _fail(
                f"{where}.overrides",
                f"{', '.join(reserved)} are set by the ATSO trainer for every training; they cannot be overridden",
            )
        self.overrides = dict(self.overrides)

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


#: Keys of an experiment's ``inference`` section: the inferer's settings, except the per-call
#: ``keep_round_masks`` (the trainer writes masks to files, never keeps rounds in memory).
_INFERENCE_KEYS = tuple(f.name for f in fields(InferenceConfig) if f.name != "keep_round_masks")


def _inference_config(data: Any, where: str) -> InferenceConfig:
    """The experiment's whole-volume inference settings (pseudo labels and test predictions).

    Raises:
        ConfigError: not a mapping, an unknown key, or a value the inferer refuses.
    """
    data = _section(data, _INFERENCE_KEYS, where)
    try:
        return InferenceConfig(**dict(data))
    except ConfigError as err:
        raise _fail(where, str(err)) from None


@dataclass
class TransferConfig:
    """Transfer setting: a labeled source data set and an unlabeled target data set.

    Source cases with a label become the labeled set; target cases are dealt into a test set
    (``target_test`` of the target cases that have a label) and the reference folds (all other
    target cases; their labels, if any, serve the reports only).

    Attributes:
        source: the source ``dataset.json``.
        target: the target ``dataset.json``.
        target_test: count or fraction of the labeled target cases held out for testing.
    """

    source: Path
    target: Path
    target_test: int | float = 0.25

    @classmethod
    def from_dict(cls, data: Any, base: Path, where: str = "transfer") -> TransferConfig:
        if not isinstance(data, Mapping):
            raise _fail(where, "expected a mapping with source and target")
        _check_keys(data, ("source", "target", "target_test"), where)
        missing = [k for k in ("source", "target") if k not in data]
        if missing:
            raise _fail(where, f"missing key(s) {', '.join(missing)}")
        return cls(
            source=_path(data["source"], f"{where}.source", base),
            target=_path(data["target"], f"{where}.target", base),
            target_test=_amount(data.get("target_test", 0.25), f"{where}.target_test"),
        )


@dataclass
class SplitSettings:
    """How splits are drawn when no ``splits`` file is given (see :func:`atso_med.data.split_protocols.make_splits`)."""

    labeled: int | float = 0.1
    test: int | float = 0.25
    validation: int | float = 0

    @classmethod
    def from_dict(cls, data: Any, where: str = "split") -> SplitSettings:
        data = _section(data, ("labeled", "test", "validation"), where)
        defaults = cls()
        return cls(
            **{
                name: _amount(data.get(name, getattr(defaults, name)), f"{where}.{name}")
                for name in ("labeled", "test", "validation")
            }
        )


@dataclass
class ReportSettings:
    """What the reports show.

    Attributes:
        overlay_cases: test cases drawn as overlays (truth red, prediction green, overlap yellow).
        own_fold_predictions: also predict each ATSO fold model on its own fold (Table 4's
            diagonal, which shows lazy learning; costs one extra inference of the reference set
            per generation).
        metric: DSC shown in the tables: ``mean`` over cases, or ``global`` (all cases pooled,
            the transfer experiment's measure). ``None``: ``global`` for transfer, else ``mean``.
    """

    overlay_cases: int = 3
    own_fold_predictions: bool = True
    metric: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "report") -> ReportSettings:
        data = _section(data, ("overlay_cases", "own_fold_predictions", "metric"), where)
        settings = cls(**dict(data))
        settings.overlay_cases = _int(settings.overlay_cases, f"{where}.overlay_cases", 0)
        settings.own_fold_predictions = _bool(settings.own_fold_predictions, f"{where}.own_fold_predictions")
        if settings.metric is not None and settings.metric not in REPORT_METRICS:
            raise _fail(f"{where}.metric", f"expected one of {', '.join(REPORT_METRICS)}, got {settings.metric!r}")
        return settings


_TOP_KEYS = (
    "output_dir",
    "dataset",
    "splits",
    "split",
    "transfer",
    "foreground",
    "strategies",
    "generations",
    "folds",
    "planes",
    "seed",
    "devices",
    "long_axis_spacing",
    "training",
    "inference",
    "report",
    "tracking",
    "distributed",
)


@dataclass
class ExperimentConfig:
    """One ATSO experiment.

    Attributes:
        output_dir: the experiment folder (models, pseudo labels, predictions, reports, journal).
        dataset: ``dataset.json`` of a semi-supervised experiment (absent with ``transfer``).
        splits: ``splits.json`` (labeled / reference folds / test); drawn from ``split`` and
            ``seed`` when absent.
        split: how to draw the splits when ``splits`` is absent.
        transfer: the transfer setting instead of ``dataset``.
        foreground: label values that count as organ (``None``: every non-zero value).
        strategies: which strategies to run (``supervised`` is always trained: it is M0).
        generations: T, the number of teacher-student generations.
        folds: K, reference folds of ATSO (``None``: the splits' fold count, or 2 when drawn).
        planes: planes trained and fused (the paper: X, Y, Z).
        seed: seed of the split draw, the data order and (by default) the initial weights.
        devices: ``["auto"]`` (``cuda:0`` if there is one, else CPU), ``["cpu"]``, or several
            devices (``["cuda:0", "cuda:1"]``): the independent trainings of a generation then
            run concurrently, one per device, in worker processes.
        long_axis_spacing: normalise the slice spacing along the long axis to this many mm
            before training and prediction (outputs go back to the original grid); ``None``: off.
        training: the training recipe.
        inference: the inference settings.
        report: what the reports show.
        tracking: MLflow runs of the finished experiment (``None``: off); may be added on resume.
        distributed: run the trainings on a Ray cluster (``None``: on this machine, ``devices``);
            may change on resume (a run started on a cluster continues on one machine and back).
        source: the YAML file read, if any.
    """

    output_dir: Path
    dataset: Path | None = None
    splits: Path | None = None
    split: SplitSettings = field(default_factory=SplitSettings)
    transfer: TransferConfig | None = None
    foreground: list[int] | None = None
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    generations: int = 5
    folds: int | None = None
    planes: list[str] = field(default_factory=lambda: list(PLANES))
    seed: int = 0
    devices: list[str] = field(default_factory=lambda: ["auto"])
    long_axis_spacing: float | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    report: ReportSettings = field(default_factory=ReportSettings)
    tracking: MLflowSettings | None = None
    distributed: RaySettings | None = None
    source: Path | None = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> ExperimentConfig:
        """Read and validate an experiment YAML file.

        Args:
            path: the YAML file.
            **overrides: top-level keys replacing the file's (e.g. ``output_dir``).

        Returns:
            The validated configuration; relative paths resolved against the file's folder.

        Raises:
            ConfigError: the file is missing or not YAML, or a value is invalid.
        """
        import yaml

        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"experiment file not found: {file}")
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ConfigError(f"{file}: not a readable YAML file: {error}") from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: the top level must be a mapping of settings")
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
        config = cls.from_dict(data, base=file.parent.resolve(), where=str(file))
        config.source = file.resolve()
        return config

    @classmethod
    def from_dict(cls, data: Mapping, base: str | os.PathLike = ".", where: str = "experiment") -> ExperimentConfig:
        """Build and validate a configuration from a parsed mapping.

        Args:
            data: the settings.
            base: folder relative paths are resolved against.
            where: name used in error messages.

        Raises:
            ConfigError: an unknown key or an invalid value (the key is named).
        """
        base = Path(base).resolve()
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of settings")
        _check_keys(data, _TOP_KEYS, where)
        if "output_dir" not in data or data["output_dir"] in (None, ""):
            raise _fail(where, "output_dir is required (the experiment folder)")
        has_dataset, has_transfer = data.get("dataset") is not None, data.get("transfer") is not None
        if has_dataset == has_transfer:
            raise _fail(where, "give exactly one of 'dataset' (semi-supervised) and 'transfer' (source + target)")
        if has_transfer and data.get("splits") is not None:
            raise _fail(
                where,
                "'splits' cannot be combined with 'transfer' (the transfer splits are drawn from the two data sets)",
            )
        config = cls(output_dir=_path(data["output_dir"], f"{where}.output_dir", base))
        if has_dataset:
            config.dataset = _path(data["dataset"], f"{where}.dataset", base)
        if data.get("splits") is not None:
            config.splits = _path(data["splits"], f"{where}.splits", base)
        config.split = SplitSettings.from_dict(data.get("split"), f"{where}.split")
        if has_transfer:
            config.transfer = TransferConfig.from_dict(data["transfer"], base, f"{where}.transfer")
        config.foreground = _foreground(data.get("foreground"), f"{where}.foreground")
        config.strategies = _strategies(data.get("strategies", list(STRATEGIES)), f"{where}.strategies")
        config.generations = _int(data.get("generations", 5), f"{where}.generations", 0)
        if data.get("folds") is not None:
            config.folds = _int(data["folds"], f"{where}.folds", 2)
        config.planes = _planes(data.get("planes", list(PLANES)), f"{where}.planes")
        config.seed = _int(data.get("seed", 0), f"{where}.seed", 0)
        config.devices = _devices(data.get("devices", ["auto"]), f"{where}.devices")
        if data.get("long_axis_spacing") is not None:
            config.long_axis_spacing = _float(data["long_axis_spacing"], f"{where}.long_axis_spacing", positive=True)
        config.training = TrainingConfig.from_dict(data.get("training"), base, f"{where}.training")
        config.inference = _inference_config(data.get("inference"), f"{where}.inference")
        config.report = ReportSettings.from_dict(data.get("report"), f"{where}.report")
        config.tracking = MLflowSettings.from_dict(data.get("tracking"), f"{where}.tracking")
        config.distributed = RaySettings.from_dict(data.get("distributed"), f"{where}.distributed")
        if config.training.init_seed is None:
            config.training.init_seed = config.seed
        if config.training.seed is None:
            config.training.seed = config.seed
        if config.report.metric is None:
            config.report.metric = "global" if config.transfer is not None else "mean"
        if config.generations == 0 and any(s in SEMI_SUPERVISED for s in config.strategies):
            raise _fail(f"{where}.generations", "is 0, but a semi-supervised strategy needs at least one generation")
        return config

    # ------------------------------------------------------------------ output

    def inference_settings(self) -> dict[str, Any]:
        """The ``inference`` section as plain values: also the inference bundle's overrides."""
        return {key: getattr(self.inference, key) for key in _INFERENCE_KEYS}

    def resolved(self) -> dict[str, Any]:
        """Every setting with defaults filled in and absolute paths: the content of ``config.yaml``."""

        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, Mapping):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value

        data = {
            "output_dir": self.output_dir,
            "dataset": self.dataset,
            "splits": self.splits,
            "split": asdict(self.split),
            "transfer": None if self.transfer is None else asdict(self.transfer),
            "foreground": self.foreground,
            "strategies": self.strategies,
            "generations": self.generations,
            "folds": self.folds,
            "planes": self.planes,
            "seed": self.seed,
            "devices": self.devices,
            "long_axis_spacing": self.long_axis_spacing,
            "training": asdict(self.training),
            "inference": self.inference_settings(),
            "report": asdict(self.report),
            "tracking": None if self.tracking is None else {"mlflow": asdict(self.tracking)},
            "distributed": None if self.distributed is None else self.distributed.to_dict(),
        }
        return plain(data)

    def to_yaml(self) -> str:
        """:meth:`resolved` as YAML text."""
        import yaml

        return yaml.safe_dump(self.resolved(), sort_keys=False)


def _foreground(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(where, f"expected a list of label values, got {value!r}")
    values = [_int(v, where, 1) for v in value]
    return values


def _strategies(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(where, f"expected a list among {', '.join(STRATEGIES)}")
    unknown = [v for v in value if v not in STRATEGIES]
    if unknown:
        raise _fail(
            where,
            f"unknown strateg{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; expected among {', '.join(STRATEGIES)}",
        )
    # M0 is everyone's generation 0: always there, always first; report order is fixed.
    chosen = set(value) | {"supervised"}
    return [s for s in STRATEGIES if s in chosen]


def _planes(value: Any, where: str) -> list[str]:
    if isinstance(value, str):  # "XYZ", "Z" or "X, Y"
        value = [c for c in value if c not in ", "]
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(where, "expected a list of planes among X, Y, Z")
    planes = []
    for plane in value:
        if not isinstance(plane, str) or plane.upper() not in PLANES:
            raise _fail(where, f"unknown plane {plane!r}; expected X, Y or Z")
        if plane.upper() in planes:
            raise _fail(where, f"plane {plane.upper()} is listed twice")
        planes.append(plane.upper())
    return [p for p in PLANES if p in planes]


def _devices(value: Any, where: str) -> list[str]:
    from atso_med.devices import available_device

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(where, "expected a list of devices such as [auto], [cpu] or [cuda:0, cuda:1]")
    devices = []
    for device in value:
        text = str(device).strip().lower()
        if text == "auto":
            devices.append(text)
            continue
        try:
            devices.append(str(available_device(text)))
        except ConfigError as error:
            raise _fail(where, str(error)) from None
    if "auto" in devices and len(devices) > 1:
        raise _fail(where, "'auto' cannot be combined with other devices")
    return devices
