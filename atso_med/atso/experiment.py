"""ExperimentRunner: the scheduler that runs an experiment's plan step by step, journaled, resumable.

An experiment folder is laid out as :mod:`atso_med.atso.layout` says; the plan
(:mod:`atso_med.atso.generations`) names every step's inputs and outputs in it, and the journal
(``state.json``) records each finished step. Before the first write the folder and the cases are
checked (:mod:`atso_med.atso.preflight`). The runner executes the steps not yet in the journal,
each by the module of its step: trainings (:mod:`atso_med.atso.training_steps`) through an
executor (:mod:`atso_med.atso.executors`: this process, one worker per local device, or a Ray
cluster), predictions (:mod:`atso_med.atso.predictions`), pseudo labels
(:mod:`atso_med.atso.pseudo_labels`), evaluations (:mod:`atso_med.atso.evaluations`) and the
reports (:mod:`atso_med.atso.reports`).

M0 (``models/supervised/gen0/all``) is every strategy's generation 0; generation 1's pseudo labels
of every strategy are copies of M0's predictions.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from atso_med.atso.cases import ExperimentData, load_experiment_data
from atso_med.atso.config import ExperimentConfig
from atso_med.atso.console import eta_text, progress_bar
from atso_med.atso.evaluations import evaluate
from atso_med.atso.executors import InProcessExecutor, TrainingExecutor, WorkerPoolExecutor
from atso_med.atso.generations import build_plan
from atso_med.atso.journal import Journal
from atso_med.atso.layout import ExperimentLayout
from atso_med.atso.lock import FolderLock
from atso_med.atso.logs import experiment_log, logger
from atso_med.atso.predictions import BundlePredictor, Predictor, predict, write_prediction_datalists
from atso_med.atso.preflight import check_experiment_folder, check_resumed_splits, refuse_unverified_cases
from atso_med.atso.pseudo_labels import write_pseudo_labels
from atso_med.atso.reports import write_experiment_reports
from atso_med.atso.steps import PlanInputs, Step, plan_digest
from atso_med.atso.training_runs import job_overrides
from atso_med.atso.training_steps import training_iterations, training_job, training_record
from atso_med.devices import resolve_device, threads_beside
from atso_med.errors import ConfigError
from atso_med.files import write_text_atomic

__all__ = ["STOP_EXIT_STATUS", "ExperimentRunner", "TrainingRunner"]

#: Exit status of a run stopped on purpose by ``stop_after`` (a debugging aid for resume tests).
STOP_EXIT_STATUS = 75


class TrainingRunner(Protocol):
    """Runs one training: ``(configs, overrides) -> {"initial_weights_sha256", "model_sha256", ...}``."""

    def __call__(self, configs: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]: ...


class ExperimentRunner:
    """Run (or resume) an ATSO experiment: supervised, fully supervised, self-learning, STSO and ATSO.

    Args:
        config: the experiment, or the path of its YAML file.
        resume: continue the experiment found in ``output_dir`` from its journal. Without it an
            existing experiment folder is refused.
        stop_after: debugging aid: exit the process abruptly (``os._exit``) once this many steps
            have finished in this run, as a kill would; for resume tests.
        predictor: replaces :class:`~atso_med.atso.predictions.BundlePredictor` (the bundle's
            inference workflow; tests inject a fake).
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
        self.devices = [str(resolve_device(d)) for d in config.devices]
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
        check_experiment_folder(config, layout, self.resume)
        self.data = data = load_experiment_data(config, self.dir)
        if not layout.journal_file.exists():  # a resumed experiment was verified when it started
            refuse_unverified_cases(data)
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
                fold_training=config.fold_training,
                fold_init=config.fold_init,
                pseudo_label_confidence=config.pseudo_label_confidence,
                class_reduction=config.class_reduction is not None,
                fine_tune=config.fine_tuned,
            )
        )
        digest = plan_digest(self.plan)
        self._lock.acquire()  # before the first write: a second run must not interleave its files
        if self.resume:
            check_resumed_splits(layout, data)
        write_text_atomic(config.to_yaml(), layout.config_file)
        data.splits.write(layout.splits_file)
        if config.transfer is not None:
            data.dataset.write(data.dataset_file)
        write_prediction_datalists(layout, data)
        plan_text = json.dumps({"digest": digest, "steps": [s.to_dict() for s in self.plan]}, indent=1) + "\n"
        write_text_atomic(plan_text, layout.plan_file)
        self.journal = Journal(layout.journal_file, digest)
        self.journal.save()
        return self.plan

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
                    f"Its report: {self.layout.report_markdown}",
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
        result = dict(self._handle(step))
        # CPU time of this process (all its threads): with other work on the machine it shows
        # what a step costs better than the wall clock.
        result.setdefault("cpu_seconds", round(time.process_time() - cpu_start, 3))
        self._finish(step, result, time.perf_counter() - start, bar)

    def _handle(self, step: Step) -> Mapping[str, Any]:
        """Run one step by the module of its kind; returns its journal result."""
        if step.kind == "train":
            return self._train(step)
        if step.kind == "predict":
            return self._predict(step)
        if step.kind == "fuse":
            return write_pseudo_labels(self.layout, step, self.data.label_classes)
        if step.kind == "evaluate":
            return evaluate(self.layout, step, self.data.dataset, self.data.foreground, self.data.label_classes)
        return write_experiment_reports(self.layout, self.config, self.data, self.plan, self.journal)

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
                self._finish(
                    step,
                    training_record(self.config, self.layout, step, finished.result),
                    time.perf_counter() - start,
                    bar,
                )
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

    def _submit_training(self, step: Step) -> None:
        """Hand a training to the executor, logging the equivalent ``monai.bundle run`` command."""
        from atso_med.engines.bundle_runner import bundle_command

        executor = self._executor
        job = training_job(self.config, self.layout, self.data, step)
        command = bundle_command(job.run_configs, job_overrides(job, executor.next_device()))
        logger.info(
            "train %s (%d cases) on %s: %s", step.id, len(step.params["train_ids"]), executor.next_place(), command
        )
        executor.submit(job)

    def _train(self, step: Step) -> dict[str, Any]:
        """A training in this process (one device): to its end, through the in-process executor."""
        self._submit_training(step)
        (finished,) = self._executor.wait(timeout=0.0)
        return training_record(self.config, self.layout, step, finished.result)

    def _predict(self, step: Step) -> Mapping[str, Any]:
        """A prediction in this process, on the CPU threads that the running trainings leave free."""
        busy = self._executor.busy_cpu_threads() if self._executor is not None else 0
        with threads_beside(busy) as threads:
            if busy:
                logger.info("%s: %d CPU thread(s) here, beside %d of running trainings", step.id, threads, busy)
            return predict(self.layout, step, self.config, self._predictor(), self.devices[0])

    def _predictor(self) -> Predictor:
        if self.predictor is None:
            self.predictor = BundlePredictor(self.config, self.devices[0])
        return self.predictor

    def _eta_text(self) -> str:
        def seconds_of(step_id: str) -> float | None:
            return self.journal.seconds(step_id) if self.journal.is_done(step_id) else None

        return eta_text(self.plan, seconds_of, partial(training_iterations, self.config.training))
