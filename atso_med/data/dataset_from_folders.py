"""Turning folders (or lists) of CT images and labels into a ``dataset.json``.

:func:`build_dataset` writes a ``dataset.json`` for a folder (or list) of CT images, each a NIfTI
file or a DICOM series folder, and an optional folder (or list) of NIfTI labels matched to the
images by case id. The user's files are referenced where they are, never copied or modified.

Every problem found while planning (nothing found, a label without an image, two images for one
id, ...) is collected and raised as one :class:`~atso_med.errors.DatasetError` before anything is
written. The pieces an importer of a particular collection needs as well (finding DICOM folders,
checking and writing the ``dataset.json``) are public here; :mod:`atso_med.data.nih_pancreas`
builds on them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from atso_med.data.dataset import DATASET_FILE, Dataset
from atso_med.data.readers import is_nifti, nifti_stem
from atso_med.errors import ConfigError, DatasetError
from atso_med.files import write_text_atomic

__all__ = [
    "DEFAULT_LABELS",
    "IdFrom",
    "build_dataset",
    "check_dataset_output",
    "find_dicom_folders",
    "listing",
    "relative_path",
    "write_dataset_json",
]

#: Class map written when none is given: binary pancreas segmentation.
DEFAULT_LABELS: dict[str, str] = {"0": "background", "1": "pancreas"}

#: How a case id is read from a file or folder: ``None`` (the number in the name), a regular
#: expression searched in the name, or a function of the path.
IdFrom = str | re.Pattern[str] | Callable[[Path], str] | None

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# How many entries a message lists before it says "and N more".
_SHOW = 8


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


def _is_nifti_file(path: Path) -> bool:
    return path.is_file() and is_nifti(path)


def _looks_like_dicom(path: Path) -> bool:
    # The 128-byte preamble + "DICM" marker is cheap to test; a full header parse of every file of
    # 80 series would take minutes. Bare ".dcm" files without the marker are accepted by suffix.
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def find_dicom_folders(root: str | os.PathLike) -> list[Path]:
    """Folders at or below ``root`` that directly hold at least one DICOM file.

    Files are recognised by the ``DICM`` marker of the DICOM file format or a ``.dcm`` suffix;
    only the first file found per folder is needed, so large trees are scanned quickly.

    Args:
        root: folder to search (recursively; hidden entries are skipped).

    Returns:
        The folders, sorted; empty when none holds DICOM files or ``root`` is not a folder.
    """
    found: list[Path] = []
    base = Path(root)
    if not base.is_dir():
        return found
    for folder, subfolders, files in os.walk(base):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and _looks_like_dicom(Path(folder) / name):
                found.append(Path(folder))
                break
    return sorted(found)


def listing(items: Sequence[object]) -> str:
    """The first few items, comma-separated, and how many more there are (for error messages).

    Args:
        items: what to list.

    Returns:
        ``"a, b, c"``, or ``"a, ..., h and 4 more"`` beyond eight items.
    """
    shown = ", ".join(str(i) for i in items[:_SHOW])
    return shown + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


@dataclass
class _Entry:
    """One image or label found: its path, the name ids are read from, and the id."""

    path: Path
    name: str
    key: str | None = None


def _discover(
    source: str | os.PathLike | Sequence,
    what: str,
    glob: str,
    problems: list[str],
    in_folder: Callable[[Path], _Entry | None],
    listed: Callable[[Path], _Entry | str],
    none_found: Callable[[Path], str],
) -> list[_Entry]:
    """Images or labels from a folder (its visible entries matching ``glob``) or an explicit list.

    Args:
        source: the folder, or the list of paths.
        what: ``"image"`` or ``"label"``, for messages.
        glob: pattern the names of the folder's entries must match.
        problems: what is wrong is appended here.
        in_folder: the entry for a folder's child, or ``None`` when the child is not one.
        listed: the entry for an existing listed path, or the problem with it.
        none_found: the problem to note when a folder holds no entry.

    Returns:
        The entries found.
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source).expanduser()
        if not root.is_dir():
            problems.append(f"{what}s folder {'is not a folder' if root.exists() else 'not found'}: {root}")
            return []
        children = [c for c in sorted(root.iterdir()) if not c.name.startswith(".") and c.match(glob)]
        entries = [entry for entry in map(in_folder, children) if entry is not None]
        if not entries:
            problems.append(none_found(root))
        return entries
    entries = []
    for item in source:
        path = Path(item).expanduser()
        found = listed(path) if path.exists() else f"{what} not found: {path}"
        if isinstance(found, str):
            problems.append(found)
        else:
            entries.append(found)
    return entries


def _image_in_folder(child: Path) -> _Entry | None:
    if _is_nifti_file(child):
        return _Entry(child, nifti_stem(child))
    series = find_dicom_folders(child) if child.is_dir() else []
    if not series:
        return None
    # One folder of DICOM files is referenced directly; a case folder holding several is
    # referenced whole and the reader picks (or lists) the CT series in it.
    return _Entry(series[0] if len(series) == 1 else child, child.name)


def _listed_image(path: Path) -> _Entry | str:
    if _is_nifti_file(path):
        return _Entry(path, nifti_stem(path))
    if not path.is_dir():
        return f"image is neither a .nii / .nii.gz file nor a DICOM folder: {path}"
    return _Entry(path, path.name) if find_dicom_folders(path) else f"image folder holds no DICOM files: {path}"


def _no_images(glob: str) -> Callable[[Path], str]:
    def message(root: Path) -> str:
        hint = ""
        if any(_looks_like_dicom(f) for f in root.iterdir() if f.is_file()):
            hint = (
                "; the folder itself holds DICOM files: pass its parent folder (one sub-folder per case) "
                "or a list holding this folder"
            )
        glob_note = f" matching {glob!r}" if glob != "*" else ""
        return (
            f"no images found in {root}: expected .nii / .nii.gz files or folders holding a DICOM series "
            f"(one per case){glob_note}{hint}"
        )

    return message


def _discover_images(images: str | os.PathLike | Sequence, glob: str, problems: list[str]) -> list[_Entry]:
    """Images from a folder (NIfTI files and DICOM folders directly inside) or an explicit list."""
    entries = _discover(images, "image", glob, problems, _image_in_folder, _listed_image, _no_images(glob))
    if not entries and not problems:
        problems.append("no images given (the list is empty)")
    return entries


def _label_in_folder(child: Path) -> _Entry | None:
    return _Entry(child, nifti_stem(child)) if _is_nifti_file(child) else None


def _listed_label(path: Path) -> _Entry | str:
    return _label_in_folder(path) or f"label is not a .nii / .nii.gz file: {path}"


def _discover_labels(labels: str | os.PathLike | Sequence, glob: str, problems: list[str]) -> list[_Entry]:
    """Labels from a folder (NIfTI files directly inside) or an explicit list of NIfTI files."""
    glob_note = f" matching {glob!r}" if glob != "*" else ""

    def none_found(root: Path) -> str:
        return f"no labels found in {root}: expected .nii / .nii.gz files{glob_note}"

    return _discover(labels, "label", glob, problems, _label_in_folder, _listed_label, none_found)


def _key_function(id_from: IdFrom) -> Callable[[_Entry], str]:
    """Turn ``id_from`` into a function entry -> key, raising ValueError with the reason."""
    if id_from is None:

        def digits(entry: _Entry) -> str:
            runs = re.findall(r"\d+", entry.name)
            if len(runs) != 1:
                what = "no number" if not runs else f"several numbers ({', '.join(runs)})"
                raise ValueError(f"{entry.name!r} holds {what}; pass id_from to say how its case id is read")
            # As numbers, so that PANCREAS_0001 matches label1 as well as label0001.
            return str(int(runs[0]))

        return digits
    if isinstance(id_from, (str, re.Pattern)):
        try:
            pattern = re.compile(id_from)
        except re.error as error:
            raise ConfigError(f"id_from: invalid regular expression {id_from!r}: {error}") from error

        def by_pattern(entry: _Entry) -> str:
            match = pattern.search(entry.name)
            if match is None:
                raise ValueError(f"{entry.name!r} does not match id_from {pattern.pattern!r}")
            if "id" in pattern.groupindex:
                value = match.group("id")
            else:
                value = match.group(1) if pattern.groups else match.group(0)
            if not value:
                raise ValueError(f"id_from {pattern.pattern!r} reads an empty id from {entry.name!r}")
            return value

        return by_pattern
    if callable(id_from):

        def by_function(entry: _Entry) -> str:
            value = id_from(entry.path)
            if not isinstance(value, str) or not value:
                raise ValueError(f"id_from returned {value!r} for {entry.path}; it must return a non-empty string")
            return value

        return by_function
    raise ConfigError(f"id_from must be None, a regular expression or a function of the path, got {id_from!r}")


def relative_path(path: Path, base: Path) -> str:
    """The path a ``dataset.json`` in ``base`` records for ``path``.

    Args:
        path: a file or folder the dataset refers to.
        base: the folder of the ``dataset.json`` (resolved).

    Returns:
        ``path`` relative to ``base`` (with ``..`` where needed) when the two share a folder below
        the file-system root; absolute otherwise (``../../../data/x`` from a temp folder helps
        nobody).
    """
    target = path.resolve()
    try:
        common = Path(os.path.commonpath([target, base]))
    except ValueError:  # another drive on Windows
        return str(target)
    if common == Path(common.anchor):
        return str(target)
    return Path(os.path.relpath(target, base)).as_posix()


def _output_file(out_json: str | os.PathLike) -> Path:
    file = Path(out_json).expanduser()
    if file.is_dir():
        file = file / DATASET_FILE
    return file


def check_dataset_output(file: Path, overwrite: bool, inputs: Sequence[Path], problems: list[str]) -> None:
    """Note what forbids writing the ``dataset.json`` ``file`` (checked before anything is written).

    Args:
        file: the ``dataset.json`` to write.
        overwrite: whether an existing file may be replaced.
        inputs: the files being imported, none of which may be replaced.
        problems: what is wrong is appended here: not a ``.json`` name, an existing file
            without ``overwrite``, or one of the inputs.
    """
    if file.suffix.lower() != ".json":
        problems.append(f"output must be a .json file (or a folder), got {file}")
    if file.exists() and not overwrite:
        problems.append(f"{file} already exists (it may have been edited by hand); pass overwrite=True to replace it")
    resolved = file.resolve()
    if any(resolved == p.resolve() for p in inputs):
        problems.append(f"output {file} is one of the input files")


def write_dataset_json(data: dict, file: Path) -> Dataset:
    """Validate the JSON form of a dataset, write it atomically and read it back as any user would.

    Args:
        data: the ``dataset.json`` content.
        file: where to write it.

    Returns:
        The dataset as read back from ``file``.

    Raises:
        DatasetError: ``data`` is not a valid dataset (nothing is written then).
    """
    Dataset.from_dict(data, root=file.parent.resolve(), source=str(file))
    write_text_atomic(json.dumps(data, indent=2) + "\n", file)
    return Dataset.load(file)


def _labels_json(labels_map: Mapping | None) -> dict[str, str]:
    source = DEFAULT_LABELS if labels_map is None else labels_map
    if not isinstance(source, Mapping):
        raise ConfigError(f"labels_map must map class values to names, got {type(source).__name__}")
    return {str(k): v for k, v in source.items()}


# --------------------------------------------------------------------------------------------
# build_dataset
# --------------------------------------------------------------------------------------------


def build_dataset(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    labels: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    out_json: str | os.PathLike,
    name: str,
    labels_map: Mapping[str | int, str] | None = None,
    id_from: IdFrom = None,
    image_glob: str = "*",
    label_glob: str = "*",
    overwrite: bool = False,
) -> Dataset:
    """Write a ``dataset.json`` for a folder of CT images and an optional folder of labels.

    Images are found directly inside ``images``: every ``.nii`` / ``.nii.gz`` file, and every
    sub-folder holding DICOM files anywhere below it (one sub-folder per case, e.g. TCIA's
    ``PANCREAS_0001/<study>/<series>/``). Labels are the ``.nii`` / ``.nii.gz`` files directly
    inside ``labels``. Either may instead be a list of paths (NIfTI files or DICOM folders for
    images, NIfTI files for labels) when the files do not sit in one folder.

    An image and a label belong together when the same id is read from both names (the name of
    a file without ``.nii`` / ``.nii.gz``; for DICOM, the case folder's name). ``id_from`` says
    how; by default the number in the name is used, so ``PANCREAS_0001`` matches
    ``label0001.nii.gz`` (and ``label1.nii.gz``). Images without a label become unlabeled cases.
    Paths in the written file are relative to its folder (with ``..`` where needed), so the data
    and the file can move together; absolute where the two share no folder below the file-system
    root.

    Args:
        images: folder of images, or a list of image paths.
        labels: folder of labels, a list of label paths, or ``None`` (all cases unlabeled).
        out_json: the ``dataset.json`` to write (or a folder, then ``dataset.json`` in it).
        name: dataset name.
        labels_map: class value -> class name; default ``{"0": "background", "1": "pancreas"}``.
        id_from: how a case id is read from a name. ``None``: the name's only run of digits,
            compared as a number; the case keeps the image's name as its id. A regular
            expression (string or compiled): searched in the name; the group named ``id``, else
            group 1, else the whole match is the id. A function: called with the image's or
            label's path, returns the id. With a regular expression or a function the id read
            from the image is the case id.
        image_glob: only entries of the images folder whose names match this pattern.
        label_glob: only files of the labels folder whose names match this pattern (useful when
            images and labels share one folder).
        overwrite: replace an existing ``out_json``.

    Returns:
        The dataset as read back from the written file.

    Raises:
        DatasetError: nothing found; a name without a readable id; two images or two labels with
            one id; a label without an image; a file that is both an image and a label; an
            invalid name, label map or case id; ``out_json`` exists (without ``overwrite``) or is
            an input. Every problem is listed, and nothing is written.
        ConfigError: ``id_from`` or ``labels_map`` is not of a usable kind.
    """
    file = _output_file(out_json)
    key_of = _key_function(id_from)
    label_json = _labels_json(labels_map)
    problems: list[str] = []

    image_entries = _discover_images(images, image_glob, problems)
    label_entries = _discover_labels(labels, label_glob, problems) if labels is not None else []

    shared = {e.path.resolve() for e in image_entries} & {e.path.resolve() for e in label_entries}
    if shared:
        problems.append(
            f"file(s) found both as image and as label: {listing(sorted(map(str, shared)))}; "
            "use image_glob / label_glob (or separate folders) to tell them apart"
        )
    for entry in image_entries + label_entries:
        try:
            entry.key = key_of(entry)
        except ValueError as error:
            problems.append(str(error))

    images_by_key: dict[str, list[_Entry]] = {}
    for entry in image_entries:
        if entry.key is not None:
            images_by_key.setdefault(entry.key, []).append(entry)
    labels_by_key: dict[str, list[_Entry]] = {}
    for entry in label_entries:
        if entry.key is not None:
            labels_by_key.setdefault(entry.key, []).append(entry)
    for what, groups in (("images", images_by_key), ("labels", labels_by_key)):
        for key, group in sorted(groups.items()):
            if len(group) > 1:
                problems.append(
                    f"ambiguous: {len(group)} {what} have case id {key!r}: {listing([str(e.path) for e in group])}"
                )
    orphans = sorted(key for key in labels_by_key if key not in images_by_key)
    if orphans:
        problems.append(
            "label(s) without an image: " + listing([f"{labels_by_key[k][0].path} (id {k!r})" for k in orphans])
        )
    check_dataset_output(file, overwrite, [e.path for e in image_entries + label_entries], problems)
    if problems:
        raise DatasetError(f"cannot build {file}:\n  - " + "\n  - ".join(problems))

    base = file.parent.resolve()
    cases = []
    for entry in image_entries:
        if id_from is None:
            # The default reads a number only for matching: the image's own name is the better id
            # (PANCREAS_0001, not 1); characters unsafe in a file name become "_".
            case_id = _UNSAFE.sub("_", entry.name).strip("._-") or entry.key
        else:
            case_id = entry.key
        case = {"id": case_id, "image": relative_path(entry.path, base)}
        label = labels_by_key.get(entry.key)
        if label:
            case["label"] = relative_path(label[0].path, base)
        cases.append(case)
    cases.sort(key=lambda c: c["id"])
    data = {"name": name, "labels": label_json, "cases": cases}
    return write_dataset_json(data, file)  # a bad name, label map or id is refused before writing
