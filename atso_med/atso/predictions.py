"""Predictions of an experiment: one model set's masks of a case set, by the bundle's inference workflow.

A prediction step runs ``configs/inference.json`` on the image-only data list of its case set
(``datalists/<set>.json``: the test set or one reference fold; a prediction never sees a label)
with the overrides :func:`prediction_overrides` gives; the experiment's log holds the equivalent
``python -m monai.bundle run`` command, which is exactly the run. The workflow skips cases whose
mask is already written (atomically), so a killed prediction resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from atso_med.atso.cases import ExperimentData
from atso_med.atso.config import ExperimentConfig
from atso_med.atso.layout import ExperimentLayout
from atso_med.atso.logs import logger, output_to
from atso_med.atso.steps import Step
from atso_med.errors import ConfigError
from atso_med.files import write_text_atomic

__all__ = ["BundlePredictor", "Predictor", "predict", "prediction_overrides", "write_prediction_datalists"]

#: The list of a prediction data list that holds its images.
_DATALIST_KEY = "testing"


class Predictor(Protocol):
    """Predicts the images of a data list with one model set into ``output_dir/<id>.nii.gz``."""

    def __call__(self, datalist: Path, model_dir: Path, output_dir: Path, save_probability: bool) -> list[dict]: ...


def prediction_overrides(
    config: ExperimentConfig, datalist: Path, model_dir: Path, output_dir: Path, save_probability: bool, device: str
) -> dict[str, Any]:
    """The inference workflow's keys of one prediction of an experiment.

    Args:
        config: the experiment (inference settings, long-axis spacing).
        datalist: the image-only data list to predict.
        model_dir: the model set (its ``plane_<P>/model.pt``).
        output_dir: where the masks go.
        save_probability: also write ``<id>_probability.nii.gz`` (a vote of an even number of
            model sets breaks ties with it).
        device: torch device.

    Returns:
        The overrides of ``configs/inference.json``, in the order of the logged command.
    """
    overrides = {
        "input": str(datalist),
        "datalist_key": _DATALIST_KEY,
        "model_dir": str(model_dir),
        "output_dir": str(output_dir),
        **config.inference_settings(),
        "save_probability": save_probability,
        "device": device,
    }
    if config.long_axis_spacing is not None:
        overrides["long_axis_spacing"] = config.long_axis_spacing
    return overrides


class BundlePredictor:
    """The default predictor: the bundle's inference workflow (``configs/inference.json``).

    Args:
        config: the experiment (inference settings, long-axis spacing).
        device: torch device to predict on.
    """

    def __init__(self, config: ExperimentConfig, device: str) -> None:
        self.config = config
        self.device = device

    def __call__(self, datalist: Path, model_dir: Path, output_dir: Path, save_probability: bool) -> list[dict]:
        """Predict every image of ``datalist`` with the model set of ``model_dir``.

        Args:
            datalist: image-only data list (its ``testing`` list).
            model_dir: the model set.
            output_dir: where ``<id>.nii.gz`` (and ``<id>_probability.nii.gz``) go.
            save_probability: also write the probability maps.

        Returns:
            One statistics dict per case, in data-list order (``status`` ``skipped`` for a case
            written before).

        Raises:
            CaseFailuresError: after the other cases, when a case could not be predicted.
        """
        from atso_med.engines.bundle_runner import config_files, run_workflow

        overrides = prediction_overrides(self.config, datalist, model_dir, output_dir, save_probability, self.device)
        return run_workflow(config_files("inference"), overrides, workflow_type="infer").evaluator.results


def write_prediction_datalists(layout: ExperimentLayout, data: ExperimentData) -> None:
    """Write the image-only data list of the test set and of each reference fold.

    Args:
        layout: the experiment folder (``datalists/<set>.json``).
        data: the experiment's data set and splits.
    """
    splits = data.splits
    sets = {"test": splits.test, **{f"fold{k}": fold for k, fold in enumerate(splits.reference)}}
    for name, ids in sets.items():
        # Images only: a prediction never sees a label.
        items = [{"id": i, "image": str(data.dataset.case(i).image)} for i in ids]
        extra = [{"series_uid": data.dataset.case(i).series_uid} for i in ids]
        for item, more in zip(items, extra, strict=True):
            if more["series_uid"]:
                item.update(more)
        write_text_atomic(json.dumps({_DATALIST_KEY: items}, indent=2) + "\n", layout.prediction_datalist(name))


def predict(
    layout: ExperimentLayout, step: Step, config: ExperimentConfig, predictor: Predictor, device: str
) -> dict[str, Any]:
    """Run a ``predict`` step: its model set on its case set, logging the equivalent bundle command.

    Args:
        layout: the experiment folder.
        step: the step (``set``, ``model_dir``, ``output_dir``, ``ids``, ``save_probability``).
        config: the experiment.
        predictor: runs the prediction (:class:`BundlePredictor`, or a test's fake).
        device: torch device, in the logged command.

    Returns:
        The journal's result: ``{"cases", "output_dir", "stopped_round"}`` (the coarse-to-fine
        round each case stopped at).

    Raises:
        ConfigError: a case's mask was not written.
    """
    from atso_med.engines.bundle_runner import bundle_command, config_files

    params = step.params
    datalist = layout.prediction_datalist(params["set"])
    model_dir = layout.path(params["model_dir"])
    out = layout.path(params["output_dir"])
    overrides = prediction_overrides(config, datalist, model_dir, out, params["save_probability"], device)
    logger.info(
        "predict %s (%d cases): %s", step.id, len(params["ids"]), bundle_command(config_files("inference"), overrides)
    )
    with output_to(layout.log_file):
        stats = predictor(datalist, model_dir, out, params["save_probability"])
    missing = [i for i in params["ids"] if not layout.case_file(params["output_dir"], i).is_file()]
    if missing:
        raise ConfigError(f"prediction {step.id} did not write {missing}")
    rounds = {s["id"]: s.get("stopped_round") for s in stats if isinstance(s, Mapping) and "id" in s}
    return {"cases": len(params["ids"]), "output_dir": params["output_dir"], "stopped_round": rounds}
