"""The inputs of a prediction run: what ``input`` names, turned into data-list items.

``input`` may be a NIfTI file, a DICOM series folder, a folder of NIfTI files (one case each), a
``dataset.json`` (or a folder holding one), a MONAI data-list JSON or a list of items. Every image is
checked cheaply (exists, supported, NIfTI header readable and 3D) before any work, and all bad
inputs are named at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from atso_med.data.readers import check_image_path, is_nifti, nifti_stem, open_nifti
from atso_med.errors import ConfigError, DatasetError, ImageReadError

__all__ = ["check_image_header", "input_paths", "resolve_inputs"]


def check_image_header(path: Path) -> None:
    """Cheap checks of an input before any work: existence, format, NIfTI header (3D, affine).

    Args:
        path: a NIfTI file or a DICOM series folder.

    Raises:
        ImageReadError: a missing or unsupported path, or an unreadable / not-3D NIfTI header.
    """
    check_image_path(path)
    if path.is_dir():
        return  # DICOM series: read in full when the case is predicted
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
    from atso_med.data.datalist import datalist_items
    from atso_med.data.dataset import Dataset, dataset_file

    if isinstance(source, (str, os.PathLike)):
        if str(source) == "":
            raise ConfigError("no input given: a NIfTI file, a DICOM folder, a data list or a dataset.json")
        path = Path(source).expanduser()
        if not path.exists():
            raise ImageReadError(f"{path}: input does not exist")
        dataset_path = dataset_file(path)
        if dataset_path is not None:
            items = [
                {
                    "id": case.id,
                    "image": str(case.image),
                    **({"label": str(case.label)} if case.label else {}),
                    **({"series_uid": case.series_uid} if case.series_uid else {}),
                }
                for case in Dataset.load(dataset_path).cases
            ]
        elif path.is_file() and path.suffix.lower() == ".json":
            items = datalist_items(path, datalist_key)
        elif path.is_dir():
            niftis = sorted(p for p in path.iterdir() if p.is_file() and is_nifti(p))
            if niftis:
                items = [{"id": nifti_stem(p), "image": str(p.resolve())} for p in niftis]
            else:
                items = [{"id": path.resolve().name, "image": str(path.resolve())}]
        else:
            items = [{"id": nifti_stem(path), "image": str(path.resolve())}]
    else:
        items = [dict(item) for item in source]
    out = []
    for item in items:
        entry = dict(item)
        if not entry.get("image"):
            raise ConfigError(f"data-list item without an 'image': {entry!r}")
        entry.setdefault("id", nifti_stem(Path(entry["image"])))
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
                check_image_header(Path(entry["image"]))
            except ImageReadError as error:
                problems.append(f"{entry['id']}: {error}")
        if problems:
            raise ImageReadError(f"{len(problems)} input(s) unusable, nothing predicted:\n  " + "\n  ".join(problems))
    return out


def input_paths(item: Mapping) -> list[tuple[Path, bool]]:
    """``(path, is_folder)`` of every input of an item (image, label)."""
    paths = []
    for key in ("image", "label"):
        if item.get(key):
            path = Path(item[key]).resolve()
            paths.append((path, path.is_dir()))
    return paths
