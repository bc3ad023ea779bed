"""The train step of an experiment: a plan step's bundle settings, its job, and its record.

A ``train`` step is one plane's training of a model set. :func:`training_job` writes its data list
(:func:`atso_med.atso.generations.write_training_datalist`) and turns the step into a
:class:`~atso_med.atso.training_runs.TrainingJob` (the train bundle's keys of the step), which an
executor runs anywhere; :func:`training_record` writes what the runner knows of the finished
training beside its ``model.pt`` (``training.json``) and gives the journal's result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atso_med.atso.cases import ExperimentData
from atso_med.atso.config import ExperimentConfig
from atso_med.atso.generations import write_training_datalist
from atso_med.atso.layout import TRAINING_RECORD_FILE, ExperimentLayout
from atso_med.atso.steps import Step
from atso_med.atso.training_config import TrainingConfig
from atso_med.atso.training_runs import TrainingJob
from atso_med.data.class_selection import ClassSelection
from atso_med.files import write_text_atomic

__all__ = ["training_iterations", "training_job", "training_record", "training_settings"]


def training_iterations(training: TrainingConfig, step: Step) -> int:
    """The iterations of a ``train`` step: the budget for its cases, stage J's share of it from M0's snapshot."""
    snapshot = step.params["init"]["kind"] == "snapshot"
    return training.iterations_for(len(step.params["train_ids"]), stage_j_only=snapshot)


def training_settings(
    config: ExperimentConfig,
    layout: ExperimentLayout,
    step: Step,
    foreground: list[int] | None = None,
    selection: ClassSelection | None = None,
) -> dict[str, Any]:
    """The train bundle's keys of one training (its settings overlay file), but the device.

    Args:
        config: the experiment (recipe, seeds, HU window, spacing, overrides).
        layout: the experiment folder.
        step: the ``train`` step (``datalist``, ``output_dir``, ``plane``, ``init``).
        foreground: the label values of the organ (:attr:`~atso_med.atso.cases.ExperimentData.foreground`).
        selection: several classes chosen by name (:attr:`~atso_med.atso.cases.ExperimentData.label_classes`):
            the training then learns them (the bundle's ``classes``) instead of ``foreground``.

    Returns:
        The keys; the experiment's ``training.overrides`` last.
    """
    training = config.training
    init = step.params["init"]
    iterations = training_iterations(training, step)
    init_file = None
    if init["kind"] in ("finetune", "snapshot"):
        init_file = layout.path(init["weights"])  # the teacher's model.pt, or M0's stage-S+I snapshot
    elif training.init_weights is not None:
        init_file = Path(training.init_weights)
    settings: dict[str, Any] = {
        "datalist": str(layout.path(step.params["datalist"])),
        "output_dir": str(layout.path(step.params["output_dir"])),
        "plane": step.params["plane"],
        **training.bundle_settings(),
        "num_workers": training.num_workers,
        "seed": training.seed,
        "init_seed": training.init_seed,
        "amp": training.amp,
        "progress_bar": False,
        "resume": False,
        "iterations": iterations,
        "val_interval": training.val_interval or max(1, iterations // 10),
        "save_interval": (training.save_interval or max(1, iterations // 10))
        if training.resume == "checkpoint"
        else iterations,
        "hu_window": list(training.hu_window),
    }
    if init_file is not None:
        settings["init_weights"] = str(init_file)
    if init.get("save_snapshot"):
        settings["snapshot_file"] = init["save_snapshot"]
    if init["kind"] == "snapshot":
        # The snapshot has been through stages S and I: the student trains stage J only.
        settings["stage_fractions"] = [0.0, 0.0, 1.0]
    if selection is not None:
        settings["classes"] = selection.to_spec()
        if config.class_reduction is not None:
            # Every training of a reduced experiment has the softmax head, M0 included: the students start
            # from its weights (snapshot, fine-tuning), and with independent sigmoids the largest class of
            # a group takes the group's pseudo-labelled voxels (README, class reduction).
            settings["class_activation"] = "softmax"
            if any(e.get("label_level") == "groups" for e in step.params["pseudo_labels"].values()):
                settings["class_groups"] = config.class_reduction.groups
    elif foreground is not None:
        settings["foreground"] = list(foreground)
    if config.long_axis_spacing is not None:
        settings["long_axis_spacing"] = config.long_axis_spacing
    settings.update(training.overrides)
    return settings


def training_job(config: ExperimentConfig, layout: ExperimentLayout, data: ExperimentData, step: Step) -> TrainingJob:
    """The job of a training step, its data list written, for any executor to run.

    Args:
        config: the experiment.
        layout: the experiment folder.
        data: the experiment's data set and splits.
        step: the ``train`` step.

    Returns:
        The job: the train bundle's config files and :func:`training_settings`.
    """
    from atso_med.engines.bundle_runner import config_files

    write_training_datalist(layout, data.dataset, data.splits, step)
    log_file = layout.log_file
    if config.distributed is not None:
        # Ray workers on other machines: one file per training, not appends to one shared file.
        log_file = layout.training_log(step.params["output_dir"])
    return TrainingJob(
        step.id,
        config_files("train"),
        training_settings(config, layout, step, data.foreground, data.label_classes),
        str(log_file),
        config.training.resume == "checkpoint",
    )


def training_record(
    config: ExperimentConfig, layout: ExperimentLayout, step: Step, result: Mapping[str, Any]
) -> dict[str, Any]:
    """Record a finished training beside its model (``training.json``), its checkpoints removed unless kept.

    Args:
        config: the experiment (``training.keep_checkpoints``).
        layout: the experiment folder.
        step: the ``train`` step.
        result: what the training returned (weight hashes, iterations, seconds, command).

    Returns:
        The journal's result: weight hashes, iterations, seconds and the ``model`` file.
    """
    out = layout.path(step.params["output_dir"])
    if not config.training.keep_checkpoints:
        for checkpoint in out.glob("checkpoint_*.pt"):
            checkpoint.unlink()
        (out / "model_best.pt").unlink(missing_ok=True)
    record = {
        "step": step.id,
        "model": step.params["model"],
        "plane": step.params["plane"],
        "init": step.params["init"],
        "train_ids": step.params["train_ids"],
        "initial_weights_sha256": result.get("initial_weights_sha256"),
        "model_sha256": result.get("model_sha256"),
        "iterations": result.get("iterations"),
        "seconds": result.get("seconds"),
        "command": result.get("command"),
    }
    write_text_atomic(json.dumps(record, indent=2) + "\n", out / TRAINING_RECORD_FILE)
    return {k: record[k] for k in ("initial_weights_sha256", "model_sha256", "iterations", "seconds")} | {
        "model": f"{step.params['output_dir']}/model.pt"
    }
