"""Entry point of ``atso-med`` and ``python -m atso_med``.

Each subcommand lives in its own module of this package, which defines
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. Modules import
their heavy dependencies inside ``run`` so that ``atso-med -h`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from atso_med.errors import AtsoMedError

#: Subcommand modules, in the order of an experiment.
COMMANDS = ("phantom", "verify", "split", "train", "predict", "evaluate", "run", "demo")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="atso-med",
        description="Semi-supervised organ segmentation in CT with ATSO (asynchronous teacher-student optimization).",
    )
    from atso_med import __version__

    parser.add_argument("--version", action="version", version=f"atso-med {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"atso_med.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand.

    Errors caused by input (:class:`~atso_med.errors.AtsoMedError`) are printed as one line on
    stderr with exit status 2; anything else is a bug and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except AtsoMedError as error:
        print(f"atso-med {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
