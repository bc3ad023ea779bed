"""ExperimentRunner: runs an experiment's plan step by step, journaled, resumable, with reports at the end.

An experiment folder is laid out as :mod:`atso_med.atso.layout` says; the plan
(:mod:`atso_med.atso.strategies`) names every step's inputs and outputs in it, and the journal
(``state.json``) records each finished step. The runner executes the steps not yet in the journal:
trainings through an executor (:mod:`atso_med.atso.executors`: this process, one worker per local
device, or a Ray cluster), predictions, pseudo-label votes, evaluations and the reports here.

M0 (``models/supervised/gen0/all``) is every strategy's generation 0; generation 1's pseudo labels
of every strategy are copies of M0's predictions.

Truth labels of reference and test cases are read by evaluations only; training data lists are
built by :func:`atso_med.data.dataset.training_datalist`, which never reads a reference case's
label, except for the ``fully_supervised`` upper bound (its plan step lists them as ``truth_ids``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from atso_med.atso.cases import ExperimentData, load_experiment_data
from atso_med.atso.config import ExperimentConfig
from atso_med.atso.console import eta_text, progress_bar
from atso_med.atso.executors import InProcessExecutor, TrainingExecutor, WorkerPoolExecutor
from atso_med.atso.journal import Journal
from atso_med.atso.layout import JOURNAL_FILE, LOCK_FILE, TRAINING_RECORD_FILE, ExperimentLayout
from atso_med.atso.lock import FolderLock
from atso_med.atso.logs import experiment_log, logger, output_to
from atso_med.atso.strategies import PlanInputs, Step, build_plan
from atso_med.atso.training_runs import TrainingJob
from atso_med.errors import ConfigError, DatasetError
from atso_med.files import atomic_write, check_outside_data_folder, write_text_atomic

#: Exit status of a run stopped on purpose by ``stop_after`` (a debugging aid for resume tests).
STOP_EXIT_STATUS = 75
# Settings that may change between a run and its resumption without changing any result.
# Where the work runs is one of them: a run started on a cluster resumes on one machine and back.
_RESUMABLE_CHANGES = ("devices", "distributed", "tracking")


class TrainingRunner(Protocol):
    """Runs one training: ``(configs, overrides) -> {"initial_weights_sha256", "model_sha256", ...}``."""

    def __call__(self, configs: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]: ...


class Predictor(Protocol):
    """Predicts the images of a data list with one model set into ``output_dir/<id>.nii.gz``."""

    def __call__(self, datalist: Path, model_dir: Path, output_dir: Path, save_probability: bool) -> list[dict]: ...


class BundlePredictor:
    """The default predictor: :func:`atso_med.prediction.predict_datalist` (the inference bundle's engine).

    Args:
        config: the experiment (inference settings, long-axis spacing, foreground).
        device: torch device to predict on.
    """

    def __init__(self, config: ExperimentConfig, device: str) -> None:
        self.inference = config.inference
        self.long_axis_spacing = config.long_axis_spacing
        self.device = device

    def __call__(self, datalist: Path, model_dir: Path, output_dir: Path, save_probability: bool) -> list[dict]:
        from atso_med.prediction import predict_datalist

        return predict_datalist(
            str(datalist),
            str(model_dir),
            output_dir,
            config=self.inference,
            device=self.device,
            save_probability=save_probability,
            long_axis_spacing=self.long_axis_spacing,
            datalist_key="testing",
        )


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return device


def _refuse_unverified_cases(data: ExperimentData) -> None:
    """Refuse, before the first training, every case the experiment reads that ``verify`` refuses.

    A bad reference case would otherwise surface when it is first pseudo-labelled, after the
    labeled-only trainings, or in generation 3 for a fold predicted late.

    Raises:
        DatasetError: naming each bad case, its role and its problems.
    """
    from atso_med.data.verify import verify_dataset

    report = verify_dataset(data.dataset, data.splits)
    problems = [
        f"{row.id} ({row.role}): {'; '.join(row.errors)}" for row in report.rows if row.errors and row.role != "unused"
    ]
    problems += report.split_errors
    if problems:
        raise DatasetError(
            f"{len(problems)} problem(s) in the experiment's cases; nothing was trained "
            "(atso-med verify DATASET --splits SPLITS shows the full report):\n  " + "\n  ".join(problems)
        )


class ExperimentRunner:
    """Run (or resume) an ATSO experiment: supervised, fully supervised, self-learning, STSO and ATSO.

    Args:
        config: the experiment, or the path of its YAML file.
        resume: continue the experiment found in ``output_dir`` from its journal. Without it an
            existing experiment folder is refused.
        stop_after: debugging aid: exit the process abruptly (``os._exit``) once this many steps
            have finished in this run, as a kill would; for resume tests.
        predictor: replaces the whole-volume predictor (tests inject a fake).
        training_runner: replaces the bundle training (:func:`~atso_med.atso.training_runs.run_training`)
            in this process (tests inject a fake; not used by worker processes or Ray).
        progress: show a progress bar with an estimate of the time left.
        console: where progress and summaries go (default: standard error).
        output_dir: overrides the configuration's ``output_dir``.

    Raises:
        ConfigError: invalid configuration (checked before any work).
    """

    def __init__(
        self,
        config: ExperimentConfig | str | os.PathLike,
        resume: bool = False,
        stop_after: int | None = None,
        predictor: Predictor | None = None,
        training_runner: TrainingRunner | None = None,
        progress: bool = True,
        console: Any = None,
        output_dir: str | os.PathLike | None = None,
    ) -> None:
        from atso_med.flags import as_bool

        if not isinstance(config, ExperimentConfig):
            # an output_dir given here is relative to the working directory, not to the YAML file
            config = ExperimentConfig.load(config, output_dir=str(Path(output_dir).resolve()) if output_dir else None)
        elif output_dir:
            config.output_dir = Path(output_dir).resolve()
        self.config = config
        self.resume = as_bool(resume)
        if stop_after is not None and (isinstance(stop_after, bool) or int(stop_after) < 1):
            raise ConfigError(f"stop_after must be a positive number of steps, got {stop_after!r}")
        self.stop_after = None if stop_after is None else int(stop_after)
        self.devices = [_resolve_device(d) for d in config.devices]
        self.predictor = predictor
        self.training_runner = training_runner
        self.progress = progress
        self.console = console
        self.dir = Path(config.output_dir)
        self.layout = ExperimentLayout(self.dir)
        self.data: ExperimentData | None = None
        self.plan: list[Step] = []
        self.journal: Journal | None = None
        self.report: dict[str, Any] | None = None
        self._finished_here = 0
        #: Remarks found while preparing (logged once the log file is open).
        self.notes: list[str] = []
        self._lock = FolderLock(self.dir)
        self._executor: TrainingExecutor | None = None

    # ------------------------------------------------------------------ setup

    def prepare(self) -> list[Step]:
        """Check inputs and the experiment folder, write config, splits, data lists and plan.

        Returns:
            The plan.

        Raises:
            ConfigError: an existing experiment without ``resume``, or a resumed experiment whose
                configuration or splits differ from this one.
            FolderInUseError: another process runs this experiment (the folder stays locked
                until :meth:`run` ends or this process exits).
        """
        config = self.config
        layout = self.layout
        journal_file = layout.journal_file
        if journal_file.exists() and not self.resume:
            raise ConfigError(
                f"{self.dir} already holds an experiment ({JOURNAL_FILE}); resume it with --resume "
                "or choose another output_dir"
            )
        if self.dir.exists() and not self.dir.is_dir():
            raise ConfigError(f"output_dir {self.dir} is a file")
        self._check_inputs_are_not_outputs()
        started = layout.config_file.is_file()  # a run killed before its first journal write
        if (
            self.dir.is_dir()
            and not journal_file.exists()
            and not started
            and any(p.name != LOCK_FILE for p in self.dir.iterdir())
        ):
            raise ConfigError(
                f"output_dir {self.dir} is not empty and holds no experiment; choose an empty or new folder"
            )
        if self.resume and layout.config_file.is_file():
            self._check_same_config()
        self.data = data = load_experiment_data(config, self.dir)
        if not journal_file.exists():  # a resumed experiment was verified when it started
            _refuse_unverified_cases(data)
        if "fully_supervised" in config.strategies:
            unlabeled = [i for i in data.splits.reference_ids if i not in data.with_truth]
            if unlabeled:
                self.notes.append(
                    f"fully_supervised is skipped: {len(unlabeled)} reference case(s) have no label (e.g. {unlabeled[0]})"
                )
        self.plan = build_plan(
            PlanInputs(
                strategies=config.strategies,
                generations=config.generations,
                planes=config.planes,
                labeled=data.splits.labeled,
                reference=data.splits.reference,
                test=data.splits.test,
                with_truth=data.with_truth,
                own_fold_predictions=config.report.own_fold_predictions,
                init_mode=config.training.init_mode,
            )
        )
        digest = plan_digest(self.plan)
        self._lock.acquire()  # before the first write: a second run must not interleave its files
        splits_file = layout.splits_file
        if self.resume and splits_file.is_file():
            from atso_med.data.splits import Splits

            if Splits.load(splits_file).to_dict() != data.splits.to_dict():
                raise ConfigError(f"{splits_file} differs from the splits of this configuration; it cannot be resumed")
        write_text_atomic(config.to_yaml(), layout.config_file)
        data.splits.write(splits_file)
        if config.transfer is not None:
            data.dataset.write(data.dataset_file)
        self._write_prediction_datalists()
        plan_text = json.dumps({"digest": digest, "steps": [s.to_dict() for s in self.plan]}, indent=1) + "\n"
        write_text_atomic(plan_text, layout.plan_file)
        self.journal = Journal(journal_file, digest)
        self.journal.save()
        return self.plan

    def _check_same_config(self) -> None:
        import yaml

        saved = yaml.safe_load(self.layout.config_file.read_text())
        current = self.config.resolved()
        differing = sorted(
            key
            for key in set(saved) | set(current)
            if key not in _RESUMABLE_CHANGES and saved.get(key) != current.get(key)
        )
        if differing:
            raise ConfigError(
                f"{self.layout.config_file} differs from this configuration in {', '.join(differing)}; "
                "an experiment is resumed with the configuration it was started with"
            )

    def _check_inputs_are_not_outputs(self) -> None:
        # The experiment folder must not contain the input data: outputs are never written
        # among the user's files, and a folder holding them is not mistaken for an experiment.
        data_sets = [self.config.dataset]
        if self.config.transfer is not None:
            data_sets += [self.config.transfer.source, self.config.transfer.target]
        for given in [*data_sets, self.config.splits]:
            if given is None:
                continue
            path = Path(given).resolve()
            folder = path.parent if path.is_file() or path.suffix else path
            if folder == self.dir.resolve():
                raise ConfigError(f"output_dir {self.dir} is the folder of the input {path}; choose another output_dir")
        for given in data_sets:
            check_outside_data_folder(self.dir, given, "output_dir")

    def _write_prediction_datalists(self) -> None:
        splits = self.data.splits
        sets = {"test": splits.test, **{f"fold{k}": fold for k, fold in enumerate(splits.reference)}}
        for name, ids in sets.items():
            # Images only: a prediction never sees a label.
            items = [{"id": i, "image": str(self.data.dataset.case(i).image)} for i in ids]
            extra = [{"series_uid": self.data.dataset.case(i).series_uid} for i in ids]
            for item, more in zip(items, extra, strict=True):
                if more["series_uid"]:
                    item.update(more)
            write_text_atomic(json.dumps({"testing": items}, indent=2) + "\n", self.layout.prediction_datalist(name))

    # ------------------------------------------------------------------ running

    def run(self) -> dict[str, Any]:
        """Run every step not yet in the journal, then write the reports.

        Returns:
            The report (also in ``reports/report.json``).
        """
        if self.journal is None:
            self.prepare()
        try:
            return self._run_pending()
        finally:
            self._lock.release()

    def _run_pending(self) -> dict[str, Any]:
        with experiment_log(self.layout.log_file):
            for note in self.notes:
                logger.warning(note)
            pending = [s for s in self.plan if not self.journal.is_done(s.id)]
            if not pending:
                print(
                    f"{self.dir}: the experiment is finished (all {len(self.plan)} steps done); nothing to run. "
                    f"Its report: {self.layout.reports_dir / 'report.md'}",
                    file=self.console or sys.stderr,
                )
            self._executor = executor = self._make_executor()
            logger.info(
                "experiment %s: %d steps, %d done, %d to run (trainings: %s)",
                self.dir,
                len(self.plan),
                len(self.plan) - len(pending),
                len(pending),
                executor.describe(),
            )
            try:
                with progress_bar(len(self.plan), len(self.plan) - len(pending), self.console, self.progress) as bar:
                    if executor.capacity > 1:
                        self._run_concurrently(pending, bar)
                    else:
                        for step in pending:
                            self._execute(step, bar)
            finally:
                executor.close()
            self.report = self.journal.result("report")
            if self.config.tracking is not None:
                from atso_med.atso.tracking import log_experiment

                trainings = [(s, self.journal.result(s.id)) for s in self.plan if s.kind == "train"]
                run_id = log_experiment(self.dir, self.config, trainings, self.report, self.config.tracking)
                logger.info("MLflow: parent run %s at %s", run_id, self.config.tracking.tracking_uri)
        return self.report

    def _make_executor(self) -> TrainingExecutor:
        if self.config.distributed is not None:
            from atso_med.atso.distributed import RayExecutor

            return RayExecutor(self.config.distributed)
        if len(self.devices) > 1:
            return WorkerPoolExecutor(self.devices, self.layout.log_file)
        return InProcessExecutor(self.devices[0], self.training_runner)

    def _execute(self, step: Step, bar: Any) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{step.id} | {self._eta_text()}", refresh=True)
        logger.info("step %s: start", step.id)
        start, cpu_start = time.perf_counter(), time.process_time()
        handler = {
            "train": self._train,
            "predict": self._predict,
            "fuse": self._fuse,
            "evaluate": self._evaluate,
            "report": self._report,
        }[step.kind]
        result = dict(handler(step))
        # CPU time of this process (all its threads): with other work on the machine it shows
        # what a step costs better than the wall clock.
        result.setdefault("cpu_seconds", round(time.process_time() - cpu_start, 3))
        self._finish(step, result, time.perf_counter() - start, bar)

    def _finish(self, step: Step, result: Mapping[str, Any], seconds: float, bar: Any) -> None:
        self.journal.record(step.id, result, seconds)
        logger.info("step %s: done in %.1f s", step.id, seconds)
        if bar is not None:
            bar.update(1)
        self._finished_here += 1
        if self.stop_after is not None and self._finished_here >= self.stop_after:
            logger.warning("stopping abruptly after %d steps (stop_after)", self._finished_here)
            if self._executor is not None:
                self._executor.close()
            for handler in logging.getLogger().handlers + logger.handlers:
                handler.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(STOP_EXIT_STATUS)

    def _run_concurrently(self, pending: list[Step], bar: Any) -> None:
        """Trainings on the executor, as many at once as it takes; every other step here, in plan order."""
        executor = self._executor
        waiting = list(pending)
        running: dict[str, tuple[Step, float]] = {}
        while waiting or running:
            progressed = False
            for step in list(waiting):
                if step.kind != "train" or len(running) >= executor.capacity or not self._ready(step, running):
                    continue
                self._submit_training(step)
                running[step.id] = (step, time.perf_counter())
                waiting.remove(step)
                progressed = True
            for finished in executor.wait(timeout=0.0 if progressed else 0.5):
                step, start = running.pop(finished.job.step_id)
                if finished.error is not None:
                    raise ConfigError(f"training {step.id} failed: {finished.error} (its output: {finished.log})")
                self._finish(step, self._after_training(step, finished.result), time.perf_counter() - start, bar)
                progressed = True
            for step in list(waiting):
                if step.kind != "train" and self._ready(step, running):
                    waiting.remove(step)
                    self._execute(step, bar)
                    progressed = True
                    break  # new trainings may have become ready: launch them first
            if not progressed and not running:
                blocked = ", ".join(s.id for s in waiting[:3])
                raise ConfigError(f"internal error: no step can run (e.g. {blocked})")

    def _ready(self, step: Step, running: Mapping[str, Any]) -> bool:
        return all(self.journal.is_done(r) for r in step.requires) and step.id not in running

    # ------------------------------------------------------------------ trainings

    def _training_settings(self, step: Step) -> dict[str, Any]:
        """The bundle keys of one training (its settings overlay file), but the device."""
        config, training = self.config, self.config.training
        out = self.layout.path(step.params["output_dir"])
        init = step.params["init"]
        init_file = None
        if init["kind"] in ("finetune", "snapshot"):
            init_file = self.layout.path(init["weights"])  # the teacher's model.pt, or M0's stage-S+I snapshot
        elif training.init_weights is not None:
            init_file = Path(training.init_weights)
        settings: dict[str, Any] = {
            "datalist": str(self.layout.path(step.params["datalist"])),
            "output_dir": str(out),
            "plane": step.params["plane"],
            **training.bundle_settings(),
            "num_workers": training.num_workers,
            "seed": training.seed,
            "init_seed": training.init_seed,
            "amp": training.amp,
            "progress_bar": False,
            "resume": False,
            "val_interval": training.val_interval or max(1, training.iterations // 10),
            "save_interval": (training.save_interval or max(1, training.iterations // 10))
            if training.resume == "checkpoint"
            else training.iterations,
        }
        if init_file is not None:
            settings["init_weights"] = str(init_file)
        if init.get("save_snapshot"):
            settings["snapshot_file"] = init["save_snapshot"]
        if init["kind"] == "snapshot":
            # The snapshot has been through stages S and I: the student trains stage J only.
            settings["iterations"] = max(1, round(training.iterations * training.stage_fractions[2]))
            settings["stage_fractions"] = [0.0, 0.0, 1.0]
        if config.foreground is not None:
            settings["foreground"] = list(config.foreground)
        if config.long_axis_spacing is not None:
            settings["long_axis_spacing"] = config.long_axis_spacing
        settings.update(training.overrides)
        return settings

    def _training_job(self, step: Step) -> TrainingJob:
        """The job of a training step (its data list written), for any executor to run."""
        from atso_med.engines.bundle_runner import config_files

        self._write_training_datalist(step)
        settings = self._training_settings(step)
        log_file = self.layout.log_file
        if self.config.distributed is not None:
            # Ray workers on other machines: one file per training, not appends to one shared file.
            log_file = self.layout.training_log(step.params["output_dir"])
        return TrainingJob(
            step.id, config_files("train"), settings, str(log_file), self.config.training.resume == "checkpoint"
        )

    def _write_training_datalist(self, step: Step) -> Path:
        from atso_med.data.datalist import write_datalist
        from atso_med.data.dataset import evaluation_datalist, training_datalist

        dataset, splits = self.data.dataset, self.data.splits
        pseudo = {}
        for entry in step.params["pseudo_labels"].values():
            for case_id in entry["ids"]:
                pseudo[case_id] = self.layout.case_file(entry["dir"], case_id)
        items = training_datalist(dataset, splits, pseudo, reference_truth=step.params["truth_ids"])
        trained = [item["id"] for item in items]
        if sorted(trained) != sorted(step.params["train_ids"]):
            raise ConfigError(f"internal error: the data list of {step.id} differs from its plan")
        validation = evaluation_datalist(dataset, splits.validation) if splits.validation else []
        return write_datalist(self.layout.path(step.params["datalist"]), items, validation, dataset.labels)

    def _submit_training(self, step: Step) -> None:
        """Hand a training to the executor, logging the equivalent ``monai.bundle run`` command."""
        from atso_med.atso.training_runs import job_overrides
        from atso_med.engines.bundle_runner import bundle_command

        executor = self._executor
        job = self._training_job(step)
        command = bundle_command(job.run_configs, job_overrides(job, executor.next_device()))
        logger.info(
            "train %s (%d cases) on %s: %s", step.id, len(step.params["train_ids"]), executor.next_place(), command
        )
        executor.submit(job)

    def _train(self, step: Step) -> dict[str, Any]:
        """A training in this process (one device): to its end, through the in-process executor."""
        self._submit_training(step)
        (finished,) = self._executor.wait(timeout=0.0)
        return self._after_training(step, finished.result)

    def _after_training(self, step: Step, result: Mapping[str, Any]) -> dict[str, Any]:
        out = self.layout.path(step.params["output_dir"])
        if not self.config.training.keep_checkpoints:
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

    # ------------------------------------------------------------------ predictions

    def _predictor(self) -> Predictor:
        if self.predictor is None:
            self.predictor = BundlePredictor(self.config, self.devices[0])
        return self.predictor

    def _predict(self, step: Step) -> dict[str, Any]:
        from atso_med.engines.bundle_runner import bundle_command, config_files

        params = step.params
        datalist = self.layout.prediction_datalist(params["set"])
        model_dir = self.layout.path(params["model_dir"])
        out = self.layout.path(params["output_dir"])
        overrides = {
            "input": str(datalist),
            "datalist_key": "testing",
            "model_dir": str(model_dir),
            "output_dir": str(out),
            **self.config.inference_settings(),
            "save_probability": params["save_probability"],
            "device": self.devices[0],
        }
        if self.config.long_axis_spacing is not None:
            overrides["long_axis_spacing"] = self.config.long_axis_spacing
        logger.info(
            "predict %s (%d cases): %s",
            step.id,
            len(params["ids"]),
            bundle_command(config_files("inference"), overrides),
        )
        # predict_datalist skips cases already written (atomically), so a killed prediction resumes.
        with output_to(self.layout.log_file):
            stats = self._predictor()(datalist, model_dir, out, params["save_probability"])
        missing = [i for i in params["ids"] if not (out / f"{i}.nii.gz").is_file()]
        if missing:
            raise ConfigError(f"prediction {step.id} did not write {missing}")
        rounds = {s["id"]: s.get("stopped_round") for s in stats if isinstance(s, Mapping) and "id" in s}
        return {"cases": len(params["ids"]), "output_dir": params["output_dir"], "stopped_round": rounds}

    def _fuse(self, step: Step) -> dict[str, Any]:
        """Pseudo labels (or an ensemble's prediction): a copy of one teacher's masks, or the vote of several."""
        from atso_med.inferers.fusion import vote_files

        params = step.params
        sources = [self.layout.path(s) for s in params["sources"]]
        out = self.layout.path(params["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        logger.info(
            "%s %s: %s of %s",
            params["purpose"],
            step.id,
            "copy" if len(sources) == 1 else "majority vote",
            ", ".join(params["teachers"]),
        )
        for case_id in params["ids"]:
            target = out / f"{case_id}.nii.gz"
            if len(sources) == 1:
                with atomic_write(target) as tmp:
                    shutil.copyfile(sources[0] / f"{case_id}.nii.gz", tmp)
            else:
                vote_files(sources, case_id, target)
        return {"cases": len(params["ids"]), "teachers": params["teachers"], "output_dir": params["output_dir"]}

    def _evaluate(self, step: Step) -> dict[str, Any]:
        from atso_med.metrics.evaluation import evaluate_predictions

        params = step.params
        pairs = [
            (i, self.layout.case_file(params["target"], i), self.data.dataset.case(i).label) for i in params["ids"]
        ]
        report = evaluate_predictions(
            pairs,
            self.config.foreground,
            output_dir=self.layout.path(params["output_dir"]),
            classes=self.data.dataset.labels,
        )
        summary = report.summary
        logger.info(
            "evaluate %s: mean DSC %.4f, global DSC %.4f (%d cases)",
            params["target"],
            summary["mean_dsc"],
            summary["global_dsc"],
            summary["cases"],
        )
        return {
            "cases": summary["cases"],
            "mean_dsc": summary["mean_dsc"],
            "std_dsc": summary["std_dsc"],
            "global_dsc": summary["global_dsc"],
            "dsc": {k: float(v) for k, v in report.dsc.items()},
            # the voxel counts let reports pool several folders into one global DSC
            "counts": {
                r["id"]: [r["intersection"], r["prediction_voxels"], r["truth_voxels"]] for r in report.per_case
            },
        }

    def _report(self, step: Step) -> dict[str, Any]:
        from atso_med.atso.lazy_learning import student_trainings
        from atso_med.atso.reports import ReportInputs, write_reports

        evaluations = {
            s.params["target"]: self.journal.result(s.id)
            for s in self.plan
            if s.kind == "evaluate" and self.journal.is_done(s.id)
        }
        trained = frozenset(s.tags["strategy"] for s in self.plan if s.kind == "train")
        students = student_trainings([s.to_dict() for s in self.plan if s.kind == "train"])
        return write_reports(
            ReportInputs(self.layout, self.config, self.data.dataset, self.data.splits, evaluations, trained, students)
        )

    def _eta_text(self) -> str:
        def seconds_of(step_id: str) -> float | None:
            return self.journal.seconds(step_id) if self.journal.is_done(step_id) else None

        return eta_text(self.plan, seconds_of, self.config.training.iterations)


def plan_digest(steps: Sequence[Step]) -> str:
    """Digest of a plan: a journal only resumes the plan it was written for."""
    text = json.dumps([s.to_dict() for s in steps], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
