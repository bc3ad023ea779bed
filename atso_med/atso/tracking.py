"""MLflow tracking of an ATSO experiment: one parent run, a child run per training and per evaluation.

Off unless the experiment asks for it (``tracking: {mlflow: {tracking_uri: ...}}`` or
``atso-med run --tracking-uri``). The runs are written from the journal once the experiment is
complete, so what MLflow shows is what ``state.json`` holds, whichever process (or resumed run)
did each step. ``mlflow`` (the ``tracking`` extra) is imported only then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atso_med.errors import ConfigError
from atso_med.extras import require_extra

if TYPE_CHECKING:
    from atso_med.atso.config import ExperimentConfig
    from atso_med.atso.strategies import Step

__all__ = ["MLflowSettings", "log_experiment", "require_mlflow"]

#: Where the table's DSC of a set lies in the report: ``@R`` pseudo labels of the reference set, ``@E`` test set.
_SETS = {"R": "reference", "E": "test"}


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


def _preset(config: ExperimentConfig) -> str:
    from atso_med.engines import resolve_recipe

    return resolve_recipe(config.training.recipe, preset=config.training.preset).preset


def _training_runs(
    config: ExperimentConfig, trainings: Sequence[tuple[Step, Mapping[str, Any]]]
) -> list[tuple[str, dict[str, Any], dict[str, float]]]:
    preset = _preset(config)
    runs = []
    for step, result in trainings:
        params = {
            "strategy": step.tags["strategy"],
            "generation": step.tags["generation"],
            "fold": step.tags["model"],
            "plane": step.params["plane"],
            "preset": preset,
        }
        metrics = {k: float(result[k]) for k in ("seconds", "iterations") if result.get(k) is not None}
        runs.append((step.id, params, metrics))
    return runs


def _evaluation_runs(report: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, float]]]:
    key = f"{report['metric']}_dsc"
    runs = []
    for strategy, content in report["strategies"].items():
        for generation, sets in content.get("generations", {}).items():
            metrics = {f"dsc_{tag}": float(sets[name][key]) for tag, name in _SETS.items() if name in sets}
            params = {"strategy": strategy, "generation": int(generation), "fold": "all", "metric": report["metric"]}
            runs.append((f"evaluate/{strategy}/gen{generation}", params, metrics))
        if "test" in content.get("final", {}):
            params = {"strategy": strategy, "generation": "final", "fold": "all", "metric": report["metric"]}
            runs.append((f"evaluate/{strategy}/final", params, {"dsc_E": float(content["final"]["test"][key])}))
    return runs


def log_experiment(
    folder: Path,
    config: ExperimentConfig,
    trainings: Sequence[tuple[Step, Mapping[str, Any]]],
    report: Mapping[str, Any],
    settings: MLflowSettings,
) -> str:
    """Logs a finished experiment from its journal and report.

    Args:
        folder: the experiment folder (names the MLflow experiment unless ``settings`` does).
        config: the experiment's configuration.
        trainings: every training step of the plan with its journal result.
        report: the experiment's report.
        settings: where to log.

    Returns:
        The parent run's id.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    name = settings.experiment_name or folder.name
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
    parent = client.create_run(experiment_id, run_name=str(folder), tags={"atso_med.experiment": str(folder)})
    for key, value in {
        "strategies": ",".join(config.strategies),
        "generations": config.generations,
        "planes": ",".join(config.planes),
        "seed": config.seed,
        "recipe": config.training.recipe,
        "preset": _preset(config),
    }.items():
        client.log_param(parent.info.run_id, key, value)
    for run_name, params, metrics in _training_runs(config, trainings) + _evaluation_runs(report):
        child = client.create_run(experiment_id, run_name=run_name, tags={"mlflow.parentRunId": parent.info.run_id})
        for key, value in params.items():
            client.log_param(child.info.run_id, key, value)
        for key, value in metrics.items():
            client.log_metric(child.info.run_id, key, value)
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id
