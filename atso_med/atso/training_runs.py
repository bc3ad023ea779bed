"""One training of an experiment: the bundle's train workflow, wherever it runs.

A training is the bundle's train workflow (``configs/train.json``) overlaid with the training's
settings file (``settings.json`` in its training folder: the runner's keys, plain JSON values),
exactly what ``python -m monai.bundle run --config_file '[".../train.json", ".../settings.json"]'
--meta_file ... --device cpu`` runs (that command is written to the experiment's log). Besides
running it, :func:`run_training` records a SHA-256 of the network's weights right before the
first iteration, so that a test (or a user) can check that every from-scratch training of a plane
started from bit-identical weights.

A :class:`TrainingJob` is a training ready to run in any process that sees the experiment folder
(this one, a worker process on another device, a Ray worker on another machine); :func:`run_job`
runs it the same way everywhere: it resumes from the training folder's checkpoint when asked to
and one is there, and otherwise starts the folder afresh, so a training re-run after its process
or machine died gives the model an uninterrupted run would have given.

Worker mode, used when several devices train concurrently::

    python -m atso_med.atso.training_runs --serve     # one job per line read from stdin

reads one JSON line per job, ``{"job": {...}, "device": "cpu", "result": "path.json"}``, runs it
and writes the result JSON atomically (its existence tells the parent the training finished). A
serving worker lives for a whole experiment on its device, so torch and MONAI are imported once
per device instead of once per training (about 9 s each on a 2-core CPU).
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atso_med.atso.layout import TRAINING_SETTINGS_FILE
from atso_med.atso.logs import output_to
from atso_med.errors import AtsoMedError, ConfigError
from atso_med.files import write_text_atomic

if TYPE_CHECKING:
    import torch


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (order-independent, device-independent)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # reshape(-1): a 0-dim tensor (batch norm's num_batches_tracked) cannot be viewed as bytes.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def model_file_sha256(path: str | Path) -> str:
    """:func:`state_dict_sha256` of the ``"network"`` weights in a ``model.pt``."""
    from atso_med.networks.weight_files import load_checkpoint

    content = load_checkpoint(path)
    if not isinstance(content, Mapping) or not isinstance(content.get("network"), Mapping):
        raise ConfigError(f"{path} holds no 'network' weights")
    return state_dict_sha256(content["network"])


def run_training(configs: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Run the bundle's train workflow in this process.

    Args:
        configs: bundle config files (``train.json`` first).
        overrides: top-level keys to override, as on the ``monai.bundle run`` command line.

    Returns:
        ``{"initial_weights_sha256", "model_sha256", "iterations", "seconds"}``.

    Raises:
        AtsoMedError: a bad configuration (unwrapped from MONAI's "Failed to evaluate" errors).
        ConfigError: missing bundle properties or no ``model.pt`` written.
    """
    from atso_med.engines.bundle_runner import initialize_workflow, user_errors

    start = time.perf_counter()
    workflow = initialize_workflow(configs, overrides, "train")
    with user_errors():
        # initialize() built the trainer and so the network, with its initial weights (a
        # checkpoint, if resumed, loads only when the run starts).
        network = workflow.parser.get_parsed_content("network")
        network = network.module if hasattr(network, "module") else network
        initial = state_dict_sha256(network.state_dict())
        workflow.run()
        workflow.finalize()
    model = Path(str(workflow.parser.get_parsed_content("output_dir"))) / "model.pt"
    if not model.is_file():
        raise ConfigError(f"the training finished without writing {model}")
    result = {
        "initial_weights_sha256": initial,
        "model_sha256": model_file_sha256(model),
        "iterations": int(workflow.parser.get_parsed_content("iterations")),
        "seconds": round(time.perf_counter() - start, 3),
    }
    del workflow, network
    gc.collect()
    return result


@dataclass
class TrainingJob:
    """One plane training of the plan, ready to run in any process that sees the experiment folder.

    Attributes:
        step_id: the plan step it is (``train/atso/gen1/fold0/plane_Z``).
        configs: the bundle's config files (``train.json`` first).
        settings: the bundle keys the runner sets, but ``device`` (the executor that runs the job
            picks it); :func:`run_job` writes them to the training's settings file.
        log_file: where everything the training prints goes.
        resume: continue from the training folder's latest checkpoint when there is one.
    """

    step_id: str
    configs: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    log_file: str = ""
    resume: bool = False

    @property
    def output_dir(self) -> Path:
        """The training folder (``model.pt``, checkpoints, TensorBoard logs)."""
        return Path(str(self.settings["output_dir"]))

    @property
    def settings_file(self) -> Path:
        """The config overlay with :attr:`settings` (saved with the model; the last config file of the run)."""
        return self.output_dir / TRAINING_SETTINGS_FILE

    @property
    def run_configs(self) -> list[str]:
        """The config files the training runs with: the bundle's, then its settings file."""
        return [*self.configs, str(self.settings_file)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingJob:
        return cls(**{k: data[k] for k in ("step_id", "configs", "settings", "log_file", "resume")})


def job_overrides(job: TrainingJob, device: str) -> dict[str, Any]:
    """The command-line keys of ``job`` on ``device``: the device, and ``resume`` when a checkpoint is there to resume."""
    from atso_med.engines.checkpoints import latest_checkpoint
    from atso_med.engines.training_checks import finished_training

    overrides: dict[str, Any] = {"device": device}
    if job.resume and latest_checkpoint(job.output_dir) is not None:
        overrides["resume"] = True
        if finished_training(job.output_dir) is not None:
            # finished but not journaled (the runner died in between): the resumed run rewrites it
            overrides["overwrite"] = True
    return overrides


def run_job(job: TrainingJob, device: str, train: Callable[..., Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Run one training job in this process (its output to ``job.log_file``).

    Args:
        job: the training.
        device: the torch device, as this process sees it (``cpu``, ``cuda:0``).
        train: replaces :func:`run_training` (``(configs, overrides) -> result``; tests inject a fake).

    Returns:
        :func:`run_training`'s result, plus the equivalent ``monai.bundle run`` command.
    """
    from atso_med.engines.bundle_runner import bundle_command

    overrides = job_overrides(job, device)
    if not overrides.get("resume") and job.output_dir.exists():
        # A half-finished training is redone from its first iteration: the same seeds give
        # the model an uninterrupted run would have given.
        shutil.rmtree(job.output_dir)
    job.output_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(job.settings, indent=2) + "\n", job.settings_file)
    with output_to(Path(job.log_file)):
        result = (train or run_training)(job.run_configs, overrides)
    return {**result, "command": bundle_command(job.run_configs, overrides)}


def _exit_with_parent() -> None:
    """Stop this worker when the runner that started it dies (even by SIGKILL): an orphan would
    keep writing into a training folder that the resumed runner starts again."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def serve_job(line: str) -> bool:
    """Run the job one worker input line describes and write its result (or its error) atomically.

    Returns:
        Whether the training succeeded.
    """
    request = json.loads(line)
    try:
        result = run_job(TrainingJob.from_dict(request["job"]), request["device"])
    except AtsoMedError as error:
        write_text_atomic(json.dumps({"error": str(error)}) + "\n", request["result"])
        print(f"training failed: {error}", file=sys.stderr, flush=True)
        return False
    write_text_atomic(json.dumps(result) + "\n", request["result"])
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: ``--serve`` runs one job per JSON line read from stdin."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["--serve"]:
        print("usage: python -m atso_med.atso.training_runs --serve", file=sys.stderr)
        return 2
    _exit_with_parent()
    for line in sys.stdin:
        if line.strip():
            serve_job(line)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(main())
