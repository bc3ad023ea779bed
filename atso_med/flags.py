"""Yes/no flags that may arrive as text (``python -m monai.bundle run --amp false``)."""

from __future__ import annotations

from atso_med.errors import ConfigError

__all__ = ["as_bool"]

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
