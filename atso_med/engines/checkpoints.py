"""Checkpoints of a training run: reading them as data, choosing the newest complete one, resuming
from it (the resume handler is :mod:`atso_med.handlers.resume`'s)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "RunState",
    "latest_checkpoint",
    "newest_checkpoint",
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
