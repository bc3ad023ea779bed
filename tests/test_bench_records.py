"""Benchmark records and their baselines (``benchmarks/bench_records.py``): a setting that runs ATSO
alone reads self-learning and STSO from a record of the same trainings, and from nothing else."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_records import SETTING_DEFAULTS, SETTING_KEYS, link_baselines, load_record
from bench_settings import table


def _result(dsc: float) -> dict:
    return {"cases": 7, "mean_dsc": dsc, "std_dsc": 0.1, "global_dsc": dsc}


def _report(finals: dict[str, float]) -> dict:
    return {
        "metric": "mean",
        "strategies": {name: {"generations": {}, "final": {"test": _result(dsc)}} for name, dsc in finals.items()},
    }


def _setting(**changes) -> dict:
    base = {key: SETTING_DEFAULTS.get(key) for key in SETTING_KEYS}
    base.update(shape=[64, 64, 24], iterations=400, init_mode="snapshot", folds=2)
    return {**base, **changes}


def _write(record: Path, seed: int, setting: dict, finals: dict[str, float]) -> None:
    record.mkdir(parents=True, exist_ok=True)
    entry = {"setting": setting, "seconds": 1, "report": _report(finals)}
    (record / f"seed{seed}.json").write_text(json.dumps(entry))


@pytest.fixture()
def records(tmp_path) -> tuple[Path, Path]:
    """A complete setting (Algorithm 1) and an ATSO-only one with the same M0 and bound per seed."""
    full, continued = tmp_path / "full", tmp_path / "continued"
    strategies = ["supervised", "fully_supervised", "self_learning", "stso", "atso"]
    for seed, (m0, bound) in enumerate([(0.50, 0.70), (0.60, 0.72)]):
        finals = {"supervised": m0, "fully_supervised": bound, "self_learning": m0 + 0.02, "stso": m0 - 0.03}
        _write(full, seed, _setting(strategies=strategies), {**finals, "atso": m0 - 0.01})
        _write(
            continued,
            seed,
            _setting(strategies=["supervised", "fully_supervised", "atso"], fold_init="continue"),
            {"supervised": m0, "fully_supervised": bound, "atso": m0 + 0.05},
        )
    return full, continued


def test_an_atso_only_setting_reads_its_baselines_strategies(records):
    full, continued = records
    assert "self_learning" not in load_record(continued)[0]["strategies"]

    link_baselines(continued, full)
    reports = load_record(continued)

    for seed, m0 in ((0, 0.50), (1, 0.60)):
        strategies = reports[seed]["strategies"]
        assert strategies["self_learning"]["final"]["test"]["mean_dsc"] == pytest.approx(m0 + 0.02)
        assert strategies["stso"]["final"]["test"]["mean_dsc"] == pytest.approx(m0 - 0.03)
        # ATSO is its own (continued), never Algorithm 1's from the baselines
        assert strategies["atso"]["final"]["test"]["mean_dsc"] == pytest.approx(m0 + 0.05)
        assert reports[seed]["baselines"] == {"record": "full", "strategies": ["self_learning", "stso"]}
    row = next(line for line in table({"continued": reports}).splitlines() if line.startswith("| `continued`"))
    assert "(self_learning, stso from `full`)" in row
    assert "57.00 ± 5.00" in row  # self-learning's final means over the two seeds (52 and 62)


def test_baselines_of_other_options_are_refused(records, tmp_path):
    full, _ = records
    shared = tmp_path / "shared"
    _write(
        shared,
        0,
        _setting(strategies=["supervised", "fully_supervised", "atso"], labeled_share=0.5, fold_init="continue"),
        {"supervised": 0.50, "fully_supervised": 0.70, "atso": 0.55},
    )
    link_baselines(shared, full)
    with pytest.raises(SystemExit, match=r"labeled_share 0\.5 here, None there"):
        load_record(shared)


def test_baselines_without_a_seed_are_refused(records):
    full, continued = records
    (full / "seed1.json").unlink()
    link_baselines(continued, full)
    with pytest.raises(SystemExit, match=r"seed\(s\) 1 not recorded in the baselines folder"):
        load_record(continued)


def test_baselines_whose_m0_differs_are_refused(records):
    full, continued = records
    entry = json.loads((continued / "seed1.json").read_text())
    entry["report"]["strategies"]["supervised"]["final"]["test"]["mean_dsc"] = 0.61
    (continued / "seed1.json").write_text(json.dumps(entry))
    link_baselines(continued, full)
    with pytest.raises(SystemExit, match="seed 1's supervised model differs"):
        load_record(continued)
