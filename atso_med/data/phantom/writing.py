"""Writing a phantom data set (NIfTI images and labels, ``dataset.json``) resumably, and telling
whether a folder already holds the one asked for."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from atso_med.data.dataset import DATASET_FILE
from atso_med.data.nifti import save_nifti
from atso_med.data.phantom.parameters import PhantomConfig, case_rng, label_names
from atso_med.data.phantom.render import make_phantom_case
from atso_med.errors import ConfigError
from atso_med.files import read_json_or_none, write_text_atomic

_IN_PROGRESS = ".phantom-in-progress.json"


def _case_files(config: PhantomConfig) -> list[dict[str, str]]:
    return [
        {"id": f"case_{k:03d}", "image": f"imagesTr/case_{k:03d}.nii.gz", "label": f"labelsTr/case_{k:03d}.nii.gz"}
        for k in range(config.cases)
    ]


def phantom_status(out_dir: str | os.PathLike, config: PhantomConfig) -> str:
    """What :func:`write_phantom_dataset` would find in ``out_dir``.

    Args:
        out_dir: output folder.
        config: the configuration to write.

    Returns:
        ``"empty"`` (missing or empty folder), ``"complete"`` (a finished phantom of exactly this
        configuration: nothing to do) or ``"partial"`` (an interrupted run of this configuration,
        safe to finish).

    Raises:
        ConfigError: ``out_dir`` is a file, or a non-empty folder that is not a phantom of this
            configuration; it is never written to.
    """
    out = Path(out_dir)
    if not out.exists():
        return "empty"
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return "empty"
    wanted = config.to_dict()
    dataset = read_json_or_none(out / DATASET_FILE)
    if isinstance(dataset, dict) and isinstance(dataset.get("phantom"), dict):
        found = dataset["phantom"]
        if found == wanted:
            files = [out / c[key] for c in _case_files(config) for key in ("image", "label")]
            return "complete" if all(f.is_file() for f in files) else "partial"
        # The default label map is not written (see PhantomConfig.to_dict): name it in the message.
        found_, wanted_ = ({"labels": "pancreas", **d} for d in (found, wanted))
        diffs = sorted(k for k in set(found_) | set(wanted_) if found_.get(k) != wanted_.get(k))
        detail = "; ".join(f"{k}: {found_.get(k)!r} there, {wanted_.get(k)!r} asked" for k in diffs)
        raise ConfigError(
            f"{out} holds a phantom of another configuration ({detail}); refusing to overwrite it "
            "(choose another folder)"
        )
    marker = read_json_or_none(out / _IN_PROGRESS)
    if isinstance(marker, dict) and marker == wanted:
        return "partial"
    raise ConfigError(
        f"{out} is not empty and is not a phantom of this configuration; "
        "refusing to write into it (choose an empty or new folder)"
    )


def write_phantom_dataset(
    out_dir: str | os.PathLike,
    config: PhantomConfig,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the phantom data set: NIfTI images and labels plus ``dataset.json``.

    Layout: ``imagesTr/case_000.nii.gz`` (int16 HU), ``labelsTr/case_000.nii.gz`` (uint8: 1 =
    pancreas, or one class per organ with ``config.labels == "organs"``) and ``dataset.json``
    (written last, with every class under ``"labels"`` and the resolved configuration under
    ``"phantom"``). A folder already holding this exact phantom is left as it is; an interrupted
    run of the same configuration is finished.

    Args:
        out_dir: output folder; must be missing, empty, or a phantom of this configuration.
        config: what to generate.
        progress: called with ``(cases done, cases)`` after each case.

    Returns:
        The path of ``dataset.json``.

    Raises:
        ConfigError: ``out_dir`` holds other data (see :func:`phantom_status`).
    """
    out = Path(out_dir)
    status = phantom_status(out, config)
    dataset_path = out / DATASET_FILE
    if status == "complete":
        return dataset_path
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(config.to_dict(), indent=2) + "\n", out / _IN_PROGRESS)
    entries = _case_files(config)
    for k, entry in enumerate(entries):
        image_path, label_path = out / entry["image"], out / entry["label"]
        if not (status == "partial" and image_path.is_file() and label_path.is_file()):
            image, label, affine = make_phantom_case(case_rng(config.seed, k, config.domain), config, k)
            save_nifti(label, affine, label_path, dtype=np.uint8)
            save_nifti(image, affine, image_path, dtype=np.int16)  # image last: it marks the case done
        if progress is not None:
            progress(k + 1, len(entries))
    scanner = (
        "portal-venous source scanner"
        if config.domain == "source"
        else "shifted arterial-phase scanner with pancreatic lesions"
    )
    what = "pancreas labels" if config.labels == "pancreas" else "abdominal organ labels"
    description = (
        f"Synthetic contrast-enhanced abdominal CT with {what} (atso-med phantom, {scanner}); "
        "a stand-in for NIH Pancreas-CT."
    )
    dataset = {
        "name": "phantom" if config.domain == "source" else "phantom-shifted",
        "description": description,
        "labels": label_names(config.labels),
        "cases": entries,
        "phantom": config.to_dict(),
    }
    write_text_atomic(json.dumps(dataset, indent=2) + "\n", dataset_path)
    (out / _IN_PROGRESS).unlink(missing_ok=True)
    return dataset_path
