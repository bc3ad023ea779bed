"""The torch devices a run may use: parsed and checked against this machine before any work; CPU threads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from atso_med.errors import ConfigError

__all__ = ["available_device", "resolve_device", "threads_beside"]

#: Spellings of "the best device here": ``cuda:0`` when there is one, else the CPU.
AUTO = ("", "none", "auto")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``None`` or ``auto`` picks ``cuda:0`` when there is one, else the CPU.

    Raises:
        ConfigError: as :func:`available_device`, for any other text.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() in AUTO):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return available_device(device)


def available_device(device: str | torch.device) -> torch.device:
    """A CPU or CUDA device that exists on this machine.

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:<index>`` (a ``torch.device`` too).

    Returns:
        The device (``cuda`` becomes ``cuda:0``).

    Raises:
        ConfigError: text torch does not read as a device, another kind of device, or a CUDA
            device this machine does not have (the message says which exist).
    """
    try:
        parsed = torch.device(str(device).strip().lower())
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {str(device)!r}; expected cpu or cuda:<index>") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"only cpu and cuda devices are supported, got {str(device)!r}")
    if parsed.type == "cpu":
        return parsed
    index = 0 if parsed.index is None else parsed.index
    if not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} asked for, but this machine has no CUDA device; use cpu")
    if index >= torch.cuda.device_count():
        known = ", ".join(f"cuda:{i}" for i in range(torch.cuda.device_count()))
        raise ConfigError(f"device {str(device)!r} asked for, but this machine has only {known}")
    return torch.device("cuda", index)


@contextmanager
def threads_beside(busy_threads: int) -> Iterator[int]:
    """torch's CPU threads in this process cut, for the block, to the cores that other work leaves free.

    A team of CPU threads on cores that other processes hold waits at every barrier for a thread
    that is not scheduled: on 2 cores beside two single-thread trainings, a 2-thread inference ran
    15-25 times slower than a 1-thread one (``benchmarks/bench_inference.py``, README).

    Args:
        busy_threads: CPU threads of this machine that other processes use meanwhile (0: none,
            torch's setting is kept).

    Yields:
        The threads this process uses in the block (at least 1).
    """
    before = torch.get_num_threads()
    threads = max(1, before - busy_threads) if busy_threads > 0 else before
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
