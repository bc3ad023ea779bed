"""``atso-med demo``: the whole method on the built-in phantom, sized for a CPU: data, splits, four strategies, reports."""

from __future__ import annotations

import argparse

#: The CPU demo's setting, measured to finish within 15 minutes on 2 CPU cores: 545 s on this
#: project's 2-core machine (21 trainings of ~20 s, 17 predictions of ~5 s). Batch 2, not 4: a
#: training step of the tiny RSTN at 48x48 costs 0.17 s at batch 2 and 0.34 s at batch 4, and at
#: batch 4 the demo took ~19 minutes. Adam at 3e-4, not 1e-3: at 1e-3 the coarse FCN collapsed to
#: an all-background output in several phantom runs. Keys not given here take the defaults.
DEMO_PHANTOM = {"cases": 8, "seed": 3, "shape": (48, 48, 24)}
DEMO_EXPERIMENT = {
    "strategies": ["supervised", "fully_supervised", "self_learning", "stso", "atso"],
    "split": {"labeled": 2, "test": 2},
    "folds": 2,
    "generations": 1,
    "planes": ["X", "Y", "Z"],
    "seed": 0,
    "devices": ["cpu"],
    "training": {
        "preset": "tiny",
        "iterations": 100,
        "batch_size": 2,
        "optimizer": "adam",
        "lr_coarse": 0.0003,
        "lr_fine": 0.0003,
        "weight_decay": 0.0,
        "num_workers": 0,
    },
    "inference": {"rounds": 1},
    "report": {"overlay_cases": 2},
}


def demo_note() -> str:
    """What the demo is, and is not, from its current settings."""
    training = DEMO_EXPERIMENT["training"]
    shape = "x".join(str(n) for n in DEMO_PHANTOM["shape"])
    return (
        "This is a CPU demo, not the paper's setting: "
        f"{DEMO_PHANTOM['cases']} synthetic phantom cases of {shape} voxels instead of NIH Pancreas-CT, the "
        f"'{training['preset']}' RSTN instead of the full one (268.6 M parameters), {training['optimizer']} for "
        f"{training['iterations']} iterations of batch {training['batch_size']} instead of SGD for 80,000, "
        f"{DEMO_EXPERIMENT['generations']} generation(s), {DEMO_EXPERIMENT['inference']['rounds']} coarse-to-fine "
        "round(s). At this budget the networks barely begin to learn, so expect DSCs near zero: "
        "the run shows every stage of the method working end to end (models, pseudo labels, predictions, "
        "reports), not which strategy is better."
    )


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``demo`` on the top-level subparsers.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The subcommand's parser.
    """
    parser = subparsers.add_parser(
        "demo",
        help="CPU demo: phantom data, splits, supervised / self-learning / STSO / ATSO, reports",
        description=(
            "Build the synthetic phantom data set in OUT/data (if absent), split it, write OUT/experiment.yaml and "
            "run supervised, fully supervised, self-learning, STSO and ATSO with a CPU-sized preset into "
            "OUT/experiment, then print the report. Running it again resumes an interrupted demo (or just prints "
            "a finished one). A CPU-sized run: not the paper's setting, and too short for the networks to learn."
        ),
    )
    parser.add_argument("--out", default="atso_demo", metavar="DIR", help="demo folder (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def demo_experiment() -> dict:
    """The demo's experiment settings (paths relative to the demo folder, where the YAML file lies)."""
    return {"output_dir": "experiment", "dataset": "data/dataset.json", "splits": "splits.json", **DEMO_EXPERIMENT}


def run(args: argparse.Namespace) -> int:
    """Build the data, run the experiment, print the report.

    Args:
        args: parsed arguments of :func:`add_parser`.

    Returns:
        0 on success.

    Raises:
        ConfigError: OUT holds other data, or an earlier demo of another setting.
    """
    import sys
    import time
    from pathlib import Path

    import yaml

    from atso_med.atso import ATSOTrainer
    from atso_med.atso.trainer import JOURNAL_FILE
    from atso_med.cli.run import print_summary
    from atso_med.data.dataset import Dataset
    from atso_med.data.nifti import write_text_atomic
    from atso_med.data.phantom import PhantomConfig, write_phantom_dataset
    from atso_med.data.splits import Splits, make_splits
    from atso_med.errors import ConfigError

    start = time.perf_counter()
    out = Path(args.out).expanduser().resolve()
    print(demo_note() + "\n", flush=True)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; choose a folder for the demo")
    phantom = PhantomConfig(**DEMO_PHANTOM)
    print(f"phantom data set: {out / 'data'} ({phantom.cases} cases of {'x'.join(map(str, phantom.shape))} voxels)", flush=True)
    dataset = Dataset.load(write_phantom_dataset(out / "data", phantom))

    split = DEMO_EXPERIMENT["split"]
    splits = make_splits(dataset, labeled=split["labeled"], folds=DEMO_EXPERIMENT["folds"], seed=DEMO_EXPERIMENT["seed"], test=split["test"])
    splits_file = out / "splits.json"
    if splits_file.is_file() and Splits.load(splits_file).to_dict() != splits.to_dict():
        raise ConfigError(f"{splits_file} is not the demo's split (edited?); remove it or use another --out")
    splits.write(splits_file)
    print(f"splits: {len(splits.labeled)} labeled, {splits.folds} reference folds of {[len(f) for f in splits.reference]}, {len(splits.test)} test", flush=True)

    experiment_file = out / "experiment.yaml"
    settings = demo_experiment()
    text = "# atso-med demo experiment (CPU-sized; see examples/experiment.yaml for every key)\n" + yaml.safe_dump(settings, sort_keys=False)
    if experiment_file.is_file() and yaml.safe_load(experiment_file.read_text()) != yaml.safe_load(text):
        raise ConfigError(f"{experiment_file} differs from this version's demo; remove {out} or use another --out")
    write_text_atomic(text, experiment_file)
    resume = (out / "experiment" / JOURNAL_FILE).is_file()
    print(f"experiment: {experiment_file}{' (resuming)' if resume else ''}; equivalent: atso-med run --config {experiment_file}", flush=True)

    trainer = ATSOTrainer(experiment_file, resume=resume, progress=not args.no_progress)
    report = trainer.run()
    print("", flush=True)
    print_summary(report, trainer.dir, sys.stdout)
    print(f"\n{demo_note()}\ndemo finished in {time.perf_counter() - start:.0f} s; everything is in {out}")
    return 0
