"""Initialising RSTN: seeded random weights or weights from a local file; SGD parameter groups.

Nothing is ever downloaded: pretrained weights must be a local file, read with
``torch.load(path, weights_only=True)``. A file may hold the state dict itself or a dict
with a single ``"state_dict"`` or ``"model"`` entry holding it; a ``"module."`` prefix
(left by ``DataParallel``) is removed. Three layouts are recognised:

(a) A full RSTN state dict (keys ``coarse.*``, ``fine.*``, ``saliency.*``): loaded as is; every
    key of the model must be present with the same shape and no other key may be there.

(b) An FCN-8s state dict (keys ``conv1_1.weight`` ... ``conv5_3.bias``, ``fc6.*``, ``fc7.*``,
    as written by :class:`~atso_med.networks.fcn.FCN8s` or by the usual converters of the
    Caffe PASCAL-VOC FCN-8s): the trunk, ``fc6`` and ``fc7`` go into both the coarse and the
    fine FCN. Score layers are left at zero, as the reference does (their class count
    differs anyway); the decoder keeps its bilinear kernels; any ``score_*``/``upscore*``
    keys of the file are ignored. The saliency module gets its reference initialisation.

(c) A torchvision-style VGG16 state dict (keys ``features.N.weight``/``bias``,
    ``classifier.N.weight``/``bias``): the ``features`` convolutions, sorted by N (0, 2, 5,
    7, 10, 12, 14, 17, 19, 21, 24, 26, 28 in torchvision's VGG16), become ``conv1_1`` ...
    ``conv5_3`` in that order; ``classifier.0`` (a linear layer on the flattened 512x7x7
    pool5 output, weight (4096, 25088)) becomes ``fc6`` with its weight reshaped to
    (4096, 512, 7, 7); ``classifier.3`` (4096, 4096) becomes ``fc7`` reshaped to
    (4096, 4096, 1, 1); ``classifier.6`` (the 1000-class layer) is ignored. Score layers
    zero, decoder bilinear, saliency reference init, as in (b).

Any shape that does not match the model (e.g. a file saved at another width) is refused with
a :class:`~atso_med.errors.ConfigError` naming the first differing key and both shapes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import nn

from atso_med.errors import ConfigError
from atso_med.networks.fcn import FCN8s
from atso_med.networks.rstn import RSTN

__all__ = ["initialize_rstn", "load_state_file", "parameter_groups"]

_FC_KEYS = ("fc6", "fc7")


def load_state_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Reads a local weights file into a flat ``{name: tensor}`` dict.

    Args:
        path: local file written by ``torch.save``.

    Returns:
        The state dict, unwrapped from atso-med's own ``model.pt`` and checkpoints
        (``{"network": ..., "config": ...}``) or from ``{"state_dict": ...}``/``{"model": ...}``,
        and without a ``"module."`` prefix.

    Raises:
        ConfigError: if the file is missing, unreadable or not a dict of tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        raise ConfigError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(obj, Mapping):
        # A state dict's values are tensors: a mapping under one of these keys is the wrapped one.
        for wrapper in ("network", "state_dict", "model"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ConfigError(f"weights file {path} does not hold a state dict")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"weights file {path}: entry {key!r} is not a tensor")
        state[key[len("module.") :] if str(key).startswith("module.") else str(key)] = value
    return state


def _shape_error(key: str, file_shape: tuple[int, ...], model_shape: tuple[int, ...]) -> ConfigError:
    return ConfigError(
        f"weights do not match the model at {key!r}: file has shape {file_shape}, model expects {model_shape} "
        "(was the file saved for another preset/width?)"
    )


def _copy_checked(
    target: torch.Tensor, source: torch.Tensor, key: str, source_shape: tuple[int, ...] | None = None
) -> None:
    """Copies ``source`` into ``target`` after checking the shape; ``source_shape`` names the file's shape in errors."""
    if tuple(source.shape) != tuple(target.shape):
        raise _shape_error(key, source_shape or tuple(source.shape), tuple(target.shape))
    with torch.no_grad():
        target.copy_(source.to(target.dtype))


def _load_full(model: RSTN, state: Mapping[str, torch.Tensor]) -> None:
    own = model.state_dict()
    for key, tensor in own.items():
        if key not in state:
            raise ConfigError(f"RSTN weights file lacks {key!r}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise _shape_error(key, tuple(state[key].shape), tuple(tensor.shape))
    extra = sorted(set(state) - set(own))
    if extra:
        raise ConfigError(f"RSTN weights file has keys the model does not: {extra[:5]}")
    model.load_state_dict(dict(state), strict=True)


def _fcn_targets(fcn: FCN8s) -> list[tuple[str, nn.Conv2d]]:
    """Trunk convs then fc6, fc7: the layers a pretrained file provides."""
    return [(n, m) for n, m in fcn.convolutions() if not n.startswith("score")]


def _load_pretrained_fcn(fcn: FCN8s, state: Mapping[str, torch.Tensor], layout: str) -> None:
    """Loads trunk/fc6/fc7 from an FCN-8s (``"fcn"``) or VGG16 (``"vgg"``) state dict, zeroes score layers."""
    targets = _fcn_targets(fcn)
    n_trunk = len(targets) - len(_FC_KEYS)
    if layout == "fcn":
        for name, conv in targets:
            for part in ("weight", "bias"):
                key = f"{name}.{part}"
                if key not in state:
                    raise ConfigError(f"FCN-8s weights file lacks {key!r}")
                _copy_checked(getattr(conv, part), state[key], key)
    else:
        pattern = re.compile(r"^features\.(\d+)\.weight$")
        indices = sorted(int(m.group(1)) for k in state if (m := pattern.match(k)))
        if len(indices) != n_trunk:
            raise ConfigError(f"VGG16 weights file has {len(indices)} feature convolutions, expected {n_trunk}")
        sources = [f"features.{i}" for i in indices] + ["classifier.0", "classifier.3"]
        for (_, conv), src in zip(targets, sources, strict=True):
            wkey, bkey = f"{src}.weight", f"{src}.bias"
            if wkey not in state or bkey not in state:
                raise ConfigError(f"VGG16 weights file lacks {wkey!r} or {bkey!r}")
            weight = state[wkey]
            if src.startswith("classifier"):
                # Linear layers on the flattened (C, 7, 7) pool5 map become fully convolutional:
                # torchvision flattens channel-major, so a plain reshape restores (C, kh, kw).
                expected = (conv.weight.shape[0], conv.weight[0].numel())
                if tuple(weight.shape) != expected:
                    raise _shape_error(wkey, tuple(weight.shape), expected)
                weight = weight.reshape(conv.weight.shape)
            _copy_checked(conv.weight, weight, wkey)
            _copy_checked(conv.bias, state[bkey], bkey)
    with torch.no_grad():
        for score in fcn.score_layers():
            score.weight.zero_()
            score.bias.zero_()
    fcn.reset_bilinear()


def _detect_layout(state: Mapping[str, torch.Tensor]) -> str:
    keys = list(state)
    if any(k.startswith(("coarse.", "fine.", "saliency.")) for k in keys):
        return "rstn"
    if any(k.startswith("features.") for k in keys):
        return "vgg"
    if "conv1_1.weight" in state:
        return "fcn"
    raise ConfigError(
        "unrecognised weights layout: expected an RSTN state dict (coarse.*/fine.*), an FCN-8s state dict "
        f"(conv1_1.weight ...) or a torchvision VGG16 state dict (features.N.*); first keys: {keys[:3]}"
    )


def initialize_rstn(model: RSTN, seed: int | None = None, weights_file: str | os.PathLike[str] | None = None) -> RSTN:
    """Initialises an RSTN in place, randomly (seeded) or from a local weights file.

    Random initialisation: He-normal convolutions, unit-gain normal score layers, zero
    biases, bilinear decoder kernels, the reference saliency init (see
    :meth:`RSTN.reset_parameters`). With a seed every parameter draws from its own generator
    seeded by (seed, parameter name), so equal seeds give bit-identical weights whatever the
    global RNG state and whatever was built before. Then, if ``weights_file`` is given, the
    file is loaded as described in the module docstring (layouts (a), (b), (c)).

    Args:
        model: the network to initialise (modified in place).
        seed: random seed; ``None`` draws one from the global torch RNG (so
            ``torch.manual_seed`` still makes it reproducible).
        weights_file: optional local ``torch.save`` file.

    Returns:
        The same ``model``.

    Raises:
        ConfigError: if the file is missing, unreadable, of an unknown layout, or does not
            match the model's shapes (the message names the first differing key and both
            shapes).
    """
    if not isinstance(model, RSTN):
        raise ConfigError(f"initialize_rstn expects an RSTN, got {type(model).__name__}")
    state = load_state_file(weights_file) if weights_file is not None else None
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    model.reset_parameters(int(seed))
    if state is None:
        return model
    layout = _detect_layout(state)
    if layout == "rstn":
        _load_full(model, state)
    else:
        for fcn in (model.coarse, model.fine):
            _load_pretrained_fcn(fcn, state, layout)
    return model


def parameter_groups(
    model: RSTN,
    coarse_lr: float = 1e-5,
    fine_lr: float = 1e-4,
    bias_lr_mult: float = 2.0,
    weight_decay: float = 5e-4,
) -> list[dict]:
    """SGD parameter groups as the reference trains RSTN.

    Coarse FCN at ``coarse_lr``; fine FCN and saliency module at ``fine_lr``; biases at
    ``bias_lr_mult`` times their group's rate without weight decay; frozen parameters
    (the bilinear decoder) excluded. Each group carries a ``"name"`` entry
    (``coarse_weight``, ``coarse_bias``, ``fine_weight``, ``fine_bias``) and an
    ``"initial_lr"`` entry for schedulers and logs.

    Args:
        model: the network, or a ``DistributedDataParallel`` / ``DataParallel`` wrapping it.
        coarse_lr: learning rate of the coarse FCN's weights.
        fine_lr: learning rate of the fine FCN's and saliency module's weights.
        bias_lr_mult: multiplier of the learning rate for biases.
        weight_decay: weight decay of non-bias parameters.

    Returns:
        A list of param-group dicts for ``torch.optim.SGD`` (empty groups left out).

    Raises:
        ConfigError: if a rate or the decay is negative, or ``model`` is not an RSTN.
    """
    model = model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model
    if not isinstance(model, RSTN):
        raise ConfigError(f"parameter_groups expects an RSTN, got {type(model).__name__}")
    for name, value in (
        ("coarse_lr", coarse_lr),
        ("fine_lr", fine_lr),
        ("bias_lr_mult", bias_lr_mult),
        ("weight_decay", weight_decay),
    ):
        if not float(value) >= 0.0:
            raise ConfigError(f"{name} must be >= 0, got {value!r}")
    buckets: dict[str, list[nn.Parameter]] = {
        "coarse_weight": [],
        "coarse_bias": [],
        "fine_weight": [],
        "fine_bias": [],
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "coarse" if name.startswith("coarse.") else "fine"
        kind = "bias" if name.endswith(".bias") else "weight"
        buckets[f"{part}_{kind}"].append(param)
    groups = []
    for key, params in buckets.items():
        if not params:
            continue
        base = coarse_lr if key.startswith("coarse") else fine_lr
        is_bias = key.endswith("bias")
        lr = base * bias_lr_mult if is_bias else base
        groups.append(
            {
                "name": key,
                "params": params,
                "lr": lr,
                "initial_lr": lr,
                "weight_decay": 0.0 if is_bias else weight_decay,
            }
        )
    return groups
