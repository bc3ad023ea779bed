"""Prediction statistics: the per-case record a prediction run writes, and the per-round DSC read from it.

A prediction run writes :data:`PREDICTION_STATS_FILE` into its output folder: for every case the
coarse-to-fine rounds it ran (with their DSC when the labels were given) and where it stopped.
Evaluation reads it for the ``stopped_round`` column and the per-round summary.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from atso_med.errors import ConfigError
from atso_med.files import read_json

__all__ = ["PREDICTION_STATS_FILE", "per_round_summary", "read_prediction_stats"]

#: File a prediction run writes its per-case statistics (rounds, timings) to, in its output folder.
PREDICTION_STATS_FILE = "prediction_stats.json"


def read_prediction_stats(source: str | os.PathLike | Mapping | Sequence | None) -> dict[str, dict]:
    """Per-case prediction statistics by case id.

    Args:
        source: a ``prediction_stats.json`` file (``{"cases": {id: stats}}``), such a dict, a
            ``{id: stats}`` mapping, a list of stats dicts with ``"id"``, or ``None``.

    Returns:
        ``{id: stats}`` (empty for ``None``).

    Raises:
        ConfigError: an unreadable file or an unexpected structure.
    """
    if source is None:
        return {}
    if isinstance(source, (str, os.PathLike)):
        source = read_json(source, "prediction statistics file")
    if isinstance(source, Mapping):
        cases = source.get("cases", source)
        if isinstance(cases, Mapping):
            return {str(k): dict(v) for k, v in cases.items() if isinstance(v, Mapping)}
        source = cases
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        out = {}
        for entry in source:
            if not isinstance(entry, Mapping) or "id" not in entry:
                raise ConfigError(f"prediction statistics: every entry needs an 'id', got {entry!r}")
            out[str(entry["id"])] = dict(entry)
        return out
    raise ConfigError(f"prediction statistics: unexpected structure {type(source).__name__}")


def per_round_summary(stats: Mapping[str, Mapping], ids: Iterable[str] | None = None) -> list[dict] | None:
    """Mean DSC after each coarse-to-fine round, from the rounds the inferer recorded.

    Two means are given per round: over the cases that ran that round (``mean_dsc``), and over every
    case with its DSC carried forward from the round it stopped at (``mean_dsc_carried``: the same
    case set at every round, so rounds can be compared).

    Args:
        stats: ``{id: {"rounds": [{"round", "dsc", "inter_round_dsc", ...}, ...]}}``.
        ids: cases to include (default: all in ``stats``).

    Returns:
        ``[{"round", "cases", "mean_dsc", "mean_dsc_carried", "mean_inter_round_dsc"}, ...]``, or
        ``None`` when no case recorded a per-round DSC (prediction ran without the labels).
    """
    wanted = list(stats) if ids is None else [i for i in ids if i in stats]
    series: dict[str, dict[int, Mapping]] = {}
    for case_id in wanted:
        rounds = stats[case_id].get("rounds") or []
        by_round = {int(r["round"]): r for r in rounds if isinstance(r, Mapping) and r.get("dsc") is not None}
        if by_round:
            series[case_id] = by_round
    if not series:
        return None
    last = max(max(r) for r in series.values())
    first = min(min(r) for r in series.values())
    table = []
    for n in range(first, last + 1):
        ran = [float(r[n]["dsc"]) for r in series.values() if n in r]
        carried = []
        for r in series.values():
            done = [k for k in r if k <= n]
            if done:
                carried.append(float(r[max(done)]["dsc"]))
        inter = [
            float(r[n]["inter_round_dsc"])
            for r in series.values()
            if n in r and r[n].get("inter_round_dsc") is not None and math.isfinite(float(r[n]["inter_round_dsc"]))
        ]
        table.append(
            {
                "round": n,
                "cases": len(ran),
                "mean_dsc": float(np.mean(ran)) if ran else None,
                "mean_dsc_carried": float(np.mean(carried)) if carried else None,
                "mean_inter_round_dsc": float(np.mean(inter)) if inter else None,
            }
        )
    return table
