"""Argument types for the subcommands: a bad value is an argparse error (usage, message, exit 2), never a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "CLASSES_HELP",
    "class_selection_spec",
    "existing_file",
    "existing_folder",
    "existing_path",
    "integer",
    "number",
    "probability",
]

#: Help of every ``--classes`` option.
CLASSES_HELP = (
    "classes to segment, by the names of dataset.json's labels: one name (pancreas), several "
    "(liver spleen pancreas), or merged groups (kidneys=kidney_left+kidney_right)"
)


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An integer within ``[minimum, maximum]`` (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def number(positive: bool = False) -> Callable[[str], float]:
    """A finite float, optionally strictly positive."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = number()(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def existing_path(text: str) -> str:
    """A file or folder that exists."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return text


def existing_file(text: str) -> str:
    """A file (not a folder) that exists."""
    path = Path(existing_path(text))
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file")
    return text


def existing_folder(text: str) -> str:
    """A folder that exists."""
    path = Path(existing_path(text))
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a folder")
    return text


def class_selection_spec(tokens: Sequence[str] | None) -> str | list[str] | dict[str, list[str]] | None:
    """The class selection of ``--classes`` tokens (``name`` or ``group=a+b``), as a YAML file would write it.

    Returns:
        ``None`` without tokens; one name; a list of names; or, when any token is a group, a
        mapping of output name -> dataset class names.
    """
    if not tokens:
        return None
    if not any("=" in token for token in tokens):
        return tokens[0] if len(tokens) == 1 else list(tokens)
    groups: dict[str, list[str]] = {}
    for token in tokens:
        name, _, members = token.partition("=")
        groups[name] = (members or name).split("+")
    return groups
