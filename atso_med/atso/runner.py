"""Running one training of the bundle: in this process, or in a worker process on its own device.

A training is the bundle's train workflow (``configs/train.json``) with the trainer's overrides,
exactly what ``python -m monai.bundle run --config_file .../train.json --meta_file ... --key value``
runs (that command is written to the experiment's log). Besides running it, the runner records
a SHA-256 of the network's weights right before the first iteration, so that a test (or a user)
can check that every from-scratch training of a plane started from bit-identical weights.

Worker mode, used when several devices train concurrently::

    python -m atso_med.atso.runner SPEC.json     # one training
    python -m atso_med.atso.runner --serve       # one training per SPEC.json path read from stdin

reads ``{"configs": [...], "overrides": {...}, "result": "result.json"}``, runs the training and
writes the result JSON atomically (its existence tells the parent the training finished). A
serving worker lives for a whole experiment on its device, so torch and MONAI are imported once
per device instead of once per training (about 9 s each on a 2-core CPU).
"""

from __future__ import annotations

import gc
import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from atso_med.files import write_text_atomic
from atso_med.errors import AtsoMedError, ConfigError


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (order-independent, device-independent)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # reshape(-1): a 0-dim tensor (batch norm's num_batches_tracked) cannot be viewed as bytes.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def model_file_sha256(path: str | Path) -> str:
    """:func:`state_dict_sha256` of the ``"network"`` weights in a ``model.pt``."""
    from atso_med.engines.checkpoints import load_checkpoint

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
    from atso_med.engines.workflow import initialize_workflow, user_errors

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
    model = Path(str(overrides["output_dir"])) / "model.pt"
    if not model.is_file():
        raise ConfigError(f"the training finished without writing {model}")
    result = {
        "initial_weights_sha256": initial,
        "model_sha256": model_file_sha256(model),
        "iterations": int(overrides.get("iterations", 0)),
        "seconds": round(time.perf_counter() - start, 3),
    }
    del workflow, network
    gc.collect()
    return result


def _exit_with_parent() -> None:
    """Stop this worker when the trainer that started it dies (even by SIGKILL): an orphan would
    keep writing into a training folder that the resumed trainer starts again."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_spec(spec_file: str | Path) -> bool:
    """Run the training a spec file describes and write its result (or its error) atomically.

    Returns:
        Whether the training succeeded.
    """
    spec = json.loads(Path(spec_file).read_text())
    try:
        result = run_training(spec["configs"], spec["overrides"])
    except AtsoMedError as error:
        write_text_atomic(json.dumps({"error": str(error)}) + "\n", spec["result"])
        print(f"training failed: {error}", file=sys.stderr, flush=True)
        return False
    write_text_atomic(json.dumps(result) + "\n", spec["result"])
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: one spec file, or ``--serve`` for spec paths read line by line from stdin."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m atso_med.atso.runner (SPEC.json | --serve)", file=sys.stderr)
        return 2
    _exit_with_parent()
    if args[0] != "--serve":
        return 0 if run_spec(args[0]) else 2
    for line in sys.stdin:
        if line.strip():
            run_spec(line.strip())
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(main())
