"""ATSO against its baselines on the phantom: test DSC per strategy and generation over several seeds.

Setting: one phantom data set; for every seed a new random split (about 10% of the training pool
labeled, 25% of the cases test, the rest in K reference folds), new initial weights and data
order. Each seed is a complete experiment (``ATSOTrainer``) in ``OUT/seed<k>/``, resumable: run
the same command again after an interruption. Printed and written to ``OUT/summary.{json,md}``:

* mean +- std over seeds of the test DSC (``@E``) and of the reference pseudo-label DSC (``@R``)
  per strategy and generation, and of each strategy's final model;
* the share of the supervised -> fully supervised gap each strategy closes,
  ``(final - supervised) / (fully_supervised - supervised)``, per seed and its mean +- std.

Examples::

    python benchmarks/bench_atso.py --out runs/bench_atso                      # the default grid
    python benchmarks/bench_atso.py --quick --out runs/bench_quick             # CPU smoke (minutes)
    python benchmarks/bench_atso.py --seeds 0 1 2 3 4 --generations 3 --iterations 2000 --devices cuda:0 cuda:1

The default grid is meant for a GPU; ``--quick`` is CPU-sized and its numbers only show that the
pipeline runs (the tiny RSTN barely learns in a few hundred iterations). With one generation, as in
``--quick``, ATSO's final model is STSO's generation 1 by construction (Algorithm 1, line 8: the final
model trains on the pseudo labels generation T trained on, which for T = 1 are M0's), so only
``--generations 2`` or more can separate them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

QUICK = {
    "cases": 10,
    "shape": [48, 48, 24],
    "generations": 1,
    "planes": ["Z"],
    "iterations": 150,
    "batch_size": 4,
    "rounds": 1,
    "seeds": [0, 1, 2],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench_atso", help="benchmark folder (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="experiment seeds (>= 3 for a spread)")
    parser.add_argument("--cases", type=int, default=40, help="phantom cases (default: %(default)s)")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 32], help="phantom shape (default: %(default)s)")
    parser.add_argument("--phantom-seed", type=int, default=0, help="seed of the phantom data set")
    parser.add_argument("--labeled", default="0.1", help="labeled cases: count or fraction of the training pool")
    parser.add_argument("--test", default="0.25", help="test cases: count or fraction")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=["supervised", "fully_supervised", "self_learning", "stso", "atso"])
    parser.add_argument("--planes", default="XYZ", help="planes, e.g. XYZ or Z")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    # Adam at 1e-3 let the coarse FCN collapse to an all-background output in several phantom runs;
    # 3e-4 did not (see the module docstring of atso_med.cli.demo).
    parser.add_argument("--lr", type=float, default=3e-4, help="learning rate of both FCNs")
    parser.add_argument("--rounds", type=int, default=3, help="coarse-to-fine inference rounds")
    parser.add_argument("--devices", nargs="+", default=["auto"])
    parser.add_argument("--quick", action="store_true", help="CPU smoke setting: " + json.dumps(QUICK))
    args = parser.parse_args(argv)
    if args.quick:
        args.cases, args.shape, args.generations = QUICK["cases"], QUICK["shape"], QUICK["generations"]
        args.planes, args.iterations, args.batch_size = "".join(QUICK["planes"]), QUICK["iterations"], QUICK["batch_size"]
        args.rounds, args.seeds = QUICK["rounds"], QUICK["seeds"]
    return args


def amount(text: str) -> int | float:
    return int(text) if text.strip().isdigit() else float(text)


def experiment(args: argparse.Namespace, dataset: Path, seed: int, out: Path) -> dict:
    return {
        "output_dir": str(out),
        "dataset": str(dataset),
        "split": {"labeled": amount(args.labeled), "test": amount(args.test)},
        "strategies": list(args.strategies),
        "generations": args.generations,
        "folds": args.folds,
        "planes": list(args.planes),
        "seed": seed,
        "devices": list(args.devices),
        "training": {
            "preset": args.preset,
            "iterations": args.iterations,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr_coarse": args.lr,
            "lr_fine": args.lr,
            "weight_decay": 0.0 if args.optimizer == "adam" else 5e-4,
            "num_workers": 0,
        },
        "inference": {"rounds": args.rounds},
        "report": {"overlay_cases": 1},
    }


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0), len(values)


def fmt(values: list[float | None], scale: float = 100.0) -> str:
    mean, std, n = mean_std(values)
    return "—" if mean is None else f"{scale * mean:.2f} ± {scale * std:.2f}"


def dsc(result: dict | None) -> float | None:
    return None if not result else float(result["mean_dsc"])


def gap_closed(report: dict, strategy: str) -> float | None:
    """(final - supervised) / (fully supervised - supervised) on the test set of one seed.

    ``None`` when there is no gap to close (the upper bound not at least 0.5 DSC points above M0).
    """
    supervised = dsc(report["strategies"]["supervised"]["final"]["test"])
    fully = dsc(report["strategies"].get("fully_supervised", {}).get("final", {}).get("test"))
    final = dsc(report["strategies"][strategy]["final"]["test"])
    if strategy in ("supervised", "fully_supervised") or None in (supervised, fully, final) or fully - supervised < 0.005:
        return None
    return (final - supervised) / (fully - supervised)


def summarise(reports: dict[int, dict], generations: int) -> tuple[dict, str]:
    """Mean +- std over seeds per strategy and generation, and the gap each strategy closes."""
    strategies = [s for s in ("supervised", "fully_supervised", "self_learning", "stso", "atso") if all(s in r["strategies"] for r in reports.values())]
    summary: dict = {"seeds": sorted(reports), "strategies": {}}
    lines = [f"Seeds: {', '.join(map(str, sorted(reports)))}; DSC % (mean ± std over seeds of the per-case mean DSC)", ""]
    semi = [s for s in ("self_learning", "stso", "atso") if s in strategies]
    lines += ["| Generation | " + " | ".join(f"{s} @R | {s} @E" for s in semi) + " |", "|" + "---|" * (1 + 2 * len(semi))]
    for t in range(generations + 1):
        cells = []
        for s in semi:
            reference = [dsc(r["strategies"][s]["generations"][str(t)]["reference"]) for r in reports.values()]
            test = [dsc(r["strategies"][s]["generations"][str(t)]["test"]) for r in reports.values()]
            summary["strategies"].setdefault(s, {}).setdefault("generations", {})[str(t)] = {
                "reference": mean_std(reference)[:2],
                "test": mean_std(test)[:2],
            }
            cells += [fmt(reference), fmt(test)]
        lines.append(f"| G{t} | " + " | ".join(cells) + " |")
    lines += ["", "| Strategy | final @E | gap closed (seeds with a gap: mean ± std) |", "|---|---|---|"]
    for s in strategies:
        finals = [dsc(r["strategies"][s]["final"]["test"]) for r in reports.values()]
        gaps = [gap_closed(r, s) for r in reports.values()]
        summary["strategies"].setdefault(s, {})["final_test"] = mean_std(finals)[:2]
        summary["strategies"][s]["gap_closed"] = mean_std(gaps)[:2]
        summary["strategies"][s]["gap_closed_per_seed"] = gaps
        gap_text = f"{fmt(gaps)} (n={mean_std(gaps)[2]} of {len(gaps)})" if s in semi else "—"
        lines.append(f"| {s} | {fmt(finals)} | {gap_text} |")
    return summary, "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import yaml

    from atso_med.atso import ATSOTrainer
    from atso_med.atso.trainer import JOURNAL_FILE
    from atso_med.data import PhantomConfig, write_phantom_dataset
    from atso_med.data.nifti import write_text_atomic

    out = Path(args.out).resolve()
    start = time.perf_counter()
    dataset = write_phantom_dataset(out / "data", PhantomConfig(cases=args.cases, seed=args.phantom_seed, shape=tuple(args.shape)))
    reports = {}
    for seed in args.seeds:
        folder = out / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "experiment.yaml"
        write_text_atomic(yaml.safe_dump(experiment(args, dataset, seed, folder / "experiment"), sort_keys=False), config_file)
        begin = time.perf_counter()
        resume = (folder / "experiment" / JOURNAL_FILE).is_file()
        trainer = ATSOTrainer(config_file, resume=resume, progress=sys.stderr.isatty())
        reports[seed] = trainer.run()
        print(f"seed {seed}: {time.perf_counter() - begin:.0f} s -> {trainer.dir / 'reports' / 'report.md'}", flush=True)
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
