"""The RSTN bundle's config files, and ``python -m monai.bundle`` command lines that use them as a user would."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from atso_med.engines.bundle_runner import bundle_arguments, config_files

META, TRAIN, MULTI_GPU_TRAIN, INFERENCE, EVALUATE, ATSO = config_files(
    "metadata", "train", "multi_gpu_train", "inference", "evaluate", "atso"
)


def bundle_argv(command: str, configs: str | Sequence[str], *args: str, **settings: object) -> list[str]:
    """``python -m monai.bundle COMMAND ARGS --config_file ... --meta_file ... --KEY VALUE ...``.

    Args:
        command: the bundle command (``run``, ``verify_net_in_out``, ``ckpt_export``).
        configs: one config file, or several that MONAI merges in order.
        *args: positional arguments of the command (``network_def``).
        **settings: ``--KEY VALUE`` overrides, written as :func:`bundle_arguments` writes them.
    """
    files = [configs] if isinstance(configs, str) else list(configs)
    return [sys.executable, "-m", "monai.bundle", command, *args, *bundle_arguments(files, settings)]
