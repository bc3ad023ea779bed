"""Optional dependencies (setup.cfg extras): refused with the install command before any work."""

from __future__ import annotations

import importlib.util

from atso_med.errors import ConfigError

__all__ = ["require_extra"]


def require_extra(module: str, name: str, extra: str, what: str) -> None:
    """Refuses before any work when an optional dependency is not installed.

    Args:
        module: the module to find (``mlflow``, ``ray``).
        name: how the message names it (``MLflow``, ``Ray``).
        extra: the setup.cfg extra that installs it.
        what: the option that needs it, named in the message.

    Raises:
        ConfigError: ``module`` cannot be imported.
    """
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f'{what} needs {name}: pip install -c constraints.txt -e ".[{extra}]"')
