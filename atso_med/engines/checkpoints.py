"""Checkpoints of a training run: reading them as data, choosing the newest complete one, resuming
from it, and writing models atomically."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from atso_med.errors import ConfigError

__all__ = [
    "RunState",
    "attach_resume",
    "check_state_matches",
    "latest_checkpoint",
    "load_checkpoint",
    "network_state_shapes",
    "newest_checkpoint",
    "save_model_atomic",
]


class RunState:
    """Checkpointable record of a run: its resolved configuration and the random number generators' states.

    Everything is stored as tensors, strings and numbers, so a checkpoint loads with
    ``torch.load(..., weights_only=True)``.

    Args:
        config: the run's resolved configuration (JSON-serialisable).
    """

    def __init__(self, config: Mapping | None = None):
        self.config = dict(config or {})

    def state_dict(self) -> dict:
        numpy_state = np.random.get_state()
        return {
            "config": json.dumps(self.config, sort_keys=True, default=str),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng_keys": torch.as_tensor(numpy_state[1].astype(np.int64)),
            "numpy_rng_pos": int(numpy_state[2]),
            "python_rng": json.dumps(random.getstate()),
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.config = json.loads(state["config"])
        torch.set_rng_state(state["torch_rng"])
        keys = state["numpy_rng_keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, int(state["numpy_rng_pos"]), 0, 0.0))
        version, internal, gauss = json.loads(state["python_rng"])
        random.setstate((version, tuple(internal), gauss))


def network_state_shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def check_state_matches(state: Mapping[str, torch.Tensor], network: torch.nn.Module, source: str) -> None:
    """Refuse weights of another width or layout, naming the first difference.

    Raises:
        ConfigError: when a key is missing, unexpected, or of another shape.
    """
    expected = network_state_shapes(network.state_dict())
    found = network_state_shapes(state)
    for key, shape in expected.items():
        if key not in found:
            raise ConfigError(f"{source} has no weights for {key!r}: it is not a checkpoint of this network layout")
        if found[key] != shape:
            raise ConfigError(
                f"{source} does not fit the network: {key!r} has shape {found[key]} in the file but {shape} in the "
                "network (another width/preset?)"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ConfigError(f"{source} holds weights the network does not have, e.g. {extra[0]!r}")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint as data (``weights_only=True``): a checkpoint never runs code.

    Raises:
        ConfigError: when the file is missing or not a loadable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types for corrupt or code-carrying files
        raise ConfigError(f"checkpoint {path} cannot be loaded as plain weights: {error}") from None


def newest_checkpoint(directory: str | os.PathLike, prefix: str = "checkpoint") -> tuple[Path, dict] | None:
    """The newest complete training checkpoint in ``directory`` (by iteration) and its content.

    Each candidate is opened memory-mapped (``mmap=True``): its index is read, its tensors only
    when used, so choosing the file and resuming from it read it once. A file that does not open
    (cut short by a kill while saving) is skipped: a resume falls back to the previous checkpoint.

    Returns:
        ``(path, content)``, or ``None`` when there is no usable checkpoint.
    """
    candidates = []
    for path in Path(directory).glob(f"{prefix}_*.pt"):
        digits = "".join(ch for ch in path.stem.rsplit("=", 1)[-1] if ch.isdigit())
        if digits:
            candidates.append((int(digits), path))
    for _, path in sorted(candidates, reverse=True):
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - any unreadable candidate is skipped
            continue
    return None


def latest_checkpoint(directory: str | os.PathLike, prefix: str = "checkpoint") -> Path | None:
    """The path of :func:`newest_checkpoint`, or ``None``."""
    found = newest_checkpoint(directory, prefix)
    return None if found is None else found[0]


def attach_resume(trainer, output_dir: str | os.PathLike, load_dict: Mapping, network: torch.nn.Module) -> Path | None:
    """Resume ``trainer`` from the newest complete checkpoint in ``output_dir``, if there is one.

    The checkpoint's network weights are checked against ``network`` first (unwrapped from DDP,
    as the checkpoint saver stores it), so a checkpoint of another width is refused with a message
    instead of a shape error deep inside torch.

    Returns:
        The checkpoint resumed from, or ``None`` when the run starts fresh.
    """
    from atso_med.handlers.resume import ResumeHandler

    found = newest_checkpoint(output_dir)
    if found is None:
        return None
    path, content = found
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    check_state_matches(content["network"], network.module if isinstance(network, parallel) else network, str(path))
    ResumeHandler(content, load_dict, path).attach(trainer)
    return path


def save_model_atomic(state: Mapping, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: readers never see half a model."""
    from atso_med.files import atomic_write

    with atomic_write(path) as tmp:
        torch.save(dict(state), tmp)
    return Path(path)
