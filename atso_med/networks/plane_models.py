"""Trained plane models on disk: finding, checking and loading the RSTN of each plane.

A model set is the plane models X / Y / Z of one training run or fold: a folder holding
``plane_<P>/model.pt`` (what ``atso-med train --plane P`` exports), one ``model.pt``, an explicit
``{plane: file}`` mapping, or already built networks. Files are read with ``weights_only=True``.

A model file stores the classes it segments in its ``config``: ``num_classes`` (C, 1 for files
written before the setting existed) and ``class_names`` (``null`` or C names, class 1 first);
:func:`stored_classes` reads them back, and :func:`load_plane_models` builds the network of the
stored C and can refuse a file of another C.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from atso_med.devices import resolve_device
from atso_med.errors import ConfigError
from atso_med.flags import as_count
from atso_med.networks.activation import CLASS_ACTIVATIONS
from atso_med.transforms.intensity import HU_WINDOW

__all__ = [
    "MODEL_FILE",
    "StoredClasses",
    "class_names_for",
    "is_model_set",
    "load_model_sets",
    "load_plane_models",
    "network_definition",
    "plane_model_files",
    "prediction_classes",
    "stored_classes",
    "stored_preset",
    "trained_hu_window",
    "trained_long_axis_spacing",
]

logger = logging.getLogger(__name__)

#: File name of a trained plane model inside ``plane_<P>/`` (what the train bundle exports).
MODEL_FILE = "model.pt"


def _plane_key(key: Any) -> str:
    from atso_med.data.slices import PLANES, plane_axis

    try:
        return PLANES[plane_axis(str(key))]
    except ConfigError:
        raise ConfigError(f"unknown plane {key!r}; expected X, Y or Z") from None


def plane_model_files(source: str | os.PathLike | Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    """Find the model file of each plane without reading any.

    Args:
        source: a folder with ``plane_X/model.pt``, ``plane_Y/model.pt``, ``plane_Z/model.pt`` (any
            subset, at least one; lower-case ``plane_x`` works too), or a folder holding one
            ``model.pt`` (the output folder of one training run: its plane is read from the file),
            or an explicit ``{plane: file}`` mapping (a value may also be a folder holding
            ``model.pt``).

    Returns:
        ``{plane: path}`` in X, Y, Z order; the plane ``"?"`` stands for a lone ``model.pt`` whose
        plane is read by :func:`load_plane_models`.

    Raises:
        ConfigError: no plane model found, a file missing (all are named), a plane given twice
            or unknown.
    """
    from atso_med.data.slices import PLANES

    if isinstance(source, Mapping):
        if not source:
            raise ConfigError("no plane model given: pass at least one of the planes X, Y, Z")
        files: dict[str, Path] = {}
        for key, value in source.items():
            plane = _plane_key(key)
            if plane in files:
                raise ConfigError(f"plane {plane} is given more than once")
            path = Path(value)
            files[plane] = path / MODEL_FILE if path.is_dir() else path
        missing = [f"plane {p}: {f}" for p, f in files.items() if not f.is_file()]
        if missing:
            raise ConfigError("model file(s) missing:\n  " + "\n  ".join(missing))
        return {p: files[p] for p in PLANES if p in files}
    if source is None or str(source) == "":
        raise ConfigError("no model folder given (model_dir / --models)")
    folder = Path(source)
    if folder.is_file():
        return {"?": folder}
    if not folder.is_dir():
        raise ConfigError(f"model folder {folder} does not exist")
    files = {}
    for plane in PLANES:
        for name in (f"plane_{plane}", f"plane_{plane.lower()}"):
            if (folder / name / MODEL_FILE).is_file():
                files[plane] = folder / name / MODEL_FILE
                break
    if not files and (folder / MODEL_FILE).is_file():
        return {"?": folder / MODEL_FILE}
    if not files:
        raise ConfigError(
            f"{folder} holds no plane model: expected plane_X/{MODEL_FILE}, plane_Y/{MODEL_FILE} and/or "
            f"plane_Z/{MODEL_FILE} (the model.pt of 'atso-med train --plane P')"
        )
    return files


def _model_set_items(models: Any) -> list:
    """The model sets of a models argument: one set (a folder, a file, a mapping) or a sequence of them."""
    return [models] if isinstance(models, (str, os.PathLike, Mapping)) or models is None else list(models)


def _stored_configs(models: Any) -> Iterator[tuple[Path, Mapping]]:
    """``(file, config)`` of every model file of the sets (networks given as objects have none).

    Only the small ``config`` is read (memory-mapped), not the weights.

    Raises:
        ConfigError: no model found, or a file that cannot be read.
    """
    for item in _model_set_items(models):
        if is_model_set(item):
            continue
        for path in plane_model_files(item).values():
            try:
                content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as error:  # noqa: BLE001 - torch raises several types for corrupt files
                raise ConfigError(f"model file {path} cannot be read: {error}") from None
            config = content.get("config") if isinstance(content, Mapping) else None
            yield path, config if isinstance(config, Mapping) else {}


class StoredClasses(NamedTuple):
    """The classes a model file segments.

    Attributes:
        num_classes: C.
        class_names: C names, class 1 first (``class_1``, ... where the file stores none).
    """

    num_classes: int
    class_names: tuple[str, ...]


def class_names_for(num_classes: object, names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The names of a training's classes: the given ones, checked, or ``class_1`` ... ``class_C``.

    Args:
        num_classes: C.
        names: C distinct non-empty names, class 1 first; ``None`` for the defaults.

    Raises:
        ConfigError: C is not an integer >= 1, or ``names`` are not C distinct non-empty strings.
    """
    count = as_count(num_classes, "num_classes")
    if names is None:
        return tuple(f"class_{c}" for c in range(1, count + 1))
    if (
        isinstance(names, str)
        or not isinstance(names, Sequence)
        or len(names) != count
        or not all(isinstance(n, str) and n.strip() for n in names)
        or len(set(names)) != count
    ):
        raise ConfigError(f"class_names must be {count} distinct non-empty names (one per class), got {names!r}")
    return tuple(names)


def _classes_of(config: Mapping, source: str) -> StoredClasses:
    """The classes a model file's ``config`` stores (1 unnamed class for files without them)."""
    try:
        count = as_count(config.get("num_classes", 1), "num_classes")
        return StoredClasses(count, class_names_for(count, config.get("class_names")))
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def stored_classes(source: str | os.PathLike | Mapping[str, str | os.PathLike]) -> StoredClasses:
    """The classes that a model file, or the plane models of a model set, segment.

    Only the files' small ``config`` is read (memory-mapped), not their weights.

    Args:
        source: a ``model.pt``, or a model set as :func:`plane_model_files` finds it.

    Returns:
        C and the class names (see :class:`StoredClasses`).

    Raises:
        ConfigError: no model found, a file that cannot be read, a malformed stored C or names, or
            plane models that segment different classes.
    """
    found: dict[StoredClasses, str] = {}
    for path, config in _stored_configs(source):
        found.setdefault(_classes_of(config, str(path)), str(path))
    if not found:
        raise ConfigError("stored_classes reads model files; networks given as objects carry no stored classes")
    if len(found) > 1:
        listed = "; ".join(f"{c.num_classes} {list(c.class_names)} in {path}" for c, path in found.items())
        raise ConfigError(f"the plane models segment different classes ({listed}): they cannot predict together")
    return next(iter(found))


def load_plane_models(
    source: str | os.PathLike | Mapping[str, str | os.PathLike],
    device: str | torch.device | None = "cpu",
    preset: str | None = None,
    num_classes: int | None = None,
) -> dict[str, torch.nn.Module]:
    """Load the trained RSTN of each plane, checked against the network its file declares.

    Each file is read with ``weights_only=True`` (a model file never runs code). The network is
    built from the preset and the number of classes stored in the file's ``"config"`` and the
    weights are checked against it before loading, so a file of another width is refused with the
    first differing weight named.

    Args:
        source: see :func:`plane_model_files`.
        device: where the networks go.
        preset: network preset for files that do not store one (older exports); a stored preset
            always wins.
        num_classes: the number of classes the caller expects; a file of another is refused.
            ``None`` takes each file's.

    Returns:
        ``{plane: RSTN}`` in eval mode, in X, Y, Z order.

    Raises:
        ConfigError: missing or unloadable file; no weights or no preset in a file; a file whose
            stored plane differs from the plane it is given for; a file of other classes than
            ``num_classes``; weights that do not fit the preset's network.
    """
    from atso_med.networks.presets import build_rstn
    from atso_med.networks.weight_files import check_state_matches, load_checkpoint

    files = plane_model_files(source)
    device = resolve_device(device)
    models: dict[str, torch.nn.Module] = {}
    for key, path in files.items():
        content = load_checkpoint(path)
        if not isinstance(content, Mapping) or not isinstance(content.get("network"), Mapping):
            raise ConfigError(
                f"{path} is not a plane model: it has no 'network' weights (expected the model.pt of a training run)"
            )
        config = content.get("config") if isinstance(content.get("config"), Mapping) else {}
        stored_plane = config.get("plane")
        plane = key
        if stored_plane not in (None, ""):
            stored = _plane_key(stored_plane)
            if key == "?":
                plane = stored
            elif stored != key:
                raise ConfigError(f"{path} holds the model of plane {stored} but is given for plane {key}")
        elif key == "?":
            raise ConfigError(f"{path} does not say which plane it was trained on: give it as PLANE=PATH")
        if plane in models:
            raise ConfigError(f"plane {plane} is given more than once")
        chosen = config.get("preset") or preset
        if not chosen:
            raise ConfigError(f"{path} does not say which network preset it holds (config.preset); pass the preset")
        classes = _classes_of(config, str(path))
        if num_classes is not None and classes.num_classes != as_count(num_classes, "num_classes"):
            raise ConfigError(
                f"{path} segments {classes.num_classes} class(es) ({', '.join(classes.class_names)}), "
                f"not the {num_classes} expected"
            )
        activation = config.get("class_activation", "sigmoid")  # files from before the softmax head: sigmoid
        if activation not in CLASS_ACTIVATIONS:
            raise ConfigError(f"{path} stores an unknown class_activation {activation!r}")
        # Built on the meta device and given the file's tensors: no random initialisation, and a
        # full-size network is never held twice.
        with torch.device("meta"):
            network = build_rstn(str(chosen), num_classes=classes.num_classes, class_activation=activation)
        check_state_matches(content["network"], network, str(path))
        network.load_state_dict(content["network"], assign=True)
        models[plane] = network.eval().to(device)
        logger.info("loaded plane %s model %s (preset %s)", plane, path, chosen)
    from atso_med.data.slices import PLANES

    return {p: models[p] for p in PLANES if p in models}


def is_model_set(value: Any) -> bool:
    """Whether ``value`` is a set of built networks ``{plane: RSTN}`` (not files to load)."""
    return isinstance(value, Mapping) and bool(value) and all(isinstance(m, torch.nn.Module) for m in value.values())


def load_model_sets(
    models: Any, device: str | torch.device | None = "cpu", preset: str | None = None
) -> list[dict[str, torch.nn.Module]]:
    """Normalise the model argument of the prediction functions to a list of model sets.

    Args:
        models: one set or a list of sets; a set is ``{plane: RSTN}``, ``{plane: file}`` or a
            folder (see :func:`plane_model_files`).
        device: where loaded networks go (sets given as networks are moved by the inferer).
        preset: fallback preset for files that do not store one.

    Returns:
        ``[{plane: RSTN}, ...]``, at least one set.

    Raises:
        ConfigError: as :func:`load_plane_models`; an empty list.
    """
    items = _model_set_items(models)
    if not items:
        raise ConfigError("no model set given")
    # Every file of every set is located before any is loaded: a typo fails at once.
    for item in items:
        if not is_model_set(item):
            plane_model_files(item)
    sets = []
    for item in items:
        if is_model_set(item):
            sets.append({_plane_key(k): m for k, m in item.items()})
        else:
            sets.append(load_plane_models(item, device=device, preset=preset))
    return sets


def prediction_classes(models: Any) -> dict[int, str]:
    """The classes that one or several model sets predict: ``{0: "background", 1: name, ...}``.

    Files give their stored names (:func:`stored_classes`); built networks give ``class_c``.

    Args:
        models: what :func:`load_model_sets` accepts.

    Raises:
        ConfigError: as :func:`stored_classes`; sets that segment different classes.
    """
    items = _model_set_items(models)
    found = set()
    for item in items:
        if is_model_set(item):
            counts = {int(getattr(network, "num_classes", 1)) for network in item.values()}
            if len(counts) > 1:
                raise ConfigError(f"the plane models segment different numbers of classes: {sorted(counts)}")
            count = counts.pop()
            found.add(StoredClasses(count, class_names_for(count)))
        else:
            found.add(stored_classes(item))
    if len(found) > 1:
        raise ConfigError(f"the model sets segment different classes: {sorted(found)}")
    return {0: "background", **dict(enumerate(found.pop().class_names, start=1))}


def network_definition(preset: str = "full", num_classes: int = 1) -> torch.nn.Module:
    """The bundle's ``network_def``: the preset's RSTN built on the meta device (no memory, no weights).

    The bundle loads one trained network per plane from ``model_dir``; this definition only
    describes the architecture for tools that inspect a bundle.
    """
    from atso_med.networks.presets import build_rstn

    with torch.device("meta"):
        return build_rstn(str(preset), num_classes=num_classes)


def stored_preset(model_dir: Any, default: str = "full") -> str:
    """Preset stored in the first model file found in ``model_dir`` (``default`` when none can be read)."""
    try:
        files = plane_model_files(model_dir if not isinstance(model_dir, (list, tuple)) else model_dir[0])
        # mmap: only the small config is needed, not a full-size network's gigabyte of weights.
        content = torch.load(next(iter(files.values())), map_location="cpu", weights_only=True, mmap=True)
        config = content.get("config") or {}
        return str(config.get("preset") or default)
    except Exception:  # noqa: BLE001 - the real loading reports the problem with its own message
        return default


def _stored_setting(models: Any, key: str) -> dict[Any, str]:
    """Each distinct value of a training setting the model files store (``config[key]``) -> one file holding it.

    Files without the key (older versions) and networks given as objects store nothing.
    """
    stored: dict[Any, str] = {}
    for path, config in _stored_configs(models):
        if key in config:
            value = config[key]
            stored.setdefault(tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else value, str(path))
    return stored


def trained_hu_window(models: Any, requested: Sequence[float] | None = None) -> tuple[float, float]:
    """The HU window the plane models were trained with: the only window they can be used with.

    Every training stores its window in its model file (``config.hu_window``). A prediction that
    windows its CT otherwise feeds the network intensities it never saw, a silent wrong answer;
    so the window is read from the files, and a window asked for is only checked against them.

    Args:
        models: as :func:`load_model_sets` takes them (sets of built networks store no window).
        requested: the window the caller asks for; ``None`` takes the models'.

    Returns:
        ``(low, high)``: the models' window; the requested one, or :data:`HU_WINDOW`, where no
        file stores one (networks given as objects, files of older versions).

    Raises:
        ConfigError: model files trained with different windows; a requested window that differs
            from the models'.
    """
    stored = {window: path for window, path in _stored_setting(models, "hu_window").items() if window is not None}
    if len(stored) > 1:
        found = "; ".join(f"{list(window)} in {path}" for window, path in stored.items())
        raise ConfigError(f"the models were trained with different HU windows ({found}): they cannot predict together")
    asked = None if requested is None else (float(requested[0]), float(requested[1]))
    if stored:
        window, path = next(iter(stored.items()))
        if asked is not None and asked != window:
            raise ConfigError(
                f"hu_window {list(asked)} differs from the window the models were trained with, {list(window)} "
                f"({path}): leave hu_window unset to use the models' window"
            )
        return window
    return asked if asked is not None else HU_WINDOW


def trained_long_axis_spacing(models: Any, requested: float | None = None) -> float | None:
    """The long-axis slice spacing (mm) the plane models were trained at: the only one to predict at.

    A training resampled to a slice spacing stores it (``config.long_axis_spacing``, ``None`` when
    it did not resample); a prediction at another spacing shows the networks organs of a thickness
    they never saw. So the spacing is read from the files, and one asked for is only checked.

    Args:
        models: as :func:`load_model_sets` takes them.
        requested: the spacing the caller asks for; ``None`` takes the models'.

    Returns:
        The models' spacing (``None``: no resampling); the requested one where no file stores one.

    Raises:
        ConfigError: model files trained at different spacings; a requested spacing other than theirs.
    """
    from atso_med.transforms.preprocessing import optional_spacing_mm

    stored = {optional_spacing_mm(v): path for v, path in _stored_setting(models, "long_axis_spacing").items()}
    if len(stored) > 1:
        found = "; ".join(f"{spacing} in {path}" for spacing, path in stored.items())
        raise ConfigError(
            f"the models were trained at different long-axis spacings ({found}): they cannot predict together"
        )
    asked = optional_spacing_mm(requested)
    if not stored:
        return asked
    spacing, path = next(iter(stored.items()))
    if asked is not None and asked != spacing:
        trained = "without resampling" if spacing is None else f"at {spacing:g} mm"
        raise ConfigError(
            f"long_axis_spacing {asked:g} mm differs from the models', trained {trained} ({path}): leave "
            "long_axis_spacing unset to use the models' spacing"
        )
    return spacing
