"""Where an experiment's trainings run: in this process, in worker processes (one per local device), or on Ray.

The runner owns the plan and the journal; an executor only runs :class:`TrainingJob` s and hands
back their results, so the journal, written by the runner alone, stays the single truth of what
is done, whichever executor (or mix of executors over resumed runs) did each step.

* :class:`InProcessExecutor`: one device, the training in this process (the default).
* :class:`WorkerPoolExecutor`: several local devices (``devices: [cuda:0, cuda:1]``); one serving
  worker process per device, each seeing only its device.
* :class:`atso_med.atso.distributed.RayExecutor`: a Ray cluster (``distributed: {ray: ...}``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atso_med.atso.layout import TRAINING_RESULT_SUFFIX
from atso_med.atso.training_runs import TrainingJob, run_job
from atso_med.files import read_json_or_none

__all__ = ["Finished", "InProcessExecutor", "TrainingExecutor", "WorkerPoolExecutor"]


@dataclass
class Finished:
    """A job that ended: its result, or why it failed (``error``) and where its output went (``log``)."""

    job: TrainingJob
    result: dict[str, Any] | None = None
    error: str | None = None
    log: str | None = None


class TrainingExecutor(ABC):
    """Runs training jobs; :meth:`wait` hands back those that ended.

    Attributes:
        capacity: how many jobs it takes at once (the runner submits no more than that).
    """

    capacity: int = 1

    @abstractmethod
    def submit(self, job: TrainingJob) -> None:
        """Start ``job`` (it may also run to its end right here)."""

    @abstractmethod
    def wait(self, timeout: float) -> list[Finished]:
        """The jobs that ended since the last call, waiting up to ``timeout`` seconds for one."""

    def close(self) -> None:  # noqa: B027 - a hook: an executor that starts nothing has nothing to stop
        """Stop whatever still runs: a failure (or Ctrl-C) must not leave trainings writing into the experiment."""

    def busy_cpu_threads(self) -> int:
        """CPU threads of this machine that the running jobs use (0: none, or they run elsewhere)."""
        return 0

    @abstractmethod
    def next_device(self) -> str:
        """The torch device the next job submitted will train on, as its process sees it (``cpu``, ``cuda:0``)."""

    @abstractmethod
    def next_place(self) -> str:
        """Where the next job submitted will run, for the log."""

    @abstractmethod
    def describe(self) -> str:
        """Where the trainings run, for the log."""


class InProcessExecutor(TrainingExecutor):
    """Each job in this process, to its end, when it is submitted.

    Args:
        device: the torch device of every training.
        train: replaces the bundle training of :func:`run_job` (``(configs, overrides) -> result``;
            tests inject a fake).
    """

    capacity = 1

    def __init__(self, device: str, train: Any = None) -> None:
        self.device = device
        self.train = train
        self._finished: list[Finished] = []

    def submit(self, job: TrainingJob) -> None:
        # Errors propagate: in this process a failed training stops the experiment with its own message.
        self._finished.append(Finished(job, run_job(job, self.device, self.train)))

    def wait(self, timeout: float) -> list[Finished]:
        finished, self._finished = self._finished, []
        return finished

    def next_device(self) -> str:
        return self.device

    def next_place(self) -> str:
        return self.device

    def describe(self) -> str:
        return f"this process on {self.device}"


class WorkerPoolExecutor(TrainingExecutor):
    """One serving worker process per device (``python -m atso_med.atso.training_runs --serve``).

    A worker sees only its device (``CUDA_VISIBLE_DEVICES``), takes its share of the CPU cores
    (``OMP_NUM_THREADS``: a GPU worker's data loading and transforms run on the CPU too) and
    lives for the whole experiment, so torch and MONAI are imported once per device.

    Args:
        devices: one slot per device (``["cpu", "cpu"]`` is two CPU workers).
        log_file: where the workers' output goes.
    """

    def __init__(self, devices: list[str], log_file: Path) -> None:
        self.devices = list(devices)
        self.capacity = len(self.devices)
        #: torch threads of each worker: the workers share the cores instead of each taking all of them.
        self.worker_threads = max(1, (os.cpu_count() or 1) // len(self.devices))
        self.log_file = log_file
        self._workers: dict[int, subprocess.Popen] = {}
        self._free = list(range(len(self.devices)))
        self._running: dict[str, tuple[TrainingJob, int, Path]] = {}

    @staticmethod
    def result_file(job: TrainingJob) -> Path:
        return job.output_dir.with_name(job.output_dir.name + TRAINING_RESULT_SUFFIX)

    def _on_gpu(self, slot: int) -> bool:
        return self.devices[slot].startswith("cuda")

    def _visible_device(self, slot: int) -> str:
        return "cuda:0" if self._on_gpu(slot) else "cpu"

    def next_device(self) -> str:
        return self._visible_device(self._free[0])

    def next_place(self) -> str:
        return f"{self.devices[self._free[0]]} (worker {self._free[0]})"

    def describe(self) -> str:
        return f"one worker process per device: {', '.join(self.devices)}"

    def _worker(self, slot: int) -> subprocess.Popen:
        worker = self._workers.get(slot)
        if worker is not None and worker.poll() is None:
            return worker
        device = self.devices[slot]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.worker_threads)}
        if self._on_gpu(slot):
            env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1] if ":" in device else "0"
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
        with open(self.log_file, "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "atso_med.atso.training_runs", "--serve"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
            )
        self._workers[slot] = worker
        return worker

    def busy_cpu_threads(self) -> int:
        cpu_slots = [slot for _, slot, _ in self._running.values() if not self._on_gpu(slot)]
        return len(cpu_slots) * self.worker_threads

    def submit(self, job: TrainingJob) -> None:
        slot = self._free.pop(0)
        result = self.result_file(job)
        result.unlink(missing_ok=True)
        result.parent.mkdir(parents=True, exist_ok=True)
        worker = self._worker(slot)
        self._running[job.step_id] = (job, slot, result)
        request = {"job": job.to_dict(), "device": self._visible_device(slot), "result": str(result)}
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()

    def wait(self, timeout: float) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            finished = []
            for step_id, (job, slot, result_file) in list(self._running.items()):
                worker = self._workers[slot]
                if worker.poll() is None and not result_file.is_file():
                    continue
                del self._running[step_id]
                self._free.append(slot)
                finished.append(self._collect(job, worker, result_file))
            if finished or not self._running or time.monotonic() >= deadline:
                return finished
            time.sleep(0.2)

    def _collect(self, job: TrainingJob, worker: subprocess.Popen, result_file: Path) -> Finished:
        result = read_json_or_none(result_file) or {}
        result_file.unlink(missing_ok=True)
        if "error" in result or not result:
            reason = result.get("error") or f"the worker stopped (exit status {worker.poll()})"
            return Finished(job, error=reason, log=str(self.log_file))
        return Finished(job, result)

    def close(self) -> None:
        for process in self._workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdin is not None:
                process.stdin.close()
        self._workers = {}
