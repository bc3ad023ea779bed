"""The ``atso-med`` command line: one subcommand per stage."""

from atso_med.cli.main import main

__all__ = ["main"]
