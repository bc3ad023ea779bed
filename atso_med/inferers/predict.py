"""Whole-volume prediction of CT files: plane models in, NIfTI masks on the input's own grid out.

The steps of one case, shared by :func:`predict_case`, :func:`predict_datalist`, the
``atso-med predict`` command and the bundle's ``configs/inference.json``:

1. :class:`PredictionPreprocessing`: read the image (NIfTI file or DICOM series folder),
   reorient it to canonical (RAS) axes by axis permutation / flips only, window it to
   [-100, 240] HU -> [0, 1], and optionally resample the long axis to a fixed slice spacing
   (:class:`~atso_med.transforms.spacing.LongAxisSpacing`).
2. :class:`EnsembleInferer`: run :class:`~atso_med.inferers.volume.CoarseToFineInferer` once per
   model set (a set = the plane models X / Y / Z of one training run or fold) and vote.
3. :class:`PredictionPostprocessing`: undo the spacing normalisation and the reorientation, so the
   mask is indexed exactly like the input's voxels.
4. :func:`write_prediction`: uint8 NIfTI with the input's affine, qform = sform (code 1); for a
   DICOM input that affine is the one the DICOM reader computed. Optionally a float32
   probability map and a 3D Slicer ``.seg.nrrd``.

Ensemble rule (:func:`ensemble_vote`): a voxel is organ when more than half of the model sets'
masks say so; with an even number of sets a tie is broken by the sets' mean probability >= 0.5.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atso_med.data.nifti import save_nifti
from atso_med.files import atomic_write, write_text_atomic
from atso_med.errors import CaseFailuresError, ConfigError, DatasetError, GridMismatchError, ImageReadError, input_error_cause
from atso_med.metrics.evaluation import PREDICTION_STATS_FILE, datalist_items

__all__ = [
    "MODEL_FILE",
    "PANCREAS_COLOR",
    "EnsembleInferer",
    "PredictionEngine",
    "PredictionPostprocessing",
    "PredictionPreprocessing",
    "check_prediction_run",
    "ensemble_vote",
    "load_model_sets",
    "load_plane_models",
    "network_definition",
    "plane_model_files",
    "predict_case",
    "predict_datalist",
    "resolve_device",
    "resolve_inputs",
    "write_prediction",
    "write_seg_nrrd",
]

logger = logging.getLogger(__name__)

#: File name of a trained plane model inside ``plane_<P>/`` (what the train bundle exports).
MODEL_FILE = "model.pt"
#: Display colour of the pancreas segment (3D Slicer's General Anatomy colour for the pancreas).
PANCREAS_COLOR = (249 / 255, 180 / 255, 111 / 255)
# SNOMED CT codes of 3D Slicer's terminology, so Slicer shows the segment as "Pancreas".
_PANCREAS_TERMINOLOGY = {
    "contextName": "Segmentation category and type - 3D Slicer General Anatomy list",
    "category": ["SCT", "123037004", "Anatomical Structure"],
    "type": ["SCT", "15776009", "Pancreas"],
    "anatomicContextName": "Anatomic codes - DICOM master list",
}
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
# RAS+ (NIfTI, nibabel) to LPS+ (DICOM, NRRD, ITK) world coordinates.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# devices and models
# ---------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to run on: ``None`` picks ``cuda:0`` when available, else the CPU.

    Raises:
        ConfigError: for a string torch does not accept as a device.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "none", "auto")):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"unknown torch device {device!r}: {error}") from None


def _plane_key(key: Any) -> str:
    from atso_med.transforms.triview import PLANES, plane_axis

    try:
        return PLANES[plane_axis(str(key))]
    except Exception:
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
    from atso_med.transforms.triview import PLANES

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


def load_plane_models(
    source: str | os.PathLike | Mapping[str, str | os.PathLike],
    device: str | torch.device | None = "cpu",
    preset: str | None = None,
) -> dict[str, torch.nn.Module]:
    """Load the trained RSTN of each plane, checked against the network its file declares.

    Each file is read with ``weights_only=True`` (a model file never runs code). The network is
    built from the preset stored in the file's ``"config"`` and the weights are checked against it
    before loading, so a file of another width is refused with the first differing weight named.

    Args:
        source: see :func:`plane_model_files`.
        device: where the networks go.
        preset: network preset for files that do not store one (older exports); a stored preset
            always wins.

    Returns:
        ``{plane: RSTN}`` in eval mode, in X, Y, Z order.

    Raises:
        ConfigError: missing or unloadable file; no weights or no preset in a file; a file whose
            stored plane differs from the plane it is given for; weights that do not fit the
            preset's network.
    """
    from atso_med.engines.training import check_state_matches, load_checkpoint
    from atso_med.networks import build_rstn

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
        # Built on the meta device and given the file's tensors: no random initialisation, and a
        # full-size network is never held twice.
        with torch.device("meta"):
            network = build_rstn(str(chosen))
        check_state_matches(content["network"], network, str(path))
        network.load_state_dict(content["network"], assign=True)
        models[plane] = network.eval().to(device)
        logger.info("loaded plane %s model %s (preset %s)", plane, path, chosen)
    from atso_med.transforms.triview import PLANES

    return {p: models[p] for p in PLANES if p in models}


def _is_model_set(value: Any) -> bool:
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
    if isinstance(models, (str, os.PathLike, Mapping)) or models is None:
        items = [models]
    else:
        items = list(models)
    if not items:
        raise ConfigError("no model set given")
    # Every file of every set is located before any is loaded: a typo fails at once.
    for item in items:
        if not _is_model_set(item):
            plane_model_files(item)
    sets = []
    for item in items:
        if _is_model_set(item):
            sets.append({_plane_key(k): m for k, m in item.items()})
        else:
            sets.append(load_plane_models(item, device=device, preset=preset))
    return sets


def network_definition(preset: str = "full") -> torch.nn.Module:
    """The bundle's ``network_def``: the preset's RSTN built on the meta device (no memory, no weights).

    The bundle loads one trained network per plane from ``model_dir``; this definition only
    describes the architecture for tools that inspect a bundle.
    """
    from atso_med.networks import build_rstn

    with torch.device("meta"):
        return build_rstn(str(preset))


def stored_preset(model_dir: Any, default: str = "full") -> str:
    """Preset stored in the first model file found in ``model_dir`` (``default`` when none can be read)."""
    try:
        files = plane_model_files(model_dir if not isinstance(model_dir, (list, tuple)) else model_dir[0])
        # mmap: only the small config is needed, not a full-size network's gigabyte of weights.
        content = torch.load(next(iter(files.values())), map_location="cpu", weights_only=True, mmap=True)
        config = content.get("config") or {}
        return str(config.get("preset") or default)
    except Exception:  # the real loading reports the problem with its own message
        return default


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_image_header(path: Path) -> None:
    """Cheap checks of an input before any work: existence, format, NIfTI header (3D, affine)."""
    from atso_med.data.readers import open_nifti

    if not path.exists():
        raise ImageReadError(f"{path}: image does not exist")
    if path.is_dir():
        return  # DICOM series: read in full when the case is predicted
    if not _is_nifti(path):
        if path.suffix.lower() == ".dcm":
            raise ImageReadError(f"{path}: a single DICOM file; pass the folder that holds the whole series")
        raise ImageReadError(f"{path}: unsupported image format; expected .nii, .nii.gz or a DICOM series folder")
    image, _ = open_nifti(path, "image")
    image.uncache()


def resolve_inputs(
    source: str | os.PathLike | Sequence[Mapping],
    datalist_key: str | None = None,
    ids: Sequence[str] | None = None,
    check: bool = True,
) -> list[dict]:
    """Turn the ``input`` of a prediction run into data-list items ``{"id", "image", ...}``.

    Args:
        source: a NIfTI file; a DICOM series folder; a folder of NIfTI files (one case each); a
            ``dataset.json`` (or a folder holding one); a MONAI data-list JSON; or a list of items.
        datalist_key: list to read from a data-list JSON (default ``testing``, or its only list).
        ids: keep only these case ids (a dataset.json or data list).
        check: check every image's existence, format and NIfTI header now, before any work.

    Returns:
        Items with ``id`` and ``image`` (absolute), and ``label`` / ``series_uid`` when known.

    Raises:
        ImageReadError: a missing, unsupported or (NIfTI) unreadable / not-3D image.
        ConfigError / DatasetError: malformed lists, duplicate or unknown ids.
    """
    from atso_med.data.dataset import DATASET_FILE, Dataset

    if isinstance(source, (str, os.PathLike)):
        if str(source) == "":
            raise ConfigError("no input given: a NIfTI file, a DICOM folder, a data list or a dataset.json")
        path = Path(source).expanduser()
        if not path.exists():
            raise ImageReadError(f"{path}: input does not exist")
        if path.is_dir() and (path / DATASET_FILE).is_file():
            path = path / DATASET_FILE
        if path.is_file() and path.suffix.lower() == ".json":
            try:
                content = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ConfigError(f"{path} is not a readable JSON file: {error}") from None
            if isinstance(content, Mapping) and "cases" in content:
                dataset = Dataset.load(path)
                items = [
                    {
                        "id": case.id,
                        "image": str(case.image),
                        **({"label": str(case.label)} if case.label else {}),
                        **({"series_uid": case.series_uid} if case.series_uid else {}),
                    }
                    for case in dataset.cases
                ]
            else:
                items = datalist_items(path, datalist_key)
        elif path.is_dir():
            niftis = sorted(p for p in path.iterdir() if p.is_file() and _is_nifti(p))
            if niftis:
                items = [{"id": _stem(p), "image": str(p.resolve())} for p in niftis]
            else:
                items = [{"id": path.resolve().name, "image": str(path.resolve())}]
        else:
            items = [{"id": _stem(path), "image": str(path.resolve())}]
    else:
        items = [dict(item) for item in source]
    out = []
    for item in items:
        entry = dict(item)
        if not entry.get("image"):
            raise ConfigError(f"data-list item without an 'image': {entry!r}")
        entry.setdefault("id", _stem(Path(entry["image"])))
        entry["id"] = str(entry["id"])
        out.append(entry)
    if ids:
        wanted = [str(i) for i in ids]
        known = {e["id"] for e in out}
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise DatasetError(f"ids not among the inputs: {', '.join(map(repr, unknown))}")
        out = [e for e in out if e["id"] in set(wanted)]
    seen: set[str] = set()
    for entry in out:
        if entry["id"] in seen:
            raise DatasetError(f"case id {entry['id']!r} appears twice among the inputs (outputs are named by id)")
        seen.add(entry["id"])
    if not out:
        raise ConfigError("no case to predict")
    if check:
        problems = []
        for entry in out:
            try:
                _check_image_header(Path(entry["image"]))
            except ImageReadError as error:
                problems.append(f"{entry['id']}: {error}")
        if problems:
            raise ImageReadError(f"{len(problems)} input(s) unusable, nothing predicted:\n  " + "\n  ".join(problems))
    return out


def _input_paths(item: Mapping) -> list[tuple[Path, bool]]:
    """``(path, is_folder)`` of every input of an item (image, label)."""
    paths = []
    for key in ("image", "label"):
        if item.get(key):
            path = Path(item[key]).resolve()
            paths.append((path, path.is_dir()))
    return paths


def _check_output_path(path: Path, items: Sequence[Mapping], what: str = "output") -> None:
    """Refuse an output that would overwrite an input or land inside a DICOM input folder."""
    resolved = path.resolve()
    for item in items:
        for source, is_folder in _input_paths(item):
            if resolved == source:
                raise ConfigError(f"the {what} {path} is an input file: choose another output path")
            if is_folder and resolved.is_relative_to(source):
                raise ConfigError(
                    f"the {what} {path} lies inside the input folder {source}: choose another output folder"
                )


def _check_output_dir(output_dir: Path, items: Sequence[Mapping]) -> None:
    """Refuse an output folder equal to an input folder (image or label) or inside a DICOM folder."""
    resolved = output_dir.resolve()
    for item in items:
        for source, is_folder in _input_paths(item):
            folder = source if is_folder else source.parent
            if resolved == folder or (is_folder and resolved.is_relative_to(source)):
                raise ConfigError(
                    f"output folder {output_dir} is the input folder {folder} of case {item.get('id')!r}: "
                    "choose another output folder (inputs are never overwritten)"
                )


def _check_nifti_suffix(path: Path, what: str) -> None:
    if not _is_nifti(path):
        raise ConfigError(f"the {what} {path} must end in .nii.gz or .nii")


def _require_slicerio() -> None:
    try:
        import slicerio  # noqa: F401
    except ImportError:
        raise ConfigError("the .seg.nrrd output needs the 'slicerio' package (pip install slicerio)") from None


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
        ConfigError: no output folder, an output folder equal to an input folder, a model file
            missing, ``.seg.nrrd`` without ``slicerio``.
    """
    from atso_med.engines.training import as_bool

    if not output_dir:
        raise ConfigError("no output folder given (output_dir / --out)")
    _check_output_dir(Path(output_dir), items)
    sets = [model_dir] if isinstance(model_dir, (str, os.PathLike, Mapping)) or model_dir is None else list(model_dir)
    if not sets:
        raise ConfigError("no model set given")
    for entry in sets:
        if not _is_model_set(entry):
            plane_model_files(entry)
    if as_bool(save_seg_nrrd):
        _require_slicerio()


# ---------------------------------------------------------------------------------------------
# the pipeline of one case
# ---------------------------------------------------------------------------------------------


class PredictionPreprocessing:
    """The training preprocessing (:class:`~atso_med.transforms.CTPreprocessingd`) of one case for the inferer.

    Args:
        hu_window: ``(low, high)`` HU window mapped to [0, 1] (the RSTN's [-100, 240]).
        long_axis_spacing: resample canonical axis 2 to this slice spacing (mm); ``None`` = off.
        with_truth: also read the item's ``label`` (for per-round DSC in the statistics only; it
            never changes the prediction).
        foreground: label values counted as organ (``None``: every non-zero value).

    Returns (when called with an item):
        ``{"id", "image": float32 canonical [0, 1] array, "image_meta": {...}}`` plus ``"truth"``
        (canonical uint8, on the inferer's grid) and ``"label"`` (bool, on the original grid) with
        ``with_truth``. ``image_meta`` holds ``affine`` and ``shape`` of the input, ``ornt``,
        ``canonical_affine``, ``spacing``, ``orientation``, ``source``, and the
        ``long_axis_spacing`` record when resampled.
    """

    def __init__(
        self,
        hu_window: Sequence[float] = (-100.0, 240.0),
        long_axis_spacing: float | None = None,
        with_truth: bool = False,
        foreground: Sequence[int] | None = None,
    ) -> None:
        from atso_med.engines.training import as_bool
        from atso_med.transforms.preprocessing import CTPreprocessingd

        self.preprocessing = CTPreprocessingd(hu_window, long_axis_spacing, foreground, label_key="truth")
        self.hu_window = self.preprocessing.hu_window
        self.long_axis_spacing = self.preprocessing.long_axis_spacing
        self.with_truth = as_bool(with_truth)

    def __call__(self, item: Mapping[str, Any]) -> dict[str, Any]:
        from atso_med.data.readers import reorient_from_canonical

        case = {"id": item.get("id"), "image": item["image"], "series_uid": item.get("series_uid")}
        if self.with_truth and item.get("label"):
            case["truth"] = item["label"]
        data = self.preprocessing.load(case)
        if "truth" in data:
            # The original grid's mask (for the DSC of the written prediction) comes from the
            # canonical one before any resampling: a permutation / flip, exact.
            original = reorient_from_canonical(data["truth"], data["image_meta"]["ornt"])
            data["label"] = np.ascontiguousarray(original, dtype=bool)
        data = self.preprocessing.normalize(data)
        data.pop("series_uid")
        return data


class _VoteAccumulator:
    """Streams model sets' masks and probabilities into the ensemble vote (one set in memory at a time)."""

    def __init__(self, tie_threshold: float = 0.5) -> None:
        self.tie_threshold = float(tie_threshold)
        self.count = 0
        self._votes: np.ndarray | None = None
        self._sum: np.ndarray | None = None

    def add(self, mask: np.ndarray, probability: np.ndarray) -> None:
        mask, probability = np.asarray(mask), np.asarray(probability, dtype=np.float32)
        if mask.shape != probability.shape:
            raise GridMismatchError(f"mask shape {mask.shape} differs from probability shape {probability.shape}")
        if self._votes is None:
            self._votes = (mask != 0).astype(np.uint16)
            self._sum = probability.copy()
        else:
            if mask.shape != self._votes.shape:
                raise GridMismatchError(f"model sets disagree in shape: {mask.shape} vs {self._votes.shape}")
            self._votes += mask != 0
            self._sum += probability
        self.count += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self._votes is None or self._sum is None:
            raise ConfigError("ensemble_vote needs at least one model set")
        n = self.count
        mean = self._sum / np.float32(n)
        organ = 2 * self._votes.astype(np.int32) > n
        if n % 2 == 0:
            # A tie (half the sets each way) is decided by the sets' mean probability.
            organ |= (2 * self._votes.astype(np.int32) == n) & (mean >= self.tie_threshold)
        return organ.astype(np.uint8), mean.astype(np.float32, copy=False)


def ensemble_vote(
    masks: Sequence[np.ndarray], probabilities: Sequence[np.ndarray], tie_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the predictions of several model sets.

    A voxel is organ when more than half of the masks say so; with an even number of sets, a voxel
    with exactly half the votes is organ when the mean probability is >= ``tie_threshold``.

    Args:
        masks: one binary mask per set (non-zero = organ), all of one shape.
        probabilities: the matching probability maps.
        tie_threshold: mean probability that breaks a tie.

    Returns:
        ``(mask uint8, mean probability float32)``.

    Raises:
        ConfigError: no set, or counts that differ.
        GridMismatchError: shapes that differ.
    """
    if len(masks) != len(probabilities):
        raise ConfigError(f"{len(masks)} masks but {len(probabilities)} probability maps")
    vote = _VoteAccumulator(tie_threshold)
    for mask, probability in zip(masks, probabilities):
        vote.add(mask, probability)
    return vote.result()


class EnsembleInferer:
    """Coarse-to-fine inference of a whole canonical volume by one or several model sets, then the vote.

    Args:
        model_sets: ``[{plane: RSTN}, ...]`` (or one set, or anything :func:`load_model_sets`
            accepts).
        config: :class:`~atso_med.inferers.volume.InferenceConfig` (default: the reference's).
        device: where the networks run.
    """

    def __init__(self, model_sets: Any, config: Any = None, device: str | torch.device | None = None) -> None:
        from atso_med.inferers.volume import CoarseToFineInferer, InferenceConfig

        self.device = resolve_device(device)
        self.config = InferenceConfig() if config is None else config
        self.model_sets = load_model_sets(model_sets, self.device)
        self.inferers = [CoarseToFineInferer(models, self.config, self.device) for models in self.model_sets]

    def __call__(self, image: np.ndarray, truth: np.ndarray | None = None) -> dict[str, Any]:
        """Segment one windowed canonical volume.

        Returns:
            ``{"mask": uint8, "probability": float32, "sets": [{"planes", "rounds", "stopped_round"}, ...]}``.
        """
        if len(self.inferers) == 1:
            result = self.inferers[0](image, truth)
            mask, probability = result.mask, result.probability
            sets = [self._set_record(self.inferers[0], result)]
        else:
            vote, sets = _VoteAccumulator(), []
            for inferer in self.inferers:
                result = inferer(image, truth)
                vote.add(result.mask, result.probability)
                sets.append(self._set_record(inferer, result))
                del result
            mask, probability = vote.result()
        return {"mask": mask, "probability": probability, "sets": sets}

    @staticmethod
    def _set_record(inferer: Any, result: Any) -> dict[str, Any]:
        return {
            "planes": list(inferer.planes),
            "rounds": list(result.rounds),
            "stopped_round": int(result.stopped_round),
        }


class PredictionPostprocessing:
    """Put the inferer's mask and probability back on the input's own voxel grid.

    The long-axis resampling is undone first (mask: linear interpolation of the 0/1 mask, then
    >= 0.5, which keeps the inferer's fusion and clean-up; probability: linear), then the
    canonical reorientation (axis permutation / flips only).

    Raises:
        GridMismatchError: when the result does not have the input's shape (a broken invariant).
    """

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        from atso_med.data.readers import reorient_from_canonical
        from atso_med.transforms.spacing import LongAxisSpacing

        d = dict(data)
        meta = d["image_meta"]
        mask, probability = np.asarray(d["mask"]), np.asarray(d["probability"], dtype=np.float32)
        record = meta.get("long_axis_spacing")
        if record and int(record["slices"]) != int(record["original_slices"]):
            back = LongAxisSpacing(float(record["target_mm"]))
            slices = int(record["original_slices"])
            mask = back.inverse(mask.astype(np.float32), slices, mode="linear", threshold=0.5)
            probability = back.inverse(probability, slices, mode="linear")
        d["mask"] = np.ascontiguousarray(reorient_from_canonical(mask, meta["ornt"]), dtype=np.uint8)
        d["probability"] = np.ascontiguousarray(reorient_from_canonical(probability, meta["ornt"]), dtype=np.float32)
        if tuple(d["mask"].shape) != tuple(meta["shape"]):
            raise GridMismatchError(
                f"prediction shape {d['mask'].shape} differs from the input's {tuple(meta['shape'])} after inversion"
            )
        return d


def write_seg_nrrd(
    mask: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    name: str = "pancreas",
    color: Sequence[float] = PANCREAS_COLOR,
) -> Path:
    """Write a mask as a 3D Slicer segmentation (``.seg.nrrd``, LPS space) atomically, with ``slicerio``.

    Args:
        mask: binary mask indexed like the image (non-zero = organ).
        affine: the image's 4x4 voxel-to-RAS affine.
        path: output file, ending in ``.seg.nrrd``.
        name: segment name.
        color: segment colour, RGB in [0, 1].

    Returns:
        The path written.

    Raises:
        ConfigError: ``slicerio`` is not installed, or the name does not end in ``.seg.nrrd``.
    """
    _require_slicerio()
    import slicerio

    if not str(path).endswith(".seg.nrrd"):
        raise ConfigError(f"a 3D Slicer segmentation file must end in .seg.nrrd, got {path}")
    ijk_to_lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    segmentation = slicerio.create_segmentation(np.shape(mask), ijk_to_lps, dtype="uint8")
    segment = {"id": name, "name": name, "color": [float(c) for c in color], "terminology": _PANCREAS_TERMINOLOGY}
    slicerio.add_segment(segmentation, np.asarray(mask) != 0, segment)
    with atomic_write(path) as tmp:
        slicerio.write_segmentation(str(tmp), segmentation)
    return Path(path)


def write_prediction(
    mask: np.ndarray,
    affine: np.ndarray,
    output_path: str | os.PathLike,
    probability: np.ndarray | None = None,
    probability_path: str | os.PathLike | None = None,
    seg_nrrd_path: str | os.PathLike | None = None,
    qform: tuple[np.ndarray, int] | None = None,
) -> dict[str, str]:
    """Write a prediction that is already on the input's grid: mask NIfTI and optional extras.

    The mask is written last, so its existence marks a finished case (what resuming relies on).
    Every file is written atomically with the input's affine (qform = sform, code 1; or the
    input's own ``qform`` when it had one that differs).

    Returns:
        ``{"output": ..., "probability": ..., "seg_nrrd": ...}`` for the files written.
    """
    written = {}
    if probability_path is not None:
        if probability is None:
            raise ConfigError("a probability path was given without a probability map")
        written["probability"] = str(save_nifti(probability, affine, probability_path, dtype=np.float32, qform=qform))
    if seg_nrrd_path is not None:
        written["seg_nrrd"] = str(write_seg_nrrd(mask, affine, seg_nrrd_path))
    mask = (np.asarray(mask) != 0).astype(np.uint8)
    written["output"] = str(save_nifti(mask, affine, output_path, dtype=np.uint8, qform=qform))
    return written


def _run_case(
    data: Mapping[str, Any],
    inferer: EnsembleInferer,
    postprocessing: PredictionPostprocessing,
    paths: Mapping[str, Path | None],
) -> dict[str, Any]:
    """Infer, invert and write one preprocessed case; return its statistics."""
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
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, Mapping) and isinstance(loaded.get("cases"), Mapping):
                content = dict(loaded)
        except (OSError, json.JSONDecodeError):
            logger.warning("%s is unreadable; starting it anew", path)
    content["cases"] = {**content["cases"], str(stats["id"]): _json_ready(stats)}
    write_text_atomic(json.dumps(content, indent=2) + "\n", path)


def _naming_the_image(item: Mapping[str, Any], error: Exception) -> str:
    """The error's message, led by the case's image path unless it names it already."""
    text = str(error)
    return text if str(item["image"]) in text else f"{item['image']}: {text}"


class PredictionEngine:
    """Predict every case of a dataset into a folder: the bundle's ``evaluator`` (an engine with ``run()``).

    Outputs per case: ``<id>.nii.gz`` (uint8 mask), optionally ``<id>_probability.nii.gz``
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
    ) -> None:
        from atso_med.engines.training import as_bool

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
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise ConfigError(f"output folder {self.output_dir} is a file")
        _check_output_dir(self.output_dir, self.items)
        if self.save_seg_nrrd:
            _require_slicerio()
        self.results: list[dict[str, Any]] = []

    def paths(self, case_id: str) -> dict[str, Path | None]:
        """Output paths of one case."""
        return {
            "output": self.output_dir / f"{case_id}.nii.gz",
            "probability": self.output_dir / f"{case_id}_probability.nii.gz" if self.save_probability else None,
            "seg_nrrd": self.output_dir / f"{case_id}.seg.nrrd" if self.save_seg_nrrd else None,
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
                stats = _run_case(self._prepared(index), self.inferer, self.postprocessing, paths)
            except Exception as raised:  # noqa: BLE001 - only input errors are a failed case
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


# ---------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------


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
    hu_window: Sequence[float] = (-100.0, 240.0),
    foreground: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Segment one CT and write the mask on its own grid.

    Args:
        image_path: NIfTI file or DICOM series folder.
        models: one model set or a list of them (see :func:`load_model_sets`).
        output_path: mask NIfTI to write (``.nii.gz`` / ``.nii``).
        config: :class:`~atso_med.inferers.volume.InferenceConfig` (default: the reference's).
        device: torch device (default: ``cuda:0`` if available, else CPU).
        probability_path: also write the float32 probability map here.
        truth_path: a label of the image: its DSC is reported per round and for the final mask
            (it does not change the prediction).
        long_axis_spacing: resample the long axis to this slice spacing (mm) for inference.
        seg_nrrd_path: also write a 3D Slicer ``.seg.nrrd`` here (needs ``slicerio``).
        series_uid: series to read from a DICOM folder holding several.
        hu_window: HU window mapped to [0, 1].
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
    item: dict[str, Any] = {"id": _stem(Path(image_path)), "image": str(image_path)}
    if truth_path is not None:
        item["label"] = str(truth_path)
    if series_uid:
        item["series_uid"] = series_uid
    _check_image_header(Path(image_path))
    output_path = Path(output_path)
    _check_nifti_suffix(output_path, "output")
    _check_output_path(output_path, [item], "output")
    extras = {"probability": probability_path, "seg_nrrd": seg_nrrd_path}
    for what, path in extras.items():
        if path is None:
            continue
        if Path(path).resolve() == output_path.resolve():
            raise ConfigError(f"the {what} path {path} is the mask's output path")
        _check_output_path(Path(path), [item], what)
    if probability_path is not None:
        _check_nifti_suffix(Path(probability_path), "probability output")
    if seg_nrrd_path is not None:
        _require_slicerio()
        if not str(seg_nrrd_path).endswith(".seg.nrrd"):
            raise ConfigError(f"a 3D Slicer segmentation file must end in .seg.nrrd, got {seg_nrrd_path}")
    preprocessing = PredictionPreprocessing(
        hu_window=hu_window,
        long_axis_spacing=long_axis_spacing,
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
    return _run_case(data, inferer, PredictionPostprocessing(), paths)


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
    hu_window: Sequence[float] = (-100.0, 240.0),
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
        config: :class:`~atso_med.inferers.volume.InferenceConfig`.
        device: torch device.
        save_probability: also write ``<id>_probability.nii.gz``.
        save_seg_nrrd: also write ``<id>.seg.nrrd``.
        long_axis_spacing: long-axis slice spacing (mm) for inference.
        overwrite: predict again cases whose output exists (default: skip them).
        round_dsc: pass each item's label to the inferer to record per-round DSC (statistics only).
        hu_window: HU window mapped to [0, 1].
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
        hu_window=hu_window, long_axis_spacing=long_axis_spacing, with_truth=round_dsc, foreground=foreground
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
    )
    _check_output_dir(Path(output_dir), items)
    if save_seg_nrrd:
        _require_slicerio()
    engine = PredictionEngine(items, EnsembleInferer(models, config, device), **engine_args)
    return engine.run()
