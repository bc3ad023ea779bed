"""Yes/no flags and counts that may arrive as text (``python -m monai.bundle run --amp false``)."""

from __future__ import annotations

from numbers import Integral

from atso_med.errors import ConfigError

__all__ = ["as_bool", "as_count"]

_TRUE = {"1", "true", "yes", "on"}


_FALSE = {"0", "false", "no", "off", "none", ""}


def as_bool(value: object) -> bool:
    """Read a flag that may arrive from the command line as a string.

    ``python -m monai.bundle run --amp false`` passes the string ``"false"``, which Python finds
    true; this function reads it as the user meant.

    Raises:
        ConfigError: for a string that is not a recognised yes/no word.
    """
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ConfigError(f"expected a true/false flag, got {value!r}")
    return bool(value)


def as_count(value: object, what: str) -> int:
    """Read a count of at least 1 (a number of classes) that may arrive as text.

    Args:
        value: an integer, or its decimal text.
        what: the setting's name, for the message.

    Raises:
        ConfigError: for anything but a whole number >= 1 (booleans and fractions included).
    """
    text = value.strip() if isinstance(value, str) else None
    if text is not None and text.isdigit():
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)
