"""Benchmark records: the finished seeds that ``bench_atso.py --record FOLDER`` keeps, and their baselines.

A record folder holds one setting: ``seed<k>.json`` per finished seed (``setting``, ``seconds`` and
the experiment's ``report``). A setting that differs from another only in ATSO's own options
(``ATSO_ONLY_KEYS``) trains the same M0, fully supervised model, self-learning and STSO seed for
seed, so it may run ATSO alone and name that other record as its *baselines*
(``--baselines FOLDER``, kept in ``baselines.json``): its tables then read the strategies it did not
run from there, once the two records are checked to share every other option and, seed by seed,
M0's and the fully supervised model's test results to the last digit.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

SETTING_KEYS = (
    "cases",
    "shape",
    "phantom_seed",
    "labeled",
    "test",
    "folds",
    "generations",
    "strategies",
    "planes",
    "recipe",
    "preset",
    "iterations",
    "batch_size",
    "init_mode",
    "cutout",
    "labeled_share",
    "margin",
    "rounds",
    "classes",
    "iterations_per_case",
    "fold_training",
    "class_reduction",
    "no_fine_tune",
    "class_activation",
    "fold_init",
    "transfer",
    "target_cases",
    "confidence",
)
#: Setting keys added after seeds were recorded: a record without one was measured with this value.
SETTING_DEFAULTS = {
    "labeled_share": None,
    "classes": None,
    "iterations_per_case": None,
    "fold_training": "own",
    "class_reduction": None,
    "no_fine_tune": False,
    "class_activation": None,
    "fold_init": "scratch",
    "transfer": False,
    "target_cases": None,
    "confidence": None,
}
#: Options that change ATSO's trainings and nothing else.
ATSO_ONLY_KEYS = ("folds", "fold_training", "fold_init")
#: Strategies a record may read from its baselines (M0 and the bound must be its own, and equal).
BORROWABLE = ("self_learning", "stso", "atso")
BASELINES_FILE = "baselines.json"


def setting(args) -> dict:
    """What makes two seeds' results comparable: everything but the seed list, folders and devices."""
    return json.loads(json.dumps({key: getattr(args, key) for key in SETTING_KEYS}))


def entry_path(record: Path, seed: int) -> Path:
    return record / f"seed{seed}.json"


def _measured_setting(entry: dict) -> dict:
    return {**SETTING_DEFAULTS, **entry["setting"]}


def recorded(record: Path, seed: int, args) -> dict | None:
    """A seed's report from the record folder, or ``None``; a record of another setting is refused."""
    path = entry_path(record, seed)
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    if differ := _differing(setting(args), _measured_setting(entry)):
        sys.exit(
            f"bench_atso: {path} was measured with another setting ({', '.join(differ)} differ); "
            "use another --record folder"
        )
    return entry["report"]


def _differing(own: dict, other: dict, ignored: tuple[str, ...] = ()) -> list[str]:
    """The setting keys (but ``ignored``) whose values differ between two settings."""
    return sorted(k for k in SETTING_KEYS if k not in ignored and own.get(k) != other.get(k))


def record_entries(record: Path) -> dict[int, dict]:
    """``{seed: entry}`` of every finished seed in a record folder."""
    return {int(f.stem[4:]): json.loads(f.read_text()) for f in sorted(record.glob("seed*.json"))}


def borrowed_strategies(own: dict, baselines: dict) -> list[str]:
    """The strategies a setting reads from its baselines' setting, or exit naming the options that differ.

    Both settings must agree on every option but ``strategies`` and ATSO's own; ATSO itself is read
    only where those agree too.
    """
    differ = _differing(own, baselines, ignored=("strategies",))
    if others := [f"{k} {own.get(k)!r} here, {baselines.get(k)!r} there" for k in differ if k not in ATSO_ONLY_KEYS]:
        sys.exit(
            f"bench_atso: the baselines were measured with other options ({'; '.join(others)}): only ATSO's own "
            f"options ({', '.join(ATSO_ONLY_KEYS)}) may differ between a setting and its baselines"
        )
    return [
        s
        for s in BORROWABLE
        if s in baselines["strategies"] and s not in own["strategies"] and not (s == "atso" and differ)
    ]


def check_baselines(own_setting: dict, baselines: Path, seeds: Iterable[int]) -> list[str]:
    """The strategies to read from ``baselines`` for ``seeds``, checked before any training.

    Raises:
        SystemExit: a seed not recorded there, options that differ beyond ATSO's, or nothing to read.
    """
    return _borrowable(own_setting, baselines, record_entries(baselines) if baselines.is_dir() else {}, seeds)


def _borrowable(own_setting: dict, baselines: Path, entries: dict[int, dict], seeds: Iterable[int]) -> list[str]:
    """:func:`check_baselines` on the baselines' entries, read once by the caller."""
    if not entries:
        sys.exit(f"bench_atso: no recorded seed in the baselines folder {baselines}")
    if missing := sorted(set(seeds) - set(entries)):
        sys.exit(
            f"bench_atso: seed(s) {', '.join(map(str, missing))} not recorded in the baselines folder {baselines}: "
            "record them there first, or run these seeds without --baselines and link them later (the same "
            "command with --baselines trains nothing once every seed is recorded)"
        )
    borrowed = borrowed_strategies(own_setting, _measured_setting(next(iter(entries.values()))))
    if not borrowed:
        sys.exit(f"bench_atso: {baselines} has no strategy that this setting lacks; drop --baselines")
    return borrowed


def with_baselines(reports: dict[int, dict], own_setting: dict, baselines: Path) -> dict[int, dict]:
    """Each seed's report with the strategies it lacks read from the same seed of ``baselines``.

    The report gains ``baselines``: ``{"record": folder name, "strategies": [...]}``.

    Raises:
        SystemExit: as :func:`check_baselines`, or a seed whose M0 or fully supervised test result differs
            (then the two settings did not train the same models, and their strategies do not compare).
    """
    entries = record_entries(baselines) if baselines.is_dir() else {}
    borrowed = _borrowable(own_setting, baselines, entries, reports)
    merged = {}
    for seed, report in reports.items():
        other = entries[seed]["report"]
        for anchor in ("supervised", "fully_supervised"):
            mine, theirs = (r["strategies"][anchor]["final"]["test"] for r in (report, other))
            if mine != theirs:
                sys.exit(
                    f"bench_atso: seed {seed}'s {anchor} model differs from the baselines' in {baselines} "
                    f"(test DSC {mine and mine.get('mean_dsc')} against {theirs and theirs.get('mean_dsc')}): "
                    "not the same trainings, so their strategies do not compare"
                )
        strategies = {**report["strategies"], **{s: other["strategies"][s] for s in borrowed}}
        merged[seed] = {
            **report,
            "strategies": strategies,
            "baselines": {"record": baselines.name, "strategies": borrowed},
        }
    return merged


def link_baselines(record: Path, baselines: Path) -> None:
    """Keep the record's baselines in ``record/baselines.json`` (a path relative to the record)."""
    from atso_med.files import write_text_atomic

    record.mkdir(parents=True, exist_ok=True)
    link = {"record": os.path.relpath(baselines.resolve(), record.resolve())}
    write_text_atomic(json.dumps(link, indent=1) + "\n", record / BASELINES_FILE)


def linked_baselines(record: Path) -> Path | None:
    """The baselines folder a record names in its ``baselines.json``, or ``None``."""
    link = record / BASELINES_FILE
    if not link.is_file():
        return None
    return (record / json.loads(link.read_text())["record"]).resolve()


def load_record(record: Path) -> dict[int, dict]:
    """``{seed: report}`` of a record folder, with the strategies it reads from its baselines."""
    entries = record_entries(record)
    reports = {seed: entry["report"] for seed, entry in entries.items()}
    baselines = linked_baselines(record)
    if baselines is None or not reports:
        return reports
    return with_baselines(reports, _measured_setting(next(iter(entries.values()))), baselines)
