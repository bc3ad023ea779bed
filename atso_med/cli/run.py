"""``atso-med run``: run (or resume) an ATSO experiment described by a YAML file."""

from __future__ import annotations

import argparse

from atso_med.cli.arguments import existing_file, integer


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``run`` on the top-level subparsers.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The subcommand's parser.
    """
    parser = subparsers.add_parser(
        "run",
        help="run an experiment: supervised, fully supervised, self-learning, STSO and ATSO, with reports",
        description=(
            "Run the experiment of --config (see examples/experiment.yaml): M0 on the labeled cases, then "
            "generations of pseudo labels and retraining for self-learning, STSO and ATSO, every training being "
            "the RSTN bundle's train workflow and every pseudo-labelling the whole-volume predictor. Each finished "
            "step is journaled in OUTPUT_DIR/state.json: after a kill, run the same command with --resume to "
            "continue from the last finished step. Reports: OUTPUT_DIR/reports/."
        ),
    )
    parser.add_argument("--config", type=existing_file, required=True, metavar="YAML", help="experiment file")
    parser.add_argument("--resume", action="store_true", help="continue the experiment in its output_dir")
    parser.add_argument("--output-dir", metavar="DIR", default=None, help="override output_dir of the file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        default=None,
        help="log the finished experiment to MLflow (sqlite:///mlflow.db, http://host:5000): a parent run, a child run "
        "per training and per evaluation; replaces the file's tracking section (needs the 'tracking' extra)",
    )
    parser.add_argument(
        "--stop-after",
        type=integer(1),
        metavar="N",
        default=None,
        help="debugging: exit abruptly (as a kill would) after N finished steps; then resume with --resume",
    )
    return parser


def print_summary(report: dict, experiment_dir, stream) -> None:
    """Print the report's tables and where the files are."""
    from pathlib import Path

    experiment_dir = Path(experiment_dir)
    print((experiment_dir / "reports" / "report.md").read_text(), file=stream)
    print("Files:", file=stream)
    for what, where in (
        ("reports", "reports/ (report.md, report.json, report.csv, progress.png, overlays/)"),
        ("models", "models/<strategy>/gen<t>/<all|fold<k>>/plane_<P>/model.pt"),
        ("pseudo labels", "pseudo_labels/<strategy>/gen<t>/fold<k>/<case>.nii.gz"),
        ("predictions", "predictions/<strategy>/gen<t>/<model>/<test|fold<k>>/<case>.nii.gz"),
        ("journal", "state.json (resume with --resume), log.txt (every stage's bundle command)"),
    ):
        print(f"  {what:14s} {experiment_dir / where}", file=stream)


def run(args: argparse.Namespace) -> int:
    """Run the experiment and print its report.

    Args:
        args: parsed arguments of :func:`add_parser`.

    Returns:
        0 on success.

    Raises:
        ConfigError: a bad configuration or an experiment folder that cannot be (re)used.
    """
    import sys

    from atso_med.atso import ATSOTrainer
    from atso_med.atso.config import ExperimentConfig
    from atso_med.atso.tracking import MLflowSettings, require_mlflow
    from atso_med.errors import ConfigError

    config = ExperimentConfig.load(args.config)
    if args.tracking_uri is not None:
        if not args.tracking_uri.strip():
            raise ConfigError("--tracking-uri: expected a tracking URI such as sqlite:///mlflow.db")
        require_mlflow("--tracking-uri")
        config.tracking = MLflowSettings(tracking_uri=args.tracking_uri)
    trainer = ATSOTrainer(
        config,
        resume=args.resume,
        stop_after=args.stop_after,
        progress=not args.no_progress,
        output_dir=args.output_dir,
    )
    report = trainer.run()
    print_summary(report, trainer.dir, sys.stdout)
    return 0
