"""ATSO against its baselines on the phantom: test DSC per strategy and generation over several seeds.

Setting: one phantom data set; for every seed a new random split (about 10% of the training pool
labeled, 25% of the cases test, the rest in K reference folds), new initial weights and data
order. Each seed is a complete experiment (``ExperimentRunner``) in ``OUT/seed<k>/``, resumable: run
the same command again after an interruption. Printed and written to ``OUT/summary.{json,md}``:

* mean +- std over seeds of the test DSC (``@E``) and of the reference pseudo-label DSC (``@R``)
  per strategy and generation, and of each strategy's final model;
* the share of the supervised -> fully supervised gap each strategy closes,
  ``(final - supervised) / (fully_supervised - supervised)``, per seed and its mean +- std.

* ATSO's fold table (the paper's Table 4), mean over seeds: every fold model on every fold;
* the lazy-learning figures of every seed (``report.json``'s ``lazy_learning``): each student's fit
  to its own pseudo labels, ATSO's own-minus-other fold DSC, and the pseudo labels' precision,
  recall and volume per generation (measured from a seed's experiment folder when its record
  predates them).

The protocol is the paper's by default: STSO and ATSO start every generation from its scratch
model (``--init-mode snapshot``, Section 4.2); ``--init-mode random`` is an ablation, and
``--labeled-share`` an option beyond the paper. A record folder holds one setting only: a seed
recorded with other options is refused, not mixed in.

Examples::

    python benchmarks/bench_atso.py --out runs/bench_atso                      # the default grid (CPU: hours)
    python benchmarks/bench_atso.py --quick --out runs/bench_quick             # CPU smoke (about 15 minutes)
    python benchmarks/bench_atso.py --seeds 0 --record benchmarks/results/phantom96_snapshot  # one seed per session
    python benchmarks/bench_atso.py --shape 64 64 24 --iterations 400 --record benchmarks/results/phantom64_snapshot
    python benchmarks/bench_atso.py --preset unet --iterations 4000 --batch-size 8 --devices cuda:0

The default grid (28 phantom cases of 96x96x24: 21 training cases, 2 of them labeled, and 7 test
cases; 3 seeds, 3 generations, 3 planes, the ``scratch`` recipe at the ``unet_tiny`` preset, 1200
iterations, two 1-thread CPU workers) is the smallest setting measured whose fully supervised
bound passes 80 % (81.5 % on seed 0); on this project's 2-core CPU it takes about an hour per seed.
``--shape 64 64 24 --iterations 400`` is the grid of the settings sweep (13 minutes per seed alone on
the machine; bound about 70 %). With one generation, as in ``--quick``, ATSO's final
model is STSO's generation 1 by construction (Algorithm 1, line 8: the final model trains on the
pseudo labels generation T trained on, which for T = 1 are M0's), so only ``--generations 2`` or
more can separate them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench_records import check_baselines, entry_path, link_baselines, recorded, setting, with_baselines

QUICK = {
    "shape": [64, 64, 24],
    "cases": 12,
    "generations": 1,
    "planes": ["Z"],
    "iterations": 150,
    "rounds": 1,
    "seeds": [0, 1, 2],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench_atso", help="benchmark folder (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="experiment seeds (>= 3 for a spread)")
    parser.add_argument("--cases", type=int, default=28, help="phantom cases (default: %(default)s)")
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 96, 24], help="phantom shape (default: %(default)s)")
    parser.add_argument("--phantom-seed", type=int, default=0, help="seed of the phantom data set")
    parser.add_argument("--labeled", default="0.1", help="labeled cases: count or fraction of the training pool")
    parser.add_argument("--test", default="0.25", help="test cases: count or fraction (of the target with --transfer)")
    parser.add_argument(
        "--transfer",
        action="store_true",
        help="the paper's transfer setting (NIH -> MSD): the --cases phantom, every case labeled, is the source; "
        "a phantom of --target-cases cases from the shifted scanner (--domain shifted) is the unlabeled target, "
        "--test of it held out; DSC pooled over the test voxels (global)",
    )
    parser.add_argument(
        "--target-cases", type=int, default=None, help="with --transfer: target phantom cases (default: --cases)"
    )
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument(
        "--fold-training",
        choices=["own", "others"],
        default="own",
        help="ATSO's fold models: own fold (Algorithm 1) or every other fold (leave-one-fold-out, beyond the paper)",
    )
    parser.add_argument(
        "--fold-init",
        choices=["scratch", "continue"],
        default="scratch",
        help="ATSO's fold models: from scratch every generation (Algorithm 1) or fine-tuning their previous "
        "generation (beyond the paper)",
    )
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument(
        "--strategies", nargs="+", default=["supervised", "fully_supervised", "self_learning", "stso", "atso"]
    )
    parser.add_argument("--planes", default="XYZ", help="planes, e.g. XYZ or Z")
    parser.add_argument("--recipe", default="scratch", choices=["scratch", "paper"], help="training recipe")
    parser.add_argument("--preset", default="unet_tiny", help="network preset (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=1200)
    parser.add_argument(
        "--iterations-per-case",
        type=int,
        default=None,
        help="instead of --iterations: this many per training case (the appendix's epochs per generation)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--init-mode",
        default="snapshot",
        choices=["random", "snapshot"],
        help="start of STSO/ATSO generations: snapshot (the paper's scratch model, Section 4.2; default) or "
        "random (an ablation: the shared seeded random weights)",
    )
    parser.add_argument("--cutout", action="store_true", help="the appendix's strong augmentation for every strategy")
    parser.add_argument(
        "--labeled-share",
        type=float,
        default=None,
        help="beyond the paper (off in its protocol): share of each student's training draws taken from the "
        "labeled cases (the bundle's labeled_share), e.g. 0.5",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=None,
        help="beyond the paper (off in its protocol): every student leaves out of its loss the pseudo-label "
        "voxels whose teachers' mean probability of the label's class is below this (pseudo_label_confidence), "
        "e.g. 0.9",
    )
    parser.add_argument(
        "--margin", type=int, default=6, help="box margin in pixels (RSTN's 20 px is for 512x512 slices)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="coarse-to-fine inference rounds")
    parser.add_argument(
        "--classes",
        nargs="+",
        default=None,
        metavar="NAME",
        help="several organs: the phantom's organ map (labels 'organs') and these classes of it, e.g. liver "
        "spleen kidneys=kidney_left+kidney_right pancreas gallbladder (default: the pancreas mask)",
    )
    parser.add_argument(
        "--class-reduction",
        nargs="+",
        default=None,
        metavar="GROUP=A+B",
        help="the paper's class reduction of the --classes: generations score pseudo labels at these groups "
        "(every class in one), e.g. large=liver+spleen kidneys=kidneys small=pancreas+gallbladder",
    )
    parser.add_argument(
        "--no-fine-tune", action="store_true", help="with --class-reduction: no fine-class fine-tuning after it"
    )
    parser.add_argument(
        "--class-activation",
        choices=["sigmoid", "softmax"],
        default=None,
        help="the class head of every training (default: sigmoid; softmax with --class-reduction)",
    )
    parser.add_argument("--devices", nargs="+", default=["cpu", "cpu"], help="one training per device at a time")
    parser.add_argument("--quick", action="store_true", help="CPU smoke setting: " + json.dumps(QUICK))
    parser.add_argument(
        "--record",
        default=None,
        help="folder of finished seeds' reports (seed<k>.json, kept in git): a recorded seed of the same "
        "setting is read, not rerun, and every seed that finishes is added; lets the seeds of one "
        "grid be run in separate sessions",
    )
    parser.add_argument(
        "--baselines",
        default=None,
        help="record folder of a setting that differs from this one in ATSO's options alone (--folds, "
        "--fold-training, --fold-init): the strategies this one does not run (say, all but M0, the bound and "
        "ATSO) are read from its seeds, checked to have trained the same M0 and bound; kept with --record",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.shape, args.cases, args.generations = QUICK["shape"], QUICK["cases"], QUICK["generations"]
        args.planes = "".join(QUICK["planes"])
        args.iterations, args.rounds, args.seeds = QUICK["iterations"], QUICK["rounds"], QUICK["seeds"]
    return args


def amount(text: str) -> int | float:
    return int(text) if text.strip().isdigit() else float(text)


def experiment(args: argparse.Namespace, data: dict[str, Path], seed: int, out: Path) -> dict:
    """The experiment of one seed; ``data``: the phantom's ``dataset``, or the transfer's ``source`` and ``target``."""
    if args.transfer:
        cases = {
            "transfer": {"source": str(data["source"]), "target": str(data["target"]), "target_test": amount(args.test)}
        }
    else:
        cases = {"dataset": str(data["dataset"]), "split": {"labeled": amount(args.labeled), "test": amount(args.test)}}
    return {
        "output_dir": str(out),
        **cases,
        "strategies": list(args.strategies),
        "generations": args.generations,
        "folds": args.folds,
        "fold_training": args.fold_training,
        "fold_init": args.fold_init,
        "pseudo_label_confidence": args.confidence,
        "planes": list(args.planes),
        "seed": seed,
        "devices": list(args.devices),
        "training": {
            "recipe": args.recipe,
            "preset": args.preset,
            **(
                {"iterations_per_case": args.iterations_per_case}
                if args.iterations_per_case
                else {"iterations": args.iterations}
            ),
            "batch_size": args.batch_size,
            "init_mode": args.init_mode,
            "cutout": args.cutout,
            "num_workers": 0,
            "overrides": {
                "margin_fixed": args.margin,
                "margin_max": 2 * args.margin,
                **({"labeled_share": args.labeled_share} if args.labeled_share is not None else {}),
                **({"class_activation": args.class_activation} if args.class_activation else {}),
            },
        },
        "inference": {"rounds": args.rounds, "margin": args.margin, "batch_size": 16},
        "report": {"overlay_cases": 1},
        **({"classes": _class_spec(args.classes)} if args.classes else {}),
        **(
            {"class_reduction": {"groups": _class_spec(args.class_reduction), "fine_tune": not args.no_fine_tune}}
            if args.class_reduction
            else {}
        ),
    }


def _class_spec(tokens: list[str]):
    from atso_med.cli.arguments import class_selection_spec

    return class_selection_spec(tokens)


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0), len(values)


def fmt(values: list[float | None], scale: float = 100.0) -> str:
    mean, std, _n = mean_std(values)
    return "—" if mean is None else f"{scale * mean:.2f} ± {scale * std:.2f}"


def dsc(result: dict | None, metric: str = "mean") -> float | None:
    """An evaluation's DSC in the report's metric (``mean`` over cases, or ``global``: the transfer setting's)."""
    from atso_med.metrics.pooling import result_dsc

    return result_dsc(result, metric)


def final_dsc(report: dict, strategy: str) -> float | None:
    """A strategy's final test DSC in the report's metric (``None``: the strategy is not in the report)."""
    return dsc(report["strategies"].get(strategy, {}).get("final", {}).get("test"), report["metric"])


def gap_closed(report: dict, strategy: str) -> float | None:
    """(final - supervised) / (fully supervised - supervised) on the test set of one seed.

    ``None`` when there is no gap to close (the upper bound not at least 0.5 DSC points above M0).
    """
    supervised, fully = final_dsc(report, "supervised"), final_dsc(report, "fully_supervised")
    final = final_dsc(report, strategy)
    if (
        strategy in ("supervised", "fully_supervised")
        or None in (supervised, fully, final)
        or fully - supervised < 0.005
    ):
        return None
    return (final - supervised) / (fully - supervised)


def gap_of_means(reports: dict[int, dict], strategy: str) -> float | None:
    """The gap closed by the means over seeds: (mean final - mean M0) / (mean fully supervised - mean M0).

    Robust where one seed's M0 comes within a point of its bound and its own ratio explodes.
    """
    if strategy in ("supervised", "fully_supervised"):
        return None
    means = {}
    for name in ("supervised", "fully_supervised", strategy):
        means[name] = mean_std([final_dsc(r, name) for r in reports.values()])[0]
    if None in means.values() or means["fully_supervised"] - means["supervised"] < 0.005:
        return None
    return (means[strategy] - means["supervised"]) / (means["fully_supervised"] - means["supervised"])


def metric_name(reports: dict[int, dict]) -> str:
    """What the tables' DSC is: every seed of a setting has the same report metric."""
    metric = next(iter(reports.values()))["metric"]
    return "global DSC (the test cases' voxels pooled)" if metric == "global" else "per-case mean DSC"


def summarise(reports: dict[int, dict], generations: int) -> tuple[dict, str]:
    """Mean +- std over seeds per strategy and generation, and the gap each strategy closes."""
    strategies = [
        s
        for s in ("supervised", "fully_supervised", "self_learning", "stso", "atso")
        if all(s in r["strategies"] for r in reports.values())
    ]
    summary: dict = {"seeds": sorted(reports), "strategies": {}}
    lines = [
        f"Seeds: {', '.join(map(str, sorted(reports)))}; DSC % (mean ± std over seeds of the {metric_name(reports)})"
    ]
    if borrowed := next(iter(reports.values())).get("baselines"):
        summary["baselines"] = borrowed
        lines.append(
            f"{', '.join(borrowed['strategies'])}: read from the baselines record `{borrowed['record']}` (the same "
            "M0 and fully supervised model, seed for seed)"
        )
    lines.append("")
    semi = [s for s in ("self_learning", "stso", "atso") if s in strategies]
    lines += [
        "| Generation | " + " | ".join(f"{s} @R | {s} @E" for s in semi) + " |",
        "|" + "---|" * (1 + 2 * len(semi)),
    ]
    for t in range(generations + 1):
        cells = []
        for s in semi:
            reference = [
                dsc(r["strategies"][s]["generations"][str(t)]["reference"], r["metric"]) for r in reports.values()
            ]
            test = [dsc(r["strategies"][s]["generations"][str(t)]["test"], r["metric"]) for r in reports.values()]
            summary["strategies"].setdefault(s, {}).setdefault("generations", {})[str(t)] = {
                "reference": mean_std(reference)[:2],
                "test": mean_std(test)[:2],
            }
            cells += [fmt(reference), fmt(test)]
        lines.append(f"| G{t} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| Strategy | final @E | gap closed (seeds with a gap: mean ± std) | gap closed by the means |",
        "|---|---|---|---|",
    ]
    for s in strategies:
        finals = [final_dsc(r, s) for r in reports.values()]
        gaps = [gap_closed(r, s) for r in reports.values()]
        summary["strategies"].setdefault(s, {})["final_test"] = mean_std(finals)[:2]
        summary["strategies"][s]["gap_closed"] = mean_std(gaps)[:2]
        summary["strategies"][s]["gap_closed_per_seed"] = gaps
        gap_text = f"{fmt(gaps)} (n={mean_std(gaps)[2]} of {len(gaps)})" if s in semi else "—"
        summary["strategies"][s]["gap_closed_of_means"] = of_means = gap_of_means(reports, s)
        means_text = "—" if of_means is None else f"{100 * of_means:.0f} %"
        lines.append(f"| {s} | {fmt(finals)} | {gap_text} | {means_text} |")
    lines += class_lines(reports, strategies)
    lines += fold_table(reports)
    lines += lazy_learning_lines(reports)
    lines += target_lines(summary, generations)
    return summary, "\n".join(lines) + "\n"


def class_lines(reports: dict[int, dict], strategies: list[str]) -> list[str]:
    """Several classes: each final model's test DSC per class, and how often a class vanished from pseudo labels."""
    first = next(iter(reports.values()))["strategies"]["supervised"]["final"]["test"] or {}
    names = list(first.get("classes", {}))
    if not names:
        return []
    lines = [
        "",
        "Per class (final test DSC %, mean ± std over seeds of each class's mean over cases; vanished: reference "
        "cases where a class of the truth has no voxel in the pseudo labels that generation made, summed over "
        "G0..GT (G0: M0's labels) and seeds)",
        "",
        "| Strategy | " + " | ".join(names) + " | vanished from pseudo labels |",
        "|" + "---|" * (len(names) + 2),
    ]
    for s in strategies:
        cells = [
            fmt([r["strategies"][s]["final"]["test"]["classes"][n]["mean_dsc"] for r in reports.values()])
            for n in names
        ]
        vanished = "—"
        if s in ("self_learning", "stso", "atso"):
            pseudo = [
                entry["reference"]["classes"]
                for r in reports.values()
                for t, entry in r["strategies"][s]["generations"].items()
                if entry.get("reference")
            ]
            vanished = ", ".join(f"{n} {sum(c[n]['vanished'] for c in pseudo)}" for n in names)
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {vanished} |")
    reduced = [s for s in strategies if all("reduced_final" in r["strategies"][s] for r in reports.values())]
    if reduced:
        lines += ["", "Before the fine-class fine-tuning (the reduced generations' final models):", ""]
        lines += ["| Strategy | " + " | ".join(names) + " | mean |", "|" + "---|" * (len(names) + 2)]
        for s in reduced:
            tests = [r["strategies"][s]["reduced_final"]["test"] for r in reports.values()]
            cells = [fmt([t["classes"][n]["mean_dsc"] for t in tests]) for n in names]
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {fmt([dsc(t) for t in tests])} |")
    return lines


def target_lines(summary: dict, generations: int) -> list[str]:
    """The issue's targets, each said met or not from the means over seeds."""
    strategies = summary["strategies"]

    def final(name: str) -> float | None:
        return strategies.get(name, {}).get("final_test", (None,))[0]

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "NOT met")

    fully, atso, stso, self_learning = final("fully_supervised"), final("atso"), final("stso"), final("self_learning")
    gap = strategies.get("atso", {}).get("gap_closed_of_means")
    reference = [
        strategies.get("atso", {}).get("generations", {}).get(str(t), {}).get("reference", (None,))[0]
        for t in range(generations + 1)
    ]
    rises = None if None in reference or len(reference) < 3 else all(b > a for a, b in itertools.pairwise(reference))
    beats = None if None in (atso, stso, self_learning) else atso > stso and atso > self_learning
    return [
        "",
        "Targets of issue 21 (means over seeds)",
        f"- ATSO's final test DSC above STSO's and self-learning's: {verdict(beats)}",
        f"- ATSO closes >= 50 % of the labeled-only -> fully supervised gap (by the means): {verdict(None if gap is None else gap >= 0.5)}",
        f"- ATSO's @R rises over generations (Table 1's shape): {verdict(rises)}",
        f"- fully supervised test DSC >= 80 % (the headline grid): {verdict(None if fully is None else fully >= 0.8)}",
    ]


def lazy_learning_lines(reports: dict[int, dict]) -> list[str]:
    """The lazy-learning figures (report.json's ``lazy_learning``), mean +- std over seeds."""
    with_figures = [r["lazy_learning"] for r in reports.values() if "lazy_learning" in r]
    if not with_figures:
        return []
    metric = next(iter(reports.values()))["metric"]
    lines = [
        "",
        f"Lazy learning (seeds with the figures: {len(with_figures)} of {len(reports)}), DSC %: fit = a student's "
        "prediction of its training reference cases against the pseudo labels it trained on",
        "",
        "| Student | fit to its labels | student vs truth | its labels vs truth |",
        "|---|---|---|---|",
    ]
    models = [row["model"] for row in with_figures[0]["students"]]
    for model in models:
        rows = [next((r for r in f["students"] if r["model"] == model), None) for f in with_figures]
        cells = [fmt([dsc(row[key], metric) if row else None for row in rows]) for key in ("fit", "truth", "labels")]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    repeated = [f["repeated_errors"] for f in with_figures if f.get("repeated_errors")]
    if repeated:
        lines += [
            "",
            f"Repeated errors (seeds with the figure: {len(repeated)}): share of a pseudo-label set's wrong voxels that "
            "a model predicts the same wrong way, %",
            "",
            "| Student | on the cases it trained on |",
            "|---|---|",
        ]
        for model in repeated[0]["students"]:
            lines.append(f"| {model} | {fmt([r['students'].get(model) for r in repeated])} |")
        lines += ["", "ATSO fold models on a fold's labels: own = trained on them, other = never saw them"]
        for t in repeated[0]["atso"]:
            own = fmt([r["atso"].get(t, {}).get("own") for r in repeated])
            other = fmt([r["atso"].get(t, {}).get("other") for r in repeated])
            lines.append(f"- G{t}: own {own}, other {other}")
    own_minus_other = [f["atso_own_minus_other"] for f in with_figures if f["atso_own_minus_other"]]
    if own_minus_other:
        lines += ["", "ATSO own fold minus other fold (points; negative = lazy learning; paper G1: -3.3, -0.2):"]
        for t in own_minus_other[0]:
            lines.append(f"- G{t}: {fmt([o[t]['mean_difference'] if t in o else None for o in own_minus_other])}")
    lines += ["", "| Pseudo labels | precision | recall | volume / truth |", "|---|---|---|---|"]
    for strategy, by_generation in with_figures[0]["pseudo_labels"].items():
        for t in by_generation:
            entries = [f["pseudo_labels"].get(strategy, {}).get(t) for f in with_figures]
            cells = [fmt([e[key] if e else None for e in entries]) for key in ("precision", "recall")]
            cells.append(fmt([e["volume_ratio"] if e else None for e in entries], scale=1.0))
            lines.append(f"| {strategy} for G{t} | " + " | ".join(cells) + " |")
    return lines


def with_lazy_learning(report: dict, experiment_dir: Path) -> dict:
    """The report with its lazy-learning figures, measured from the experiment folder when it lacks them
    (or, with ``pseudo_label_confidence``, the figures of its uncertain voxels)."""
    from atso_med.atso import ExperimentResults
    from atso_med.atso.lazy_learning import has_lazy_learning

    if has_lazy_learning(report) or not (experiment_dir / "reports" / "report.json").is_file():
        return report

    return {**report, "lazy_learning": ExperimentResults(experiment_dir).lazy_learning()}


def fold_table(reports: dict[int, dict]) -> list[str]:
    """ATSO's Table 4, each cell the mean +- std over seeds (empty without ATSO)."""
    from atso_med.atso.report_tables import atso_fold_rows

    per_seed = [atso_fold_rows(r) for r in reports.values() if "atso" in r["strategies"]]
    if not per_seed or not per_seed[0]:
        return []
    columns = list(per_seed[0][0])
    lines = ["", "ATSO fold models (Table 4; @R(fold k): pseudo labels of fold k, @E: test), DSC %", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for index, row in enumerate(per_seed[0]):
        cells = [row["Generation"]]
        for column in columns[1:]:
            cells.append(fmt([rows[index][column] for rows in per_seed if index < len(rows)]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    import yaml

    from atso_med.atso import ExperimentRunner
    from atso_med.atso.layout import JOURNAL_FILE
    from atso_med.data import PhantomConfig, write_phantom_dataset
    from atso_med.files import read_json, write_text_atomic

    out = Path(args.out).resolve()
    start = time.perf_counter()
    record = Path(args.record) if args.record else None
    baselines = Path(args.baselines) if args.baselines else None
    if baselines is not None:
        check_baselines(setting(args), baselines, args.seeds)  # before any training
        if record is not None:
            link_baselines(record, baselines)
    labels = "organs" if args.classes else "pancreas"
    phantom = PhantomConfig(cases=args.cases, seed=args.phantom_seed, shape=tuple(args.shape), labels=labels)
    if args.transfer:
        target = replace(phantom, cases=args.target_cases or args.cases, domain="shifted")
        data = {
            "source": write_phantom_dataset(out / "source", phantom),
            "target": write_phantom_dataset(out / "target", target),
        }
    else:
        data = {"dataset": write_phantom_dataset(out / "data", phantom)}
    reports = {}
    for seed in args.seeds:
        folder = out / f"seed{seed}"
        if record is not None and (report := recorded(record, seed, args)) is not None:
            reports[seed] = with_lazy_learning(report, folder / "experiment")
            if reports[seed] is not report:  # measured now from the seed's folder: keep it in the record
                entry = read_json(record / f"seed{seed}.json", "benchmark record")
                write_text_atomic(
                    json.dumps({**entry, "report": reports[seed]}, indent=1) + "\n", entry_path(record, seed)
                )
            print(f"seed {seed}: recorded in {entry_path(record, seed)}", flush=True)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "experiment.yaml"
        write_text_atomic(
            yaml.safe_dump(experiment(args, data, seed, folder / "experiment"), sort_keys=False), config_file
        )
        begin = time.perf_counter()
        resume = (folder / "experiment" / JOURNAL_FILE).is_file()
        runner = ExperimentRunner(config_file, resume=resume, progress=sys.stderr.isatty())
        reports[seed] = runner.run()
        if record is not None:
            entry = {"setting": setting(args), "seconds": round(time.perf_counter() - begin), "report": reports[seed]}
            write_text_atomic(json.dumps(entry, indent=1) + "\n", entry_path(record, seed))
        print(
            f"seed {seed}: {time.perf_counter() - begin:.0f} s -> {runner.layout.reports_dir / 'report.md'}", flush=True
        )
    if baselines is not None:
        reports = with_baselines(reports, setting(args), baselines)
    summary, table = summarise(reports, args.generations)
    summary["settings"] = vars(args)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_text_atomic(json.dumps(summary, indent=2) + "\n", out / "summary.json")
    write_text_atomic(table, out / "summary.md")
    print(table)
    print(f"{len(args.seeds)} seeds in {summary['seconds']:.0f} s; {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
