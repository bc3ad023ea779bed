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
        "--ray-address",
        metavar="ADDRESS",
        default=None,
        help="run the trainings on a Ray cluster: 'auto' (the cluster this machine joined with `ray start`), "
        "ray://HOST:10001, or 'local' (start a Ray on this machine); replaces the address of the file's "
        "distributed section, keeping its resources per training (needs the 'distributed' extra)",
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
    from atso_med.atso.layout import ExperimentLayout, folder_patterns

    layout = ExperimentLayout(experiment_dir)
    print(layout.report_markdown.read_text(), file=stream)
    print("Files:", file=stream)
    for what, where in folder_patterns().items():
        print(f"  {what:14s} {layout.root / where}", file=stream)


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
    from dataclasses import replace

    from atso_med.atso import ExperimentRunner, RaySettings
    from atso_med.atso.config import ExperimentConfig, MLflowSettings, require_mlflow
    from atso_med.atso.distributed import require_ray
    from atso_med.errors import ConfigError

    config = ExperimentConfig.load(args.config)
    if args.tracking_uri is not None:
        if not args.tracking_uri.strip():
            raise ConfigError("--tracking-uri: expected a tracking URI such as sqlite:///mlflow.db")
        require_mlflow("--tracking-uri")
        config.tracking = MLflowSettings(tracking_uri=args.tracking_uri)
    if args.ray_address is not None:
        if not args.ray_address.strip():
            raise ConfigError("--ray-address: expected auto, ray://HOST:10001 or local")
        require_ray("--ray-address")
        address = None if args.ray_address == "local" else args.ray_address
        settings = config.distributed or RaySettings()
        # a cluster has its own resources: num_cpus sizes a local Ray only
        config.distributed = replace(settings, address=address, num_cpus=settings.num_cpus if address is None else None)
    runner = ExperimentRunner(
        config,
        resume=args.resume,
        stop_after=args.stop_after,
        progress=not args.no_progress,
        output_dir=args.output_dir,
    )
    report = runner.run()
    print_summary(report, runner.dir, sys.stdout)
    return 0
