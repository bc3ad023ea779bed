"""Every recorded benchmark setting side by side: one table and one figure from ``benchmarks/results``.

Reads the finished seeds that ``bench_atso.py --record`` keeps (``<results>/<setting>/seed<k>.json``),
trains nothing, and prints per setting the final test DSC of every strategy (mean +- std over
seeds) and the share of the labeled-only -> fully supervised gap each semi-supervised strategy
closes, by the means over seeds (+- the spread of each seed's gain over its M0 on that scale). ``--figure`` also draws the gap
closed per strategy per setting::

    python benchmarks/bench_settings.py --figure benchmarks/results/gap_closed.png

``--fit`` also prints how closely the students fit their training pseudo labels, setting by setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_atso import final_dsc, fmt, mean_std
from bench_records import load_record

STRATEGIES = ("self_learning", "stso", "atso")
NAMES = {"supervised": "labeled only", "fully_supervised": "fully sup.", "self_learning": "self-learning"}


def load_settings(results: Path) -> dict[str, dict[int, dict]]:
    """``{setting: {seed: report}}`` of every record folder under ``results``, with the strategies a
    setting reads from its baselines (``bench_records.load_record``)."""
    settings = {}
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        if seeds := load_record(folder):
            settings[folder.name] = seeds
    return settings


def final(reports: dict[int, dict], strategy: str) -> list[float | None]:
    """Each seed's final test DSC of ``strategy`` in its record's metric (global in the transfer setting)."""
    return [final_dsc(r, strategy) for r in reports.values()]


def gap_shares(reports: dict[int, dict], strategy: str) -> list[float]:
    """Each seed's gain over its M0, as a share of the mean gap (mean fully supervised - mean M0).

    Their mean is the gap closed by the means; their spread is the seeds' spread on one scale (a
    seed's own ratio explodes where its M0 comes within a point of its bound).
    """
    m0 = final(reports, "supervised")
    gap = mean_std(final(reports, "fully_supervised"))[0] - mean_std(m0)[0]
    return [(f - s) / gap for f, s in zip(final(reports, strategy), m0, strict=True) if None not in (f, s)]


def scale(reports: dict[int, dict]) -> str:
    """What a setting's DSC is, where it is not one organ's mean over cases: `` (global DSC)``, `` (mean of C classes)``."""
    report = next(iter(reports.values()))
    classes = report["strategies"]["supervised"]["final"]["test"].get("classes")
    if report["metric"] == "global":
        return " (global DSC)"
    return f" (mean of {len(classes)} classes)" if classes else ""


def table(settings: dict[str, dict[int, dict]]) -> str:
    """The Markdown table: final test DSC % per strategy, then the gap closed by the means and per seed."""
    strategies = ("supervised", "fully_supervised", *STRATEGIES)
    header = ["setting", "seeds", *(NAMES.get(s, s.upper()) for s in strategies)]
    header += [f"gap closed {NAMES.get(s, s.upper())}" for s in STRATEGIES]  # by the means, +- the seeds' spread
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, reports in settings.items():
        metric = scale(reports)
        borrowed = next(iter(reports.values())).get("baselines")
        source = f" ({', '.join(borrowed['strategies'])} from `{borrowed['record']}`)" if borrowed else ""
        row = [f"`{name}`{metric}{source}", ", ".join(str(s) for s in sorted(reports))]
        row += [fmt(final(reports, s)) for s in strategies]
        gaps = [fmt(gap_shares(reports, strategy), 100.0) for strategy in STRATEGIES]
        row += [gap if gap == "—" else f"{gap} %" for gap in gaps]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def fit_table(settings: dict[str, dict[int, dict]]) -> str:
    """How closely the students fit their training pseudo labels (the capacity question of issue 21).

    Per setting and strategy, the mean over seeds and students of generation 1 and of the later
    ones: the students' DSC against the pseudo labels they trained on (``fit``), against the truth
    of those cases, and the labels' own DSC against the truth (report.json's ``lazy_learning``).
    A student that memorises its teacher has a fit near 100 and a truth DSC near its labels'.
    """
    lines = [
        "| setting | strategy | G1 fit | G1 student / labels vs truth | G2+ fit | G2+ student / labels vs truth |",
        "|---|---|---|---|---|---|",
    ]
    for name, reports in settings.items():
        found: dict[tuple[str, bool], list[tuple[float, float, float]]] = {}
        for report in reports.values():
            for student in report.get("lazy_learning", {}).get("students", []):
                if student.get("fit") and student.get("truth") and student.get("labels"):
                    key = (student["strategy"], student["generation"] == 1)
                    found.setdefault(key, []).append(
                        tuple(100 * student[part]["mean_dsc"] for part in ("fit", "truth", "labels"))
                    )
        for strategy in STRATEGIES:
            cells = []
            for first in (True, False):
                rows = found.get((strategy, first))
                if not rows:
                    cells += ["—", "—"]
                    continue
                fit, truth, labels = (sum(r[i] for r in rows) / len(rows) for i in range(3))
                cells += [f"{fit:.1f}", f"{truth:.1f} / {labels:.1f}"]
            if cells != ["—"] * 4:
                lines.append(f"| `{name}` | {NAMES.get(strategy, strategy.upper())} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(settings: dict[str, dict[int, dict]], path: Path) -> None:
    """Bars: the gap closed by the means per strategy per setting; whiskers: the per-seed spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(settings)
    height = 0.8 / len(STRATEGIES)
    # one row per setting (readable however many settings there are), the first at the top
    rows = [len(names) - 1 - i for i in range(len(names))]
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.55 * len(names)))
    for k, strategy in enumerate(STRATEGIES):
        means, spread, _ = zip(*(mean_std(gap_shares(settings[n], strategy)) for n in names), strict=True)
        ys = [row - (k - 1) * height for row in rows]
        ax.barh(ys, [100 * (m or 0.0) for m in means], height, label=NAMES.get(strategy, strategy.upper()))
        ax.errorbar(
            [100 * (m or 0.0) for m in means],
            ys,
            xerr=[100 * (s or 0.0) for s in spread],
            fmt="none",
            ecolor="k",
            lw=0.8,
        )
    ax.axvline(0, color="k", lw=0.6)
    ax.axvline(50, color="grey", lw=0.6, ls="--")  # issue 21's target for ATSO
    ax.set_yticks(
        rows,
        [f"{n}{scale(settings[n])} ({len(settings[n])} seed{'s' if len(settings[n]) > 1 else ''})" for n in names],
        fontsize=7,
    )
    ax.set_xlabel("gap closed, % (by the means; dashed: 50 %)")
    ax.set_title("Share of the labeled-only -> fully supervised gap closed (whiskers: std over seeds)", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="record folders")
    parser.add_argument("--figure", type=Path, help="also draw the gap closed per setting into this PNG")
    parser.add_argument(
        "--fit", action="store_true", help="also print how closely the students fit their training pseudo labels"
    )
    args = parser.parse_args(argv)
    settings = load_settings(args.results)
    if not settings:
        print(f"no recorded setting under {args.results}", file=sys.stderr)
        return 1
    print(table(settings))
    if args.fit:
        print()
        print(fit_table(settings))
    if args.figure:
        figure(settings, args.figure)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
