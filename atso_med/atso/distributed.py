"""An experiment's trainings on a Ray cluster (the ``distributed`` extra: ``pip install -e ".[distributed]"``).

The runner (the process that holds the journal) stays on one machine and submits each training
of the plan as a Ray task as soon as the steps it needs are done; Ray places the tasks on the
cluster's nodes by the resources each asks for (``gpus_per_training``, ``cpus_per_training``).
Predictions, votes and evaluations run in the runner's process. Every node must see the
experiment folder and the data at the same paths (shared storage) and have atso-med installed.

Ray re-runs a task whose worker process or node died (``retries``); the task then resumes from
its training folder's checkpoint or starts it afresh (:func:`~atso_med.atso.training_runs.run_job`).
A training that fails with an error is reported with its log file and stops the experiment; the
journal keeps every finished step, so ``atso-med run --resume`` (on the cluster or on one machine)
continues from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from atso_med.atso.executors import Finished, TrainingExecutor
from atso_med.atso.training_runs import TrainingJob, run_job
from atso_med.errors import ConfigError
from atso_med.extras import require_extra

__all__ = ["RayExecutor", "RaySettings", "require_ray"]

_KEYS = ("address", "gpus_per_training", "cpus_per_training", "retries", "num_cpus")


def require_ray(what: str) -> None:
    """Refuses before any work when Ray is not installed (``what``: the option that needs it)."""
    require_extra("ray", "Ray", "distributed", what)


@dataclass
class RaySettings:
    """How an experiment uses a Ray cluster.

    Attributes:
        address: the cluster (``auto``: the one this machine belongs to, started with ``ray start``;
            ``ray://host:10001``: a remote head through Ray Client); ``None`` starts a local Ray
            on this machine for the run.
        gpus_per_training: GPUs each training asks for (``0``: trains on CPU).
        cpus_per_training: CPU cores each training asks for (also its PyTorch threads).
        retries: times Ray re-runs a training whose worker process or node died.
        num_cpus: CPU cores of a local Ray (``address: null`` only; ``None``: all of them).
    """

    address: str | None = None
    gpus_per_training: float = 0.0
    cpus_per_training: float = 1.0
    retries: int = 2
    num_cpus: int | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "distributed") -> RaySettings | None:
        """Reads the ``distributed`` section of an experiment.

        Args:
            data: ``None`` (no cluster) or ``{"ray": {"address": ..., "gpus_per_training": ..., ...}}``.
            where: the key named in errors.

        Returns:
            The settings, or ``None`` without a cluster.

        Raises:
            ConfigError: a malformed section, or Ray not installed.
        """
        if data is None:
            return None
        if not isinstance(data, Mapping) or set(data) != {"ray"} or not isinstance(data["ray"], Mapping | type(None)):
            raise ConfigError(
                f"{where}: expected {{ray: {{address: auto, gpus_per_training: 1, cpus_per_training: 4}}}}, got {data!r}"
            )
        ray = dict(data["ray"] or {})
        unknown = sorted(set(ray) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{where}.ray: unknown key(s) {', '.join(unknown)}; expected {', '.join(_KEYS)}")
        address = ray.get("address")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(
                f"{where}.ray.address: expected auto, ray://HOST:PORT or null (a local Ray), got {address!r}"
            )
        settings = cls(address=address)
        for key, minimum in (("gpus_per_training", 0.0), ("cpus_per_training", 0.0)):
            value = ray.get(key, getattr(settings, key))
            if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
                raise ConfigError(f"{where}.ray.{key}: expected a number >= {minimum:g}, got {value!r}")
            setattr(settings, key, float(value))
        if settings.cpus_per_training == 0 and settings.gpus_per_training == 0:
            raise ConfigError(
                f"{where}.ray: a training must ask for some CPUs or GPUs (cpus_per_training or gpus_per_training > 0)"
            )
        retries = ray.get("retries", settings.retries)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"{where}.ray.retries: expected a whole number >= 0, got {retries!r}")
        settings.retries = retries
        num_cpus = ray.get("num_cpus")
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
            raise ConfigError(f"{where}.ray.num_cpus: expected a whole number >= 1, got {num_cpus!r}")
        if num_cpus is not None and address is not None:
            raise ConfigError(
                f"{where}.ray.num_cpus: sizes a local Ray only; a cluster ({address}) has its own resources"
            )
        settings.num_cpus = num_cpus
        require_ray(where)
        return settings

    def to_dict(self) -> dict[str, Any]:
        return {"ray": {key: getattr(self, key) for key in _KEYS}}


def _train_on_ray(job: Mapping[str, Any], device: str, threads: int) -> dict[str, Any]:
    """The Ray task: one training job (Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it gave the task)."""
    import torch

    torch.set_num_threads(max(1, threads))
    return run_job(TrainingJob.from_dict(job), device)


class RayExecutor(TrainingExecutor):
    """Every ready training as a Ray task; Ray queues them until the cluster has the resources.

    Args:
        settings: the cluster and the resources per training.
    """

    capacity = 1_000_000  # Ray queues the tasks: the runner may hand it every ready training

    def __init__(self, settings: RaySettings) -> None:
        import ray

        self.settings = settings
        self._started_here = not ray.is_initialized()
        if self._started_here:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if settings.address is None and settings.num_cpus is not None:
                options["num_cpus"] = settings.num_cpus
            ray.init(address=settings.address, **options)
        self._task = ray.remote(_train_on_ray).options(
            num_cpus=settings.cpus_per_training,
            num_gpus=settings.gpus_per_training,
            max_retries=settings.retries,
            retry_exceptions=False,  # an error in the training is not cured by running it again
        )
        self._running: dict[Any, TrainingJob] = {}

    def next_device(self) -> str:
        return "cuda:0" if self.settings.gpus_per_training > 0 else "cpu"

    def next_place(self) -> str:
        return "Ray"

    def describe(self) -> str:
        import ray

        resources = ray.cluster_resources()
        return (
            f"Ray at {self.settings.address or 'a local Ray'} ({resources.get('CPU', 0):g} CPUs, "
            f"{resources.get('GPU', 0):g} GPUs; each training {self.settings.cpus_per_training:g} CPU, "
            f"{self.settings.gpus_per_training:g} GPU)"
        )

    def submit(self, job: TrainingJob) -> None:
        threads = max(1, int(self.settings.cpus_per_training))
        self._running[self._task.remote(job.to_dict(), self.next_device(), threads)] = job

    def wait(self, timeout: float) -> list[Finished]:
        import ray

        if not self._running:
            return []
        ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=timeout)
        finished = []
        for ref in ready:
            job = self._running.pop(ref)
            try:
                finished.append(Finished(job, ray.get(ref)))
            except ray.exceptions.RayTaskError as error:  # the training raised: its own message
                cause = error.cause if getattr(error, "cause", None) is not None else error
                finished.append(Finished(job, error=str(cause), log=job.log_file))
            except ray.exceptions.RayError as error:  # worker or node lost beyond the retries
                finished.append(Finished(job, error=f"{type(error).__name__}: {error}", log=job.log_file))
        return finished

    def close(self) -> None:
        import ray

        for ref in list(self._running):
            ray.cancel(ref, force=True)
        self._running = {}
        if self._started_here and ray.is_initialized():
            ray.shutdown()
