"""Whole-volume prediction of CT files: plane models in, NIfTI masks on the input's own grid out.

The steps of one case, shared by :func:`predict_case`, :func:`predict_datalist`, the
``atso-med predict`` command and the bundle's ``configs/inference.json``:

1. :class:`~atso_med.transforms.prediction_io.PredictionPreprocessing`: read the image (NIfTI file
   or DICOM series folder) in canonical (RAS) axes, by axis permutation / flips only, optionally
   resample the long axis to a fixed slice spacing, then window [-100, 240] HU -> [0, 1]: the
   same :class:`~atso_med.transforms.CTPreprocessingd` training uses.
2. :class:`~atso_med.inferers.ensemble.EnsembleInferer`: the coarse-to-fine inferer once per
   model set (a set = the plane models X / Y / Z of one training run or fold), then the vote
   (:func:`~atso_med.inferers.fusion.ensemble_vote`).
3. :class:`~atso_med.transforms.prediction_io.PredictionPostprocessing`: undo the spacing
   normalisation and the reorientation, so the mask is indexed exactly like the input's voxels.
4. :func:`~atso_med.data.writers.write_prediction`: uint8 NIfTI with the input's affine; for a
   DICOM input, the affine the DICOM reader computed. Optionally a float32 probability map and a
   3D Slicer ``.seg.nrrd``.

:class:`~atso_med.engines.prediction_folder.PredictionEngine` runs these steps over many cases.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from atso_med.data.inputs import check_image_header, resolve_inputs
from atso_med.data.readers import nifti_stem
from atso_med.data.writers import require_slicerio
from atso_med.engines.prediction_folder import (
    PredictionEngine,
    check_case_output,
    check_nifti_suffix,
    check_output_dir,
    run_case,
)
from atso_med.errors import ConfigError
from atso_med.inferers.ensemble import EnsembleInferer
from atso_med.networks.plane_models import prediction_classes, trained_hu_window, trained_long_axis_spacing
from atso_med.transforms.prediction_io import PredictionPostprocessing, PredictionPreprocessing

__all__ = ["predict_case", "predict_datalist"]


def predict_case(
    image_path: str | os.PathLike,
    models: Any,
    output_path: str | os.PathLike,
    config: Any = None,
    device: str | torch.device | None = None,
    probability_path: str | os.PathLike | None = None,
    truth_path: str | os.PathLike | None = None,
    long_axis_spacing: float | None = None,
    seg_nrrd_path: str | os.PathLike | None = None,
    series_uid: str | None = None,
    hu_window: Sequence[float] | None = None,
    foreground: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Segment one CT and write the mask on its own grid (a label map 0..C for models of C > 1 classes).

    Args:
        image_path: NIfTI file or DICOM series folder.
        models: one model set or a list of them (see :func:`load_model_sets`).
        output_path: mask NIfTI to write (``.nii.gz`` / ``.nii``).
        config: :class:`~atso_med.inferers.coarse_to_fine.InferenceConfig` (default: the reference's).
        device: torch device (default: ``cuda:0`` if available, else CPU).
        probability_path: also write the float32 probability map here.
        truth_path: a label of the image: its DSC is reported per round and for the final mask
            (it does not change the prediction).
        long_axis_spacing: the slice spacing (mm) the long axis is resampled to for inference; ``None``
            (default) takes the models' own (:func:`~atso_med.networks.plane_models.trained_long_axis_spacing`),
            which a given spacing must equal.
        seg_nrrd_path: also write a 3D Slicer ``.seg.nrrd`` here (needs ``slicerio``).
        series_uid: series to read from a DICOM folder holding several.
        hu_window: HU window mapped to [0, 1]; ``None`` (default) takes the models' own (see
            :func:`~atso_med.networks.plane_models.trained_hu_window`), which a given window must equal.
        foreground: label values counted as organ in ``truth_path``.

    Returns:
        The case's statistics: output paths, shape, spacing, voxels, volume (ml), rounds, stopped
        round, seconds, and ``dsc`` with a truth.

    Raises:
        ImageReadError: the image is missing, unreadable or not 3D (checked before any work).
        GridMismatchError: the truth does not lie on the image's grid.
        ConfigError: bad models (missing, wrong width, wrong plane), an output path equal to an
            input, a wrong suffix.
    """
    item: dict[str, Any] = {"id": nifti_stem(Path(image_path)), "image": str(image_path)}
    if truth_path is not None:
        item["label"] = str(truth_path)
    if series_uid:
        item["series_uid"] = series_uid
    check_image_header(Path(image_path))
    output_path = Path(output_path)
    check_nifti_suffix(output_path, "output")
    check_case_output(output_path, [item], "output")
    extras = {"probability": probability_path, "seg_nrrd": seg_nrrd_path}
    for what, path in extras.items():
        if path is None:
            continue
        if Path(path).resolve() == output_path.resolve():
            raise ConfigError(f"the {what} path {path} is the mask's output path")
        check_case_output(Path(path), [item], what)
    if probability_path is not None:
        check_nifti_suffix(Path(probability_path), "probability output")
    if seg_nrrd_path is not None:
        require_slicerio()
        if not str(seg_nrrd_path).endswith(".seg.nrrd"):
            raise ConfigError(f"a 3D Slicer segmentation file must end in .seg.nrrd, got {seg_nrrd_path}")
    preprocessing = PredictionPreprocessing(
        hu_window=trained_hu_window(models, hu_window),
        long_axis_spacing=trained_long_axis_spacing(models, long_axis_spacing),
        with_truth=truth_path is not None,
        foreground=foreground,
    )
    inferer = EnsembleInferer(models, config, device)
    data = preprocessing(item)
    paths = {
        "output": output_path,
        "probability": None if probability_path is None else Path(probability_path),
        "seg_nrrd": None if seg_nrrd_path is None else Path(seg_nrrd_path),
    }
    classes = prediction_classes(models)
    return run_case(data, inferer, PredictionPostprocessing(), paths, classes if len(classes) > 2 else None)


def predict_datalist(
    items: Any,
    models: Any,
    output_dir: str | os.PathLike,
    config: Any = None,
    device: str | torch.device | None = None,
    save_probability: bool = False,
    save_seg_nrrd: bool = False,
    long_axis_spacing: float | None = None,
    overwrite: bool = False,
    round_dsc: bool = False,
    hu_window: Sequence[float] | None = None,
    foreground: Sequence[int] | None = None,
    datalist_key: str | None = None,
    ids: Sequence[str] | None = None,
    fail_fast: bool = False,
) -> list[dict[str, Any]]:
    """Predict a list of cases into ``output_dir/<id>.nii.gz`` (resumable).

    Args:
        items: data-list items, or any ``input`` :func:`resolve_inputs` accepts (a data-list JSON,
            a dataset.json, a folder of NIfTI files, one file, one DICOM folder).
        models: one model set or a list of them (an ensemble).
        output_dir: output folder; never an input folder.
        config: :class:`~atso_med.inferers.coarse_to_fine.InferenceConfig`.
        device: torch device.
        save_probability: also write ``<id>_probability.nii.gz``.
        save_seg_nrrd: also write ``<id>.seg.nrrd``.
        long_axis_spacing: long-axis slice spacing (mm) for inference; ``None`` takes the models' own.
        overwrite: predict again cases whose output exists (default: skip them).
        round_dsc: pass each item's label to the inferer to record per-round DSC (statistics only).
        hu_window: HU window mapped to [0, 1]; ``None`` (default) takes the models' own (see
            :func:`~atso_med.networks.plane_models.trained_hu_window`), which a given window must equal.
        foreground: label values counted as organ (with ``round_dsc``).
        datalist_key: list to read from a data-list JSON.
        ids: only these case ids.
        fail_fast: stop at the first case that fails (default: predict the others, then raise).

    Returns:
        One statistics dict per case, in input order.

    Raises:
        As :func:`predict_case`, all input checks before the first case is predicted; a case
        that fails while it is read or predicted: :class:`~atso_med.errors.CaseFailuresError`
        after the other cases (see :class:`PredictionEngine`).
    """
    items = resolve_inputs(items, datalist_key=datalist_key, ids=ids)
    preprocessing = PredictionPreprocessing(
        hu_window=trained_hu_window(models, hu_window),
        long_axis_spacing=trained_long_axis_spacing(models, long_axis_spacing),
        with_truth=round_dsc,
        foreground=foreground,
    )
    # Output checks come before the (possibly slow) model loading.
    engine_args = dict(
        postprocessing=PredictionPostprocessing(),
        output_dir=output_dir,
        save_probability=save_probability,
        save_seg_nrrd=save_seg_nrrd,
        overwrite=overwrite,
        preprocessing=preprocessing,
        fail_fast=fail_fast,
        classes=prediction_classes(models),
    )
    check_output_dir(Path(output_dir), items)
    if save_seg_nrrd:
        require_slicerio()
    engine = PredictionEngine(items, EnsembleInferer(models, config, device), **engine_args)
    return engine.run()
