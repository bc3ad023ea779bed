"""MLflow tracking of an ATSO experiment: one parent run, a child run per training and per evaluation.

Off unless the experiment asks for it (``tracking: {mlflow: {tracking_uri: ...}}`` or
``atso-med run --tracking-uri``). The runs are written from the journal once the experiment is
complete, so what MLflow shows is what ``state.json`` holds, whichever process (or resumed run)
did each step. ``mlflow`` (the ``tracking`` extra) is imported only then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atso_med.atso.config import ExperimentConfig, MLflowSettings

if TYPE_CHECKING:
    from atso_med.atso.steps import Step

__all__ = ["log_experiment"]

#: Where the table's DSC of a set lies in the report: ``@R`` pseudo labels of the reference set, ``@E`` test set.
_SETS = {"R": "reference", "E": "test"}


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
