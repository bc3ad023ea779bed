"""The demo's message quotes the benchmark as recorded: every figure it prints is a recorded mean."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from atso_med.cli.demo import DEMO_MEASURED, demo_note

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_atso import gap_of_means, mean_std
from bench_records import load_record
from bench_settings import final

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.mark.parametrize("setting", sorted(DEMO_MEASURED))
def test_every_figure_the_demo_quotes_is_the_mean_of_its_record(setting):
    reports = load_record(RESULTS / setting)
    assert len(reports) >= 3, f"the demo quotes {setting}, which has {len(reports)} recorded seed(s), not 3"
    for key, quoted in DEMO_MEASURED[setting].items():
        if key.startswith("gap_closed_"):
            measured = 100.0 * gap_of_means(reports, key.removeprefix("gap_closed_"))
            assert round(measured) == quoted, f"{setting} {key}: quoted {quoted}, recorded {measured:.2f}"
        else:
            measured = 100.0 * mean_std(final(reports, key))[0]
            assert round(measured, 1) == pytest.approx(quoted), (
                f"{setting} {key}: quoted {quoted}, recorded {measured:.2f}"
            )


def test_the_demo_message_prints_the_quoted_figures():
    note = demo_note()
    for figures in DEMO_MEASURED.values():
        for key, value in figures.items():
            assert f"{value}{' %' if key.startswith('gap_closed_') else ''}" in note, key
