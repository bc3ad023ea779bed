"""MLflow tracking of an ATSO experiment: one parent run, a child run per training and per evaluation.

Off unless the experiment asks for it (``tracking: {mlflow: {tracking_uri: ...}}`` or
``atso-med run --tracking-uri``). The runs are written from the journal once the experiment is
complete, so what MLflow shows is what ``state.json`` holds, whichever process (or resumed run)
did each step. ``mlflow`` (the ``tracking`` extra) is imported only then.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from atso_med.errors import ConfigError

if TYPE_CHECKING:
    from atso_med.atso.trainer import ATSOTrainer

__all__ = ["MLflowSettings", "log_experiment", "require_mlflow"]

#: Where the table's DSC of a set lies in the report: ``@R`` pseudo labels of the reference set, ``@E`` test set.
_SETS = {"R": "reference", "E": "test"}


def require_mlflow(what: str) -> None:
    """Refuses before any work when MLflow is not installed.

    Args:
        what: the option that needs it, named in the message.

    Raises:
        ConfigError: ``mlflow`` cannot be imported.
    """
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(f"{what} needs MLflow: pip install -c constraints.txt -e \".[tracking]\"")


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
            raise ConfigError(f"{where}: expected {{mlflow: {{tracking_uri: URI, experiment_name: NAME}}}}, got {data!r}")
        mlflow = dict(data["mlflow"])
        unknown = sorted(set(mlflow) - {"tracking_uri", "experiment_name"})
        if unknown:
            raise ConfigError(f"{where}.mlflow: unknown key(s) {', '.join(unknown)}; expected tracking_uri, experiment_name")
        uri = mlflow.get("tracking_uri")
        if not isinstance(uri, str) or not uri.strip():
            raise ConfigError(f"{where}.mlflow.tracking_uri: expected a tracking URI such as sqlite:///mlflow.db, got {uri!r}")
        name = mlflow.get("experiment_name")
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"{where}.mlflow.experiment_name: expected a string, got {name!r}")
        require_mlflow(f"{where}.mlflow")
        return cls(tracking_uri=uri, experiment_name=name)


def _preset(trainer: ATSOTrainer) -> str:
    from atso_med.engines import resolve_recipe

    return resolve_recipe(trainer.config.training.recipe, preset=trainer.config.training.preset).preset


def _training_runs(trainer: ATSOTrainer) -> list[tuple[str, dict[str, Any], dict[str, float]]]:
    preset = _preset(trainer)
    runs = []
    for step in trainer.plan:
        if step.kind != "train":
            continue
        result = trainer.journal.result(step.id)
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


def log_experiment(trainer: ATSOTrainer, settings: MLflowSettings) -> str:
    """Logs a finished experiment from its journal and report.

    Args:
        trainer: the experiment, after :meth:`ATSOTrainer.run` (plan, journal and report loaded).
        settings: where to log.

    Returns:
        The parent run's id.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    name = settings.experiment_name or trainer.dir.name
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
    config = trainer.config
    parent = client.create_run(experiment_id, run_name=str(trainer.dir), tags={"atso_med.experiment": str(trainer.dir)})
    for key, value in {
        "strategies": ",".join(config.strategies),
        "generations": config.generations,
        "planes": ",".join(config.planes),
        "seed": config.seed,
        "recipe": config.training.recipe,
        "preset": _preset(trainer),
    }.items():
        client.log_param(parent.info.run_id, key, value)
    for run_name, params, metrics in _training_runs(trainer) + _evaluation_runs(trainer.report):
        child = client.create_run(experiment_id, run_name=run_name, tags={"mlflow.parentRunId": parent.info.run_id})
        for key, value in params.items():
            client.log_param(child.info.run_id, key, value)
        for key, value in metrics.items():
            client.log_metric(child.info.run_id, key, value)
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id
