"""The field checkers of an experiment's YAML file: each reads one value and names the key it refuses.

Every checker takes the value as YAML parsed it and ``where``, the dotted key named in its error
(``experiment.yaml.training.iterations``), and returns the value in its checked form or raises
:class:`~atso_med.errors.ConfigError`. :mod:`atso_med.atso.config` builds the settings from them.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atso_med.data.slices import PLANES
from atso_med.errors import ConfigError

__all__ = [
    "check_keys",
    "config_error",
    "read_amount",
    "read_bool",
    "read_choice",
    "read_classes",
    "read_devices",
    "read_float",
    "read_foreground",
    "read_hu_window",
    "read_int",
    "read_path",
    "read_planes",
    "section",
]


def config_error(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def section(data: Any, allowed: tuple[str, ...], where: str) -> Mapping:
    """A section of the configuration: a mapping (empty when absent) with no key outside ``allowed``."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise config_error(where, "expected a mapping")
    check_keys(data, allowed, where)
    return data


def check_keys(data: Mapping, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise config_error(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def read_int(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(where, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise config_error(where, f"must be >= {minimum}, got {value}")
    return value


def read_float(value: Any, where: str, minimum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, str):
        # YAML 1.1 reads 1e-5 (no dot) as text; accept what is plainly a number.
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise config_error(where, f"expected a finite number, got {value!r}")
    value = float(value)
    if positive and value <= 0:
        raise config_error(where, f"must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise config_error(where, f"must be >= {minimum}, got {value}")
    return value


def read_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise config_error(where, f"expected true or false, got {value!r}")
    return value


def read_choice(value: Any, choices: tuple[str, ...], where: str) -> Any:
    """One of ``choices``, as given."""
    if value not in choices:
        raise config_error(where, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def read_amount(value: Any, where: str) -> int | float:
    """A count (int) or a fraction (float in [0, 1]), as splits take them."""
    from atso_med.data.split_protocols import parse_amount
    from atso_med.errors import SplitError

    try:
        return parse_amount(value, where)
    except SplitError as error:
        raise ConfigError(str(error)) from None


def read_path(value: Any, where: str, base: Path) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise config_error(where, f"expected a path, got {value!r}")
    path = Path(os.path.expandvars(str(value))).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def read_classes(value: Any, where: str) -> str | list[str] | dict[str, Any]:
    from atso_med.data.class_selection import check_class_spec

    try:
        return check_class_spec(value)
    except ConfigError as error:
        raise config_error(where, str(error)) from None


def read_foreground(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise config_error(where, f"expected a list of label values, got {value!r}")
    values = [read_int(v, where, 1) for v in value]
    return values


def read_planes(value: Any, where: str) -> list[str]:
    if isinstance(value, str):  # "XYZ", "Z" or "X, Y"
        value = [c for c in value if c not in ", "]
    if not isinstance(value, (list, tuple)) or not value:
        raise config_error(where, "expected a list of planes among X, Y, Z")
    planes = []
    for plane in value:
        if not isinstance(plane, str) or plane.upper() not in PLANES:
            raise config_error(where, f"unknown plane {plane!r}; expected X, Y or Z")
        if plane.upper() in planes:
            raise config_error(where, f"plane {plane.upper()} is listed twice")
        planes.append(plane.upper())
    return [p for p in PLANES if p in planes]


def read_devices(value: Any, where: str) -> list[str]:
    from atso_med.devices import available_device

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise config_error(where, "expected a list of devices such as [auto], [cpu] or [cuda:0, cuda:1]")
    devices = []
    for device in value:
        text = str(device).strip().lower()
        if text == "auto":
            devices.append(text)
            continue
        try:
            devices.append(str(available_device(text)))
        except ConfigError as error:
            raise config_error(where, str(error)) from None
    if "auto" in devices and len(devices) > 1:
        raise config_error(where, "'auto' cannot be combined with other devices")
    return devices


def read_hu_window(value: Any, where: str) -> list[float]:
    """An HU window: two finite numbers, the lower first.

    Args:
        value: ``[low, high]`` as YAML gives it.
        where: the key named in errors.

    Returns:
        ``[low, high]`` as floats.

    Raises:
        ConfigError: not two finite numbers, or ``low >= high``.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise config_error(where, f"expected two numbers [low, high] in HU, got {value!r}")
    low, high = (read_float(v, where) for v in value)
    if low >= high:
        raise config_error(where, f"the lower bound must be below the upper one, got [{low}, {high}]")
    return [low, high]
