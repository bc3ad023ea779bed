"""The prediction engine: every case of a run predicted into one folder, resumable.

It is the inference bundle's ``evaluator``. Per case: preprocessing, the ensemble inferer,
postprocessing, the writers, and the case's statistics merged into ``prediction_stats.json``. A
case whose image cannot be read or used fails alone: the others are predicted, and the failures
are listed at the end.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atso_med.data.inputs import input_paths
from atso_med.data.readers import is_nifti
from atso_med.data.writers import prediction_file, require_slicerio, write_prediction
from atso_med.errors import CaseFailuresError, ConfigError, input_error_cause
from atso_med.files import check_output_file, check_output_folder, read_json_or_none, write_text_atomic
from atso_med.metrics.prediction_stats import PREDICTION_STATS_FILE
from atso_med.networks.plane_models import is_model_set, plane_model_files
from atso_med.transforms.prediction_io import PredictionPostprocessing, PredictionPreprocessing

if TYPE_CHECKING:
    from atso_med.inferers.ensemble import EnsembleInferer

__all__ = [
    "PredictionEngine",
    "check_case_output",
    "check_nifti_suffix",
    "check_output_dir",
    "check_prediction_run",
    "run_case",
]

logger = logging.getLogger(__name__)


def check_case_output(path: Path, items: Sequence[Mapping], what: str = "output") -> None:
    """Refuse an output file that is one of the cases' images or labels, or lies inside a DICOM
    input folder (:func:`atso_med.files.check_output_file`; an earlier output is replaced)."""
    inputs = [
        (f"{'input folder' if is_folder else 'input file'} of case {item.get('id')!r}", source)
        for item in items
        for source, is_folder in input_paths(item)
    ]
    check_output_file(path, inputs, kind=what, force=True, option=f"the {what}")


def check_output_dir(output_dir: Path, items: Sequence[Mapping]) -> None:
    """Refuse an output folder equal to an input folder (image or label) or inside a DICOM folder."""
    resolved = output_dir.resolve()
    for item in items:
        for source, is_folder in input_paths(item):
            folder = source if is_folder else source.parent
            if resolved == folder or (is_folder and resolved.is_relative_to(source)):
                raise ConfigError(
                    f"output folder {output_dir} is the input folder {folder} of case {item.get('id')!r}: "
                    "choose another output folder (inputs are never overwritten)"
                )


def check_nifti_suffix(path: Path, what: str) -> None:
    """Refuse an output mask or probability path that is not a NIfTI file name."""
    if not is_nifti(path):
        raise ConfigError(f"the {what} {path} must end in .nii.gz or .nii")


def check_prediction_run(
    items: Sequence[Mapping], model_dir: Any, output_dir: str | os.PathLike, save_seg_nrrd: bool = False
) -> None:
    """Cheap checks of a whole run before any model is loaded or any image read in full.

    Args:
        items: the resolved inputs (:func:`resolve_inputs`).
        model_dir: the model sets (folders / mappings); files are located, not loaded.
        output_dir: the output folder.
        save_seg_nrrd: whether ``.seg.nrrd`` files are asked for.

    Raises:
        ConfigError: no output folder, an output folder equal to an input folder or one that cannot
            be written, a model file missing, ``.seg.nrrd`` without ``slicerio``.
    """
    from atso_med.flags import as_bool

    if not output_dir:
        raise ConfigError("no output folder given (output_dir / --out)")
    check_output_dir(Path(output_dir), items)
    check_output_folder(output_dir)
    sets = [model_dir] if isinstance(model_dir, (str, os.PathLike, Mapping)) or model_dir is None else list(model_dir)
    if not sets:
        raise ConfigError("no model set given")
    for entry in sets:
        if not is_model_set(entry):
            plane_model_files(entry)
    if as_bool(save_seg_nrrd):
        require_slicerio()


def run_case(
    data: Mapping[str, Any],
    inferer: EnsembleInferer,
    postprocessing: PredictionPostprocessing,
    paths: Mapping[str, Path | None],
    classes: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Infer, invert and write one preprocessed case; return its statistics.

    ``classes`` names the values of a label map of C > 1 classes (``None``: an organ mask).
    """
    from atso_med.metrics.dice import dice_score

    start = time.perf_counter()
    result = inferer(data["image"], data.get("truth"))
    d = postprocessing({**data, **result})
    meta = d["image_meta"]
    written = write_prediction(
        d["mask"],
        meta["affine"],
        paths["output"],
        probability=d["probability"],
        probability_path=paths.get("probability"),
        seg_nrrd_path=paths.get("seg_nrrd"),
        qform=meta.get("qform"),
        classes=classes,
    )
    voxels = int(np.count_nonzero(d["mask"]))
    record = meta.get("long_axis_spacing")
    stats: dict[str, Any] = {
        "id": data.get("id"),
        "status": "predicted",
        "image": meta["source"],
        **written,
        "shape": list(meta["shape"]),
        "spacing_mm": [float(s) for s in meta["spacing"]],
        "orientation": meta["orientation"],
        "voxels": voxels,
        "volume_ml": voxels * float(np.prod(meta["spacing"])) / 1000.0,
        "model_sets": len(result["sets"]),
        "long_axis_spacing": None
        if not record
        else {k: v for k, v in record.items() if k != "original_canonical_affine"},
        "seconds": time.perf_counter() - start,
    }
    if classes is not None:
        counts = np.bincount(np.asarray(d["mask"]).ravel(), minlength=len(classes))
        stats["classes"] = {name: int(counts[value]) for value, name in sorted(classes.items()) if value}
    if len(result["sets"]) == 1:
        stats.update(result["sets"][0])
    else:
        stats["sets"] = result["sets"]
    if "label" in d:
        stats["dsc"] = dice_score(d["mask"], d["label"])
    return stats


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def _update_stats_file(output_dir: Path, stats: Mapping[str, Any]) -> None:
    """Merge one case's statistics into ``output_dir/prediction_stats.json`` (atomic rewrite)."""
    path = output_dir / PREDICTION_STATS_FILE
    content: dict[str, Any] = {"cases": {}}
    if path.is_file():
        loaded = read_json_or_none(path)
        if isinstance(loaded, Mapping) and isinstance(loaded.get("cases"), Mapping):
            content = dict(loaded)
        else:
            logger.warning("%s is unreadable; starting it anew", path)
    content["cases"] = {**content["cases"], str(stats["id"]): _json_ready(stats)}
    write_text_atomic(json.dumps(content, indent=2) + "\n", path)


def _naming_the_image(item: Mapping[str, Any], error: Exception) -> str:
    """The error's message, led by the case's image path unless it names it already."""
    text = str(error)
    return text if str(item["image"]) in text else f"{item['image']}: {text}"


class PredictionEngine:
    """Predict every case of a dataset into a folder: the bundle's ``evaluator`` (an engine with ``run()``).

    Outputs per case: ``<id>.nii.gz`` (uint8 mask, or label map 0..C of models of C > 1
    classes), optionally ``<id>_probability.nii.gz``
    (float32) and ``<id>.seg.nrrd`` (3D Slicer), and the case's statistics merged into
    ``prediction_stats.json``. A case whose requested files all exist already is skipped (the run
    is resumable) unless ``overwrite`` is set.

    Args:
        dataset: a MONAI ``Dataset`` whose ``data`` are the items and whose transform is a
            :class:`PredictionPreprocessing` (or any sequence of items plus ``preprocessing``).
        inferer: the :class:`EnsembleInferer`.
        postprocessing: the :class:`PredictionPostprocessing`.
        output_dir: where the outputs go; must not be an input folder.
        save_probability: also write the probability map.
        save_seg_nrrd: also write the ``.seg.nrrd``.
        overwrite: predict cases whose output exists again.
        preprocessing: used when ``dataset`` is a plain list of items.
        fail_fast: stop at the first case that fails; by default a case whose image cannot be read
            or used is recorded as failed, the other cases are predicted, and
            :class:`~atso_med.errors.CaseFailuresError` lists the failures at the end.
        classes: the models' classes ``{0: "background", 1: name, ...}``
            (:func:`~atso_med.networks.plane_models.prediction_classes`): with C > 1 of them, the
            files are label maps whose ``.seg.nrrd`` segments carry the names, and each case's
            statistics count the voxels per class. ``None`` or one class: an organ mask.

    Raises:
        ConfigError: an output folder equal to an input folder, ``.seg.nrrd`` asked without slicerio.
    """

    def __init__(
        self,
        dataset: Any,
        inferer: EnsembleInferer,
        postprocessing: PredictionPostprocessing | None = None,
        output_dir: str | os.PathLike = "predictions",
        save_probability: bool = False,
        save_seg_nrrd: bool = False,
        overwrite: bool = False,
        preprocessing: PredictionPreprocessing | None = None,
        fail_fast: bool = False,
        classes: Mapping[int, str] | None = None,
    ) -> None:
        from atso_med.flags import as_bool

        self.dataset = dataset
        self.items = [dict(item) for item in (dataset.data if hasattr(dataset, "data") else dataset)]
        self.preprocessing = preprocessing
        if not hasattr(dataset, "data") and preprocessing is None:
            raise ConfigError("PredictionEngine: a list of items needs a preprocessing")
        self.inferer = inferer
        self.postprocessing = postprocessing or PredictionPostprocessing()
        if not output_dir:
            raise ConfigError("no output folder given (output_dir / --out)")
        self.output_dir = Path(output_dir)
        self.save_probability = as_bool(save_probability)
        self.save_seg_nrrd = as_bool(save_seg_nrrd)
        self.overwrite = as_bool(overwrite)
        self.fail_fast = as_bool(fail_fast)
        self.classes = dict(classes) if classes is not None and len(classes) > 2 else None
        if self.classes is not None and getattr(inferer, "num_classes", len(self.classes) - 1) != len(self.classes) - 1:
            raise ConfigError(
                f"the models segment {inferer.num_classes} class(es), but {len(self.classes) - 1} classes are named"
            )
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise ConfigError(f"output folder {self.output_dir} is a file")
        check_output_dir(self.output_dir, self.items)
        if self.save_seg_nrrd:
            require_slicerio()
        self.results: list[dict[str, Any]] = []

    def paths(self, case_id: str) -> dict[str, Path | None]:
        """Output paths of one case."""
        return {
            "output": prediction_file(self.output_dir, case_id),
            "probability": prediction_file(self.output_dir, case_id, "probability") if self.save_probability else None,
            "seg_nrrd": prediction_file(self.output_dir, case_id, "seg_nrrd") if self.save_seg_nrrd else None,
        }

    def _prepared(self, index: int) -> dict[str, Any]:
        transform = self.preprocessing or getattr(self.dataset, "transform", None)
        if callable(transform):
            # Called directly, not through Dataset.__getitem__, whose wrapper would hide our errors
            # inside a RuntimeError.
            return transform(dict(self.items[index]))
        return self.dataset[index]

    def run(self) -> list[dict[str, Any]]:
        """Predict every case not predicted yet.

        Returns:
            One statistics dict per case (``status`` ``"predicted"`` or ``"skipped"``).

        Raises:
            CaseFailuresError: after the last case, when any case failed (its ``results`` hold
                every case's record); with ``fail_fast``, the first failure itself, its message
                prefixed with the case id and image.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.results = []
        for index, item in enumerate(self.items):
            paths = self.paths(item["id"])
            # Done = every requested file exists (a rerun that adds --probability predicts again).
            if all(p.exists() for p in paths.values() if p is not None) and not self.overwrite:
                logger.info("%s: %s exists, skipped", item["id"], paths["output"])
                self.results.append({"id": item["id"], "status": "skipped", "output": str(paths["output"])})
                continue
            try:
                stats = run_case(self._prepared(index), self.inferer, self.postprocessing, paths, self.classes)
            except Exception as raised:  # only input errors are a failed case; any other propagates
                error = input_error_cause(raised)
                if error is None:
                    raise
                message = _naming_the_image(item, error)
                if self.fail_fast:
                    raise type(error)(f"case {item['id']!r}: {message}") from error
                logger.error("case %r failed: %s", item["id"], message)
                self.results.append({"id": item["id"], "status": "failed", "image": item["image"], "error": message})
                continue
            _update_stats_file(self.output_dir, stats)
            logger.info(
                "%s: %d voxels (%.1f ml), round %s, %.1f s -> %s",
                item["id"],
                stats["voxels"],
                stats["volume_ml"],
                stats.get("stopped_round", "-"),
                stats["seconds"],
                stats["output"],
            )
            self.results.append(stats)
        failures = [(r["id"], r["error"]) for r in self.results if r["status"] == "failed"]
        if failures:
            raise CaseFailuresError(failures, self.results)
        return self.results
