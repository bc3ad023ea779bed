"""What an experiment shows on the terminal: a progress bar over the plan's steps with the time left."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from atso_med.atso.steps import Step

__all__ = ["eta_text", "format_seconds", "progress_bar"]


@contextlib.contextmanager
def progress_bar(total: int, done: int, console: Any = None, enabled: bool = True) -> Iterator[Any]:
    """A tqdm bar over ``total`` steps, ``done`` of them finished before (``None`` when not ``enabled``).

    Args:
        total: steps in the plan.
        done: steps finished by earlier runs of the experiment.
        console: the stream it writes to (default: standard error).
        enabled: ``False`` yields ``None`` (no bar).
    """
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        initial=done,
        unit="step",
        file=console or sys.stderr,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps [{elapsed}] {postfix}",
        desc="ATSO",
    )
    try:
        yield bar
    finally:
        bar.close()


def eta_text(plan: Sequence[Step], seconds_of: Callable[[str], float | None], iterations: Callable[[Step], int]) -> str:
    """Time left, from the measured cost of finished steps (seconds per iteration, per case).

    Args:
        plan: the experiment's steps.
        seconds_of: step id -> its measured seconds, ``None`` while it is not done (the journal).
        iterations: a training step -> its iterations.
    """
    rates: dict[str, list[float]] = {}
    for step in plan:
        seconds = seconds_of(step.id)
        if seconds is not None and step.kind != "report":
            rates.setdefault(step.kind, []).append(seconds / _step_units(step, iterations))
    remaining = 0.0
    for step in plan:
        if seconds_of(step.id) is not None or step.kind == "report":
            continue
        if step.kind not in rates:
            return "ETA: measuring"
        remaining += sum(rates[step.kind]) / len(rates[step.kind]) * _step_units(step, iterations)
    return f"ETA {format_seconds(remaining)}"


def _step_units(step: Step, iterations: Callable[[Step], int]) -> float:
    if step.kind == "train":
        return float(iterations(step))
    return float(len(step.params.get("ids", [])) or 1)


def format_seconds(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from an hour on."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
