"""Experiment configuration: what an ATSO run trains, with which recipe, on which data, where.

An experiment is described by a YAML file (documented in ``examples/experiment.yaml``) and read
into :class:`ExperimentConfig`. Every value is checked before any work starts; unknown keys are
refused (a typo such as ``generatons`` must not silently fall back to a default). Relative paths
are resolved against the YAML file's folder. :meth:`ExperimentConfig.resolved` gives the form
written to ``<output_dir>/config.yaml``: every default filled in and every path absolute, so the
experiment folder documents exactly what ran.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from atso_med.atso.config_fields import (
    check_keys,
    config_error,
    read_amount,
    read_bool,
    read_choice,
    read_classes,
    read_devices,
    read_float,
    read_foreground,
    read_int,
    read_path,
    read_planes,
    section,
)
from atso_med.atso.distributed import RaySettings
from atso_med.atso.training_config import TrainingConfig
from atso_med.data.slices import PLANES
from atso_med.errors import ConfigError
from atso_med.extras import require_extra
from atso_med.inferers.coarse_to_fine import InferenceConfig

#: Strategies in report order. ``supervised`` is generation 0 (M0, labeled cases only) and is
#: always trained, since every other semi-supervised strategy starts from it.
STRATEGIES = ("supervised", "fully_supervised", "self_learning", "stso", "atso")
#: Strategies that run generations of pseudo labels.
SEMI_SUPERVISED = ("self_learning", "stso", "atso")
REPORT_METRICS = ("mean", "global")
#: How ATSO's fold models train: on their own fold (Algorithm 1), or on every other fold (leave-one-fold-out).
FOLD_TRAINING = ("own", "others")
#: How ATSO's fold models of each generation start (``fold_init``).
FOLD_INIT = ("scratch", "continue")


def require_mlflow(what: str) -> None:
    """Refuses before any work when MLflow is not installed (``what``: the option that needs it)."""
    require_extra("mlflow", "MLflow", "tracking", what)


@dataclass
class MLflowSettings:
    """Where an experiment's MLflow runs go.

    Attributes:
        tracking_uri: an MLflow tracking URI (``sqlite:///path/mlflow.db``, ``http://host:5000``).
        experiment_name: the MLflow experiment; ``None``: the experiment folder's name.
    """

    tracking_uri: str
    experiment_name: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "tracking") -> MLflowSettings | None:
        """Reads the ``tracking`` section of an experiment.

        Args:
            data: ``None`` (no tracking) or ``{"mlflow": {"tracking_uri": ..., "experiment_name": ...}}``.
            where: the key named in errors.

        Returns:
            The settings, or ``None`` without tracking.

        Raises:
            ConfigError: a malformed section, or MLflow not installed.
        """
        if data is None:
            return None
        if not isinstance(data, Mapping) or set(data) != {"mlflow"} or not isinstance(data["mlflow"], Mapping):
            raise ConfigError(
                f"{where}: expected {{mlflow: {{tracking_uri: URI, experiment_name: NAME}}}}, got {data!r}"
            )
        mlflow = dict(data["mlflow"])
        unknown = sorted(set(mlflow) - {"tracking_uri", "experiment_name"})
        if unknown:
            raise ConfigError(
                f"{where}.mlflow: unknown key(s) {', '.join(unknown)}; expected tracking_uri, experiment_name"
            )
        uri = mlflow.get("tracking_uri")
        if not isinstance(uri, str) or not uri.strip():
            raise ConfigError(
                f"{where}.mlflow.tracking_uri: expected a tracking URI such as sqlite:///mlflow.db, got {uri!r}"
            )
        name = mlflow.get("experiment_name")
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"{where}.mlflow.experiment_name: expected a string, got {name!r}")
        require_mlflow(f"{where}.mlflow")
        return cls(tracking_uri=uri, experiment_name=name)


#: Keys of an experiment's ``inference`` section: the inferer's settings, except the per-call
#: ``keep_round_masks`` (the trainer writes masks to files, never keeps rounds in memory).
_INFERENCE_KEYS = tuple(f.name for f in fields(InferenceConfig) if f.name != "keep_round_masks")


def _inference_config(data: Any, where: str) -> InferenceConfig:
    """The experiment's whole-volume inference settings (pseudo labels and test predictions).

    Raises:
        ConfigError: not a mapping, an unknown key, or a value the inferer refuses.
    """
    data = section(data, _INFERENCE_KEYS, where)
    try:
        return InferenceConfig(**dict(data))
    except ConfigError as err:
        raise config_error(where, str(err)) from None


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
            raise config_error(where, "expected a mapping with source and target")
        check_keys(data, ("source", "target", "target_test"), where)
        missing = [k for k in ("source", "target") if k not in data]
        if missing:
            raise config_error(where, f"missing key(s) {', '.join(missing)}")
        return cls(
            source=read_path(data["source"], f"{where}.source", base),
            target=read_path(data["target"], f"{where}.target", base),
            target_test=read_amount(data.get("target_test", 0.25), f"{where}.target_test"),
        )


@dataclass
class SplitSettings:
    """How splits are drawn when no ``splits`` file is given (see :func:`atso_med.data.splits.make_splits`)."""

    labeled: int | float = 0.1
    test: int | float = 0.25
    validation: int | float = 0

    @classmethod
    def from_dict(cls, data: Any, where: str = "split") -> SplitSettings:
        data = section(data, ("labeled", "test", "validation"), where)
        defaults = cls()
        return cls(
            **{
                name: read_amount(data.get(name, getattr(defaults, name)), f"{where}.{name}")
                for name in ("labeled", "test", "validation")
            }
        )


@dataclass
class ClassReduction:
    """The paper's class reduction (its Section 5.2 and appendix D) for an experiment of several classes.

    Generations 1..T train on pseudo labels scored at merged groups: the students predict every
    class, and on pseudo-labelled cases the loss sums each group's class probabilities, so a
    teacher's confusion between classes of one group is not taught (labeled cases keep the
    per-class loss). Every training then has the softmax class head (a training's
    ``class_activation`` in ``training.overrides`` replaces it, as an ablation). With ``fine_tune``,
    each strategy's final model is then fine-tuned on the fine-class pseudo labels of the last
    generation (its teachers' labels at generation T + 1; the paper's 5 -> 19 classes), and that
    model is the strategy's final one.

    Attributes:
        groups: group name -> the names of its classes (every class of ``classes`` in one group).
        fine_tune: add the fine-class fine-tuning after generation T.
    """

    groups: dict[str, list[str]]
    fine_tune: bool = True

    @classmethod
    def from_dict(cls, data: Any, where: str = "class_reduction") -> ClassReduction | None:
        if data is None:
            return None
        data = section(data, ("groups", "fine_tune"), where)
        groups = data.get("groups")
        if not isinstance(groups, Mapping) or not groups:
            raise config_error(f"{where}.groups", f"expected a mapping of group names to class names, got {groups!r}")
        members = {}
        for name, given in groups.items():
            names = [given] if isinstance(given, str) else given
            if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
                raise config_error(f"{where}.groups.{name}", f"expected a class name or a list of them, got {given!r}")
            members[str(name)] = list(names)
        return cls(members, read_bool(data.get("fine_tune", True), f"{where}.fine_tune"))


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
        data = section(data, ("overlay_cases", "own_fold_predictions", "metric"), where)
        settings = cls(**dict(data))
        settings.overlay_cases = read_int(settings.overlay_cases, f"{where}.overlay_cases", 0)
        settings.own_fold_predictions = read_bool(settings.own_fold_predictions, f"{where}.own_fold_predictions")
        if settings.metric is not None:
            read_choice(settings.metric, REPORT_METRICS, f"{where}.metric")
        return settings


_TOP_KEYS = (
    "output_dir",
    "dataset",
    "splits",
    "split",
    "transfer",
    "foreground",
    "classes",
    "class_reduction",
    "strategies",
    "generations",
    "folds",
    "fold_training",
    "fold_init",
    "pseudo_label_confidence",
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
        classes: the organ chosen by name among ``dataset.json``'s ``labels`` instead of
            ``foreground`` (:func:`~atso_med.data.class_selection.select_classes`; ``None``: off).
        class_reduction: pseudo labels scored at merged groups of ``classes`` (``None``: off).
        strategies: which strategies to run (``supervised`` is always trained: it is M0).
        generations: T, the number of teacher-student generations.
        folds: K, reference folds of ATSO (``None``: the splits' fold count, or 2 when drawn).
        fold_training: ATSO's fold models: ``own`` (Algorithm 1, the paper: fold model ``k`` trains
            on fold ``k``'s pseudo labels, and the other fold models label fold ``k``) or ``others``
            (leave-one-fold-out, beyond the paper: fold model ``k`` trains on every other fold and
            labels fold ``k`` alone, so each model sees (K - 1) / K of the reference set; the same
            trainings as ``own`` for K = 2).
        fold_init: how ATSO's fold models start: ``scratch`` (Algorithm 1, the paper: every
            generation from the same initialisation, ``training.init_mode``) or ``continue``
            (beyond the paper: fold model ``k`` of generation ``t`` fine-tunes fold model ``k`` of
            ``t - 1``, M0 at ``t = 1``, as self-learning fine-tunes its teacher, and a model of all
            of each generation's labels continues its own chain the same way, the last being the
            final model; the fold isolation holds, since a fold model only ever trains on the folds
            it does not label).
        pseudo_label_confidence: beyond the paper (``None``: off, the paper's protocol): a pseudo-label
            voxel whose teachers' mean probability of the class it names (at background: one minus
            the sum of the class probabilities) is below this value, in (0.5, 1), is left out of every
            student's loss (:func:`~atso_med.inferers.fusion.uncertain_voxels_file`); the
            teachers' predictions of the reference set then keep their probability maps.
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
    classes: str | list[str] | dict[str, Any] | None = None
    class_reduction: ClassReduction | None = None
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    generations: int = 5
    folds: int | None = None
    fold_training: str = "own"
    fold_init: str = "scratch"
    pseudo_label_confidence: float | None = None
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
        check_keys(data, _TOP_KEYS, where)
        if "output_dir" not in data or data["output_dir"] in (None, ""):
            raise config_error(where, "output_dir is required (the experiment folder)")
        has_dataset, has_transfer = data.get("dataset") is not None, data.get("transfer") is not None
        if has_dataset == has_transfer:
            raise config_error(
                where, "give exactly one of 'dataset' (semi-supervised) and 'transfer' (source + target)"
            )
        if has_transfer and data.get("splits") is not None:
            raise config_error(
                where,
                "'splits' cannot be combined with 'transfer' (the transfer splits are drawn from the two data sets)",
            )
        config = cls(output_dir=read_path(data["output_dir"], f"{where}.output_dir", base))
        if has_dataset:
            config.dataset = read_path(data["dataset"], f"{where}.dataset", base)
        if data.get("splits") is not None:
            config.splits = read_path(data["splits"], f"{where}.splits", base)
        config.split = SplitSettings.from_dict(data.get("split"), f"{where}.split")
        if has_transfer:
            config.transfer = TransferConfig.from_dict(data["transfer"], base, f"{where}.transfer")
        config.foreground = read_foreground(data.get("foreground"), f"{where}.foreground")
        if data.get("classes") is not None:
            if config.foreground is not None:
                raise config_error(
                    where, "give the organ either as 'foreground' values or as 'classes' names, not both"
                )
            config.classes = read_classes(data["classes"], f"{where}.classes")
        config.class_reduction = ClassReduction.from_dict(data.get("class_reduction"), f"{where}.class_reduction")
        if config.class_reduction is not None and config.classes is None:
            raise config_error(f"{where}.class_reduction", "merges classes: choose them with 'classes' first")
        config.strategies = _strategies(data.get("strategies", list(STRATEGIES)), f"{where}.strategies")
        config.generations = read_int(data.get("generations", 5), f"{where}.generations", 0)
        if data.get("folds") is not None:
            config.folds = read_int(data["folds"], f"{where}.folds", 2)
        config.fold_training = read_choice(data.get("fold_training", "own"), FOLD_TRAINING, f"{where}.fold_training")
        config.fold_init = read_choice(data.get("fold_init", "scratch"), FOLD_INIT, f"{where}.fold_init")
        if data.get("pseudo_label_confidence") is not None:
            config.pseudo_label_confidence = read_float(
                data["pseudo_label_confidence"], f"{where}.pseudo_label_confidence"
            )
            if not 0.5 < config.pseudo_label_confidence < 1.0:
                raise config_error(
                    f"{where}.pseudo_label_confidence",
                    f"must be in (0.5, 1) (or null: off), got {config.pseudo_label_confidence}",
                )
        config.planes = read_planes(data.get("planes", list(PLANES)), f"{where}.planes")
        config.seed = read_int(data.get("seed", 0), f"{where}.seed", 0)
        config.devices = read_devices(data.get("devices", ["auto"]), f"{where}.devices")
        if data.get("long_axis_spacing") is not None:
            config.long_axis_spacing = read_float(
                data["long_axis_spacing"], f"{where}.long_axis_spacing", positive=True
            )
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
            raise config_error(
                f"{where}.generations", "is 0, but a semi-supervised strategy needs at least one generation"
            )
        return config

    @property
    def fine_tuned(self) -> bool:
        """Whether each strategy's final model is fine-tuned on fine-class pseudo labels after a class reduction."""
        return self.class_reduction is not None and self.class_reduction.fine_tune

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
            "classes": self.classes,
            "class_reduction": None if self.class_reduction is None else asdict(self.class_reduction),
            "strategies": self.strategies,
            "generations": self.generations,
            "folds": self.folds,
            "fold_training": self.fold_training,
            "fold_init": self.fold_init,
            "pseudo_label_confidence": self.pseudo_label_confidence,
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


def _strategies(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise config_error(where, f"expected a list among {', '.join(STRATEGIES)}")
    unknown = [v for v in value if v not in STRATEGIES]
    if unknown:
        raise config_error(
            where,
            f"unknown strateg{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; expected among {', '.join(STRATEGIES)}",
        )
    # M0 is everyone's generation 0: always there, always first; report order is fixed.
    chosen = set(value) | {"supervised"}
    return [s for s in STRATEGIES if s in chosen]
