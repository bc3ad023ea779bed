"""The RSTN bundle's config files, and ``python -m monai.bundle`` command lines that use them as a user would."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "rstn_pancreas_ct" / "configs"
META = str(CONFIGS / "metadata.json")
TRAIN = str(CONFIGS / "train.json")
MULTI_GPU_TRAIN = str(CONFIGS / "multi_gpu_train.json")
INFERENCE = str(CONFIGS / "inference.json")
EVALUATE = str(CONFIGS / "evaluate.json")
ATSO = str(CONFIGS / "atso.json")


def bundle_argv(command: str, config_files: str | Sequence[str], *args: str, **settings: object) -> list[str]:
    """``python -m monai.bundle COMMAND ARGS --config_file ... --meta_file ... --KEY VALUE ...``.

    Args:
        command: the bundle command (``run``, ``verify_net_in_out``, ``ckpt_export``).
        config_files: one config file, or several that MONAI merges in order.
        *args: positional arguments of the command (``network_def``).
        **settings: ``--KEY VALUE`` overrides: strings and paths as they are, other values as JSON
            (``False`` -> ``false``), as a user types them.
    """
    files = [config_files] if isinstance(config_files, str) else list(config_files)
    argv = [sys.executable, "-m", "monai.bundle", command, *args]
    argv += ["--config_file", files[0] if len(files) == 1 else json.dumps(files), "--meta_file", META]
    for key, value in settings.items():
        argv += [f"--{key}", str(value) if isinstance(value, (str, os.PathLike)) else json.dumps(value)]
    return argv
