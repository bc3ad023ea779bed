"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from atso_med.data import PhantomConfig, write_phantom_dataset


@pytest.fixture(scope="session", autouse=True)
def fingerprint_cache(tmp_path_factory) -> Path:
    """The image-fingerprint cache of the session's commands: a temporary folder, never the user's."""
    import os

    folder = tmp_path_factory.mktemp("fingerprint_cache")
    os.environ["ATSO_MED_CACHE"] = str(folder)  # also read by the worker processes the tests start
    return folder


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory) -> Callable[..., Path]:
    """``make(cases, seed=0, shape=(32, 32, 16))``: a phantom data set's ``dataset.json``, written once
    per session and configuration. Tests that change files work on a copy."""
    made: dict[tuple, Path] = {}

    def make(cases: int, seed: int = 0, shape: tuple[int, int, int] = (32, 32, 16)) -> Path:
        key = (int(cases), int(seed), tuple(shape))
        if key not in made:
            root = tmp_path_factory.mktemp(f"phantom_{cases}_{seed}_{'x'.join(map(str, shape))}")
            made[key] = write_phantom_dataset(root / "data", PhantomConfig(cases=cases, seed=seed, shape=tuple(shape)))
        return made[key]

    return make
