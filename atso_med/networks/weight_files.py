"""Network weights on disk: a checkpoint or model file read as data (never code), checked against a
network, and written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from atso_med.errors import ConfigError
from atso_med.files import atomic_write

__all__ = ["check_state_matches", "load_checkpoint", "network_state_shapes", "save_model_atomic"]


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


def save_model_atomic(state: Mapping, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: readers never see half a model."""
    with atomic_write(path) as tmp:
        torch.save(dict(state), tmp)
    return Path(path)
