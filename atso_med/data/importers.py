"""Turning folders of CT images and labels into a ``dataset.json``, and importing NIH Pancreas-CT.

Two entry points:

* :func:`build_dataset` writes a ``dataset.json`` for a folder (or list) of CT images, each a
  NIfTI file or a DICOM series folder, and an optional folder (or list) of NIfTI labels matched
  to the images by case id. The user's files are referenced where they are, never copied or
  modified.
* :func:`import_nih_pancreas` does the same for the NIH Pancreas-CT collection as TCIA
  distributes it, whose labels cannot be used as they are: their voxel order follows the DICOM
  InstanceNumber and their NIfTI header does not describe the DICOM geometry. Each label is
  therefore rewritten onto its image's voxel grid (see :func:`import_nih_pancreas` for the exact
  convention assumed) into a new folder; the originals are only read.

Every problem found while planning (nothing found, a label without an image, two images for one
id, a label whose shape does not fit its series, ...) is collected and raised as one
:class:`~atso_med.errors.DatasetError` before anything is written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from atso_med.data.dataset import DATASET_FILE, Dataset
from atso_med.data.labels import check_label_values
from atso_med.data.nifti import save_nifti
from atso_med.data.readers import is_nifti, nifti_stem
from atso_med.errors import AtsoMedError, ConfigError, DatasetError, ImageReadError, LabelValueError
from atso_med.files import write_text_atomic

__all__ = [
    "DEFAULT_LABELS",
    "NIH_DUPLICATES",
    "NIH_LABEL_INPLANE",
    "IdFrom",
    "build_dataset",
    "find_dicom_folders",
    "import_nih_pancreas",
]

#: Class map written when none is given: binary pancreas segmentation.
DEFAULT_LABELS: dict[str, str] = {"0": "background", "1": "pancreas"}

#: NIH Pancreas-CT case numbers that TCIA removed as duplicates of another case (25 and 70 are
#: both case 2). The label archive still holds label0025 / label0070.
NIH_DUPLICATES: dict[int, int] = {25: 2, 70: 2}

#: How NIH labels store the two in-plane axes; see :func:`import_nih_pancreas`.
NIH_LABEL_INPLANE = "column-row"
_INPLANE_CHOICES = ("column-row", "row-column")

#: How a case id is read from a file or folder: ``None`` (the number in the name), a regular
#: expression searched in the name, or a function of the path.
IdFrom = str | re.Pattern[str] | Callable[[Path], str] | None

_NIH_CASE = re.compile(r"^PANCREAS_(\d+)$", re.IGNORECASE)
_NIH_LABEL = re.compile(r"^label(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# How many entries a message lists before it says "and N more".
_SHOW = 8


# --------------------------------------------------------------------------------------------
# Discovery helpers
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


def _listing(items: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in items[:_SHOW])
    return shown + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


@dataclass
class _Entry:
    """One image or label found: its path, the name ids are read from, and the id."""

    path: Path
    name: str
    key: str | None = None


def _folder_entries(root: Path, what: str, glob: str, problems: list[str]) -> list[Path] | None:
    """The visible entries of an images or labels folder that match ``glob``; ``None`` (and a
    problem noted) when there is no such folder."""
    if not root.is_dir():
        problems.append(f"{what} folder {'is not a folder' if root.exists() else 'not found'}: {root}")
        return None
    return [child for child in sorted(root.iterdir()) if not child.name.startswith(".") and child.match(glob)]


def _discover_images(images: str | os.PathLike | Sequence, glob: str, problems: list[str]) -> list[_Entry]:
    """Images from a folder (NIfTI files and DICOM folders directly inside) or an explicit list."""
    entries: list[_Entry] = []
    if isinstance(images, (str, os.PathLike)):
        root = Path(images).expanduser()
        children = _folder_entries(root, "images", glob, problems)
        if children is None:
            return entries
        for child in children:
            if _is_nifti_file(child):
                entries.append(_Entry(child, nifti_stem(child)))
            elif child.is_dir():
                series = find_dicom_folders(child)
                if series:
                    # One folder of DICOM files is referenced directly; a case folder holding several
                    # is referenced whole and the reader picks (or lists) the CT series in it.
                    entries.append(_Entry(series[0] if len(series) == 1 else child, child.name))
        if not entries:
            hint = ""
            if any(_looks_like_dicom(f) for f in root.iterdir() if f.is_file()):
                hint = (
                    "; the folder itself holds DICOM files: pass its parent folder (one sub-folder per case) "
                    "or a list holding this folder"
                )
            glob_note = f" matching {glob!r}" if glob != "*" else ""
            problems.append(
                f"no images found in {root}: expected .nii / .nii.gz files or folders holding a DICOM series "
                f"(one per case){glob_note}{hint}"
            )
        return entries
    for item in images:
        path = Path(item).expanduser()
        if not path.exists():
            problems.append(f"image not found: {path}")
        elif _is_nifti_file(path):
            entries.append(_Entry(path, nifti_stem(path)))
        elif path.is_dir():
            if find_dicom_folders(path):
                entries.append(_Entry(path, path.name))
            else:
                problems.append(f"image folder holds no DICOM files: {path}")
        else:
            problems.append(f"image is neither a .nii / .nii.gz file nor a DICOM folder: {path}")
    if not entries and not problems:
        problems.append("no images given (the list is empty)")
    return entries


def _discover_labels(labels: str | os.PathLike | Sequence, glob: str, problems: list[str]) -> list[_Entry]:
    """Labels from a folder (NIfTI files directly inside) or an explicit list of NIfTI files."""
    entries: list[_Entry] = []
    if isinstance(labels, (str, os.PathLike)):
        root = Path(labels).expanduser()
        children = _folder_entries(root, "labels", glob, problems)
        if children is None:
            return entries
        entries = [_Entry(child, nifti_stem(child)) for child in children if _is_nifti_file(child)]
        if not entries:
            glob_note = f" matching {glob!r}" if glob != "*" else ""
            problems.append(f"no labels found in {root}: expected .nii / .nii.gz files{glob_note}")
        return entries
    for item in labels:
        path = Path(item).expanduser()
        if not path.exists():
            problems.append(f"label not found: {path}")
        elif not _is_nifti_file(path):
            problems.append(f"label is not a .nii / .nii.gz file: {path}")
        else:
            entries.append(_Entry(path, nifti_stem(path)))
    return entries


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


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (with ``..`` where needed) when they share a folder below the
    file system root; absolute otherwise (``../../../data/x`` from a temp folder helps nobody)."""
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


def _check_output(file: Path, overwrite: bool, inputs: Sequence[Path], problems: list[str]) -> None:
    if file.suffix.lower() != ".json":
        problems.append(f"output must be a .json file (or a folder), got {file}")
    if file.exists() and not overwrite:
        problems.append(f"{file} already exists (it may have been edited by hand); pass overwrite=True to replace it")
    resolved = file.resolve()
    if any(resolved == p.resolve() for p in inputs):
        problems.append(f"output {file} is one of the input files")


def _write_dataset(data: dict, file: Path) -> Dataset:
    """Validate the JSON form, write it atomically and read it back as any user would."""
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
            f"file(s) found both as image and as label: {_listing(sorted(map(str, shared)))}; "
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
                    f"ambiguous: {len(group)} {what} have case id {key!r}: {_listing([str(e.path) for e in group])}"
                )
    orphans = sorted(key for key in labels_by_key if key not in images_by_key)
    if orphans:
        problems.append(
            "label(s) without an image: " + _listing([f"{labels_by_key[k][0].path} (id {k!r})" for k in orphans])
        )
    _check_output(file, overwrite, [e.path for e in image_entries + label_entries], problems)
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
        case = {"id": case_id, "image": _relative(entry.path, base)}
        label = labels_by_key.get(entry.key)
        if label:
            case["label"] = _relative(label[0].path, base)
        cases.append(case)
    cases.sort(key=lambda c: c["id"])
    data = {"name": name, "labels": label_json, "cases": cases}
    return _write_dataset(data, file)  # a bad name, label map or id is refused before writing


# --------------------------------------------------------------------------------------------
# NIH Pancreas-CT
# --------------------------------------------------------------------------------------------


@dataclass
class _NihCase:
    """Everything planned for one NIH case before anything is written."""

    number: int
    case_id: str
    series: Path | None = None
    series_uid: str | None = None
    label: Path | None = None
    affine: np.ndarray | None = None
    # label slice index (InstanceNumber rank) for each image slice k (position order)
    label_slice_of: list[int] = field(default_factory=list)


def _nih_case_folders(dicom_root: Path, problems: list[str]) -> tuple[Path, dict[int, list[Path]]]:
    """The PANCREAS_XXXX folders under ``dicom_root`` (or its ``Pancreas-CT`` sub-folder), by number."""
    if not dicom_root.is_dir():
        problems.append(f"DICOM root {'is not a folder' if dicom_root.exists() else 'not found'}: {dicom_root}")
        return dicom_root, {}

    def scan(folder: Path) -> dict[int, list[Path]]:
        out: dict[int, list[Path]] = {}
        for child in sorted(folder.iterdir()):
            match = _NIH_CASE.match(child.name)
            if match and child.is_dir():
                out.setdefault(int(match.group(1)), []).append(child)
        return out

    folders = scan(dicom_root)
    if not folders and (dicom_root / "Pancreas-CT").is_dir():
        # TCIA's downloader puts the collection in <manifest>/Pancreas-CT/.
        dicom_root = dicom_root / "Pancreas-CT"
        folders = scan(dicom_root)
    if not folders:
        problems.append(
            f"no NIH case folders found in {dicom_root}: expected PANCREAS_0001, PANCREAS_0002, ... "
            "(the Pancreas-CT folder of the TCIA download, or the folder holding it)"
        )
    return dicom_root, folders


def _nih_labels(label_root: Path, problems: list[str]) -> dict[int, list[Path]]:
    if not label_root.is_dir():
        problems.append(f"label root {'is not a folder' if label_root.exists() else 'not found'}: {label_root}")
        return {}
    out: dict[int, list[Path]] = {}
    for child in sorted(label_root.iterdir()):
        match = _NIH_LABEL.match(child.name)
        if match and child.is_file():
            out.setdefault(int(match.group(1)), []).append(child)
    if not out:
        problems.append(f"no NIH labels found in {label_root}: expected label0001.nii.gz, label0002.nii.gz, ...")
    return out


def _nifti_shape(path: Path) -> tuple[int, ...]:
    """Shape of a NIfTI file from its header, trailing singleton axes dropped."""
    try:
        shape = tuple(int(s) for s in nib.load(str(path)).shape)
    except Exception as error:  # nibabel raises many types for damaged files
        raise ImageReadError(f"{path}: cannot read the NIfTI header ({type(error).__name__}: {error})") from error
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _plan_geometry(case: _NihCase, inplane: str) -> None:
    """Read the series headers: grid, affine and the InstanceNumber -> position-order map.

    Raises:
        AtsoMedError: the series cannot be read or placed, its InstanceNumbers are not unique, or
            the label's shape does not fit the series.
    """
    from atso_med.data.dicom import check_series_geometry, list_dicom_series, select_series

    series = list_dicom_series(case.series)
    ct = [s for s in series if s.modality == "CT"]
    # select_series is asked only when there is no single CT series: it raises with the listing.
    info = ct[0] if len(ct) == 1 else select_series(case.series)
    geometry = check_series_geometry(info.headers)
    numbers = []
    for header in info.headers:
        value = header.get("InstanceNumber")
        try:
            numbers.append(int(value))
        except (TypeError, ValueError):
            raise DatasetError(
                f"{case.series}: a slice has no usable InstanceNumber ({value!r}); NIH labels are ordered by it"
            ) from None
    if len(set(numbers)) != len(numbers):
        raise DatasetError(f"{case.series}: InstanceNumbers repeat, so the label's slice order is ambiguous")
    # The label's slice m is the slice of rank m by InstanceNumber (InstanceNumber - 1 in NIH,
    # where numbers run 1..N; the rank also copes with numbering that does not start at 1).
    rank = {header_index: m for m, header_index in enumerate(np.argsort(numbers, kind="stable"))}
    case.label_slice_of = [int(rank[h]) for h in geometry.order]
    case.affine = geometry.affine_ras
    if len(series) > 1 and info.series_uid:
        case.series_uid = info.series_uid
    if case.label is not None:
        columns, rows, n = geometry.shape
        stored = _nifti_shape(case.label)
        fits = {"column-row": (columns, rows, n), "row-column": (rows, columns, n)}
        if stored != fits[inplane]:
            other = [name for name, shape in fits.items() if shape == stored]
            hint = f"; it fits label_inplane={other[0]!r}" if other else ""
            raise DatasetError(
                f"{case.label}: label shape {stored} does not fit the series {case.series} ({columns} columns "
                f"x {rows} rows x {n} slices; expected {fits[inplane]} for label_inplane={inplane!r}){hint}"
            )


def _convert_label(case: _NihCase, inplane: str, out: Path) -> None:
    """Reorder one NIH label onto its image's grid and write it with the image's affine."""
    image = nib.load(str(case.label))
    data = np.asanyarray(image.dataobj)
    data = data.reshape(data.shape[:3])
    check_label_values(data, case.label)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise LabelValueError(f"{case.label}: label values {low:g}..{high:g} do not fit 0..255 (uint8)")
    if inplane == "row-column":
        data = data.transpose(1, 0, 2)
    # Now data[column, row, m] with m the InstanceNumber rank; the image is indexed
    # (column, row, k) with k the position order, so only the slices are permuted.
    converted = np.ascontiguousarray(data[:, :, case.label_slice_of]).astype(np.uint8)
    save_nifti(converted, case.affine, out, dtype=np.uint8)


def import_nih_pancreas(
    dicom_root: str | os.PathLike,
    label_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    keep_duplicates: bool = False,
    label_inplane: str = NIH_LABEL_INPLANE,
    name: str = "nih-pancreas-ct",
    allow_missing_images: bool = False,
    overwrite: bool = False,
) -> Dataset:
    """Import NIH Pancreas-CT (TCIA): labels put on their images' grids, and a ``dataset.json``.

    Expected layout (TCIA download; ``dicom_root`` may be the ``Pancreas-CT`` folder or the
    folder holding it)::

        Pancreas-CT/PANCREAS_0001/<study>/<series>/1-001.dcm ...
        <label_root>/label0001.nii.gz ...

    The DICOM series are referenced where they are. Each label is converted and written to
    ``out_dir/labels/label00XX.nii.gz`` with the image's affine (uint8), and
    ``out_dir/dataset.json`` lists the cases (ids ``PANCREAS_00XX``).

    Label convention assumed (the raw voxel array is used; the label's NIfTI header is ignored
    because it does not describe the DICOM geometry):

    * slices: label slice ``m`` belongs to the DICOM slice whose InstanceNumber has rank ``m``
      (``InstanceNumber - 1`` for NIH's numbering from 1). The image's slices are ordered by
      ImagePositionPatient along the slice normal, so the label's slices are permuted to that
      order (for NIH usually a reversal).
    * in-plane (``label_inplane``): ``"column-row"`` (default) means label axis 0 runs along a
      DICOM row (it indexes columns, x) and axis 1 indexes rows (y): the transpose of pydicom's
      ``pixel_array[row, column]``. That is why the reference implementations, which stack
      ``pixel_array`` slices, transpose NIH labels with ``(1, 0, 2)``. Images read here are
      indexed ``(column, row, slice)`` like NIfTI, so under this convention the label needs no
      in-plane transpose here: both put ``label[c, r]`` on the pixel of row ``r``, column
      ``c``. ``"row-column"`` is for labels stored like ``pixel_array``. NIH slices are 512 x 512,
      so the shape cannot tell the two apart: look at the overlays after importing.

    Cases 25 and 70 were removed from TCIA as duplicates of case 2; they are skipped with a
    printed note unless ``keep_duplicates`` (then they are imported when their images exist).

    Args:
        dicom_root: the ``Pancreas-CT`` folder, or the folder holding it.
        label_root: folder holding ``label00XX.nii.gz``.
        out_dir: output folder (created if needed); must not be ``label_root``'s parent such
            that converted labels would replace the originals.
        keep_duplicates: import cases 25 and 70 too.
        label_inplane: ``"column-row"`` (NIH) or ``"row-column"``, see above.
        name: dataset name.
        allow_missing_images: skip labels whose case folder is absent (a partial download),
            with a note, instead of raising.
        overwrite: replace an existing ``out_dir/dataset.json``.

    Returns:
        The dataset as read back from ``out_dir/dataset.json``.

    Raises:
        ConfigError: ``label_inplane`` is not one of the two conventions.
        DatasetError: no case folders or labels; a case folder without DICOM files or with
            several series folders; two folders or labels for one number; a label without an
            image; a series that cannot be placed (listed per case); a label whose shape does
            not fit its series; outputs that would replace inputs; an existing dataset.json.
            Every problem is listed, and nothing is written.
        LabelValueError: a label holds values that are not integers in 0..255 (found while
            converting; the labels converted before it are kept, dataset.json is not written).
    """
    if label_inplane not in _INPLANE_CHOICES:
        raise ConfigError(f"label_inplane must be one of {', '.join(_INPLANE_CHOICES)}, got {label_inplane!r}")
    dicom_root, label_root = Path(dicom_root).expanduser(), Path(label_root).expanduser()
    out = Path(out_dir).expanduser()
    problems: list[str] = []
    notes: list[str] = []
    dicom_root, folders = _nih_case_folders(dicom_root, problems)
    label_files = _nih_labels(label_root, problems)
    for what, groups in (("case folders", folders), ("labels", label_files)):
        for number, paths in sorted(groups.items()):
            if len(paths) > 1:
                listed = _listing([str(p) for p in paths])
                problems.append(f"ambiguous: {len(paths)} {what} for case {number}: {listed}")

    cases: list[_NihCase] = []
    for number in sorted(set(folders) | set(label_files)):
        folder = folders.get(number, [None])[0]
        label = label_files.get(number, [None])[0]
        case_id = folder.name if folder is not None else f"PANCREAS_{number:04d}"
        if number in NIH_DUPLICATES and not keep_duplicates:
            notes.append(
                f"skipping case {number} (PANCREAS_{number:04d}{', label ' + label.name if label else ''}): "
                f"TCIA removed it as a duplicate of case {NIH_DUPLICATES[number]}; keep_duplicates=True keeps it"
            )
            continue
        if folder is None:
            if number in NIH_DUPLICATES or allow_missing_images:
                notes.append(f"skipping {label.name}: no image folder PANCREAS_{number:04d} in {dicom_root}")
            else:
                problems.append(
                    f"label without an image: {label} (no folder PANCREAS_{number:04d} in {dicom_root}; "
                    "allow_missing_images=True skips such labels)"
                )
            continue
        case = _NihCase(number=number, case_id=case_id, label=label)
        series = find_dicom_folders(folder)
        if not series:
            problems.append(f"{case_id}: no DICOM files in {folder}")
            continue
        if len(series) > 1:
            problems.append(
                f"{case_id}: {len(series)} folders hold DICOM files ({_listing([str(s) for s in series])}); "
                "NIH cases have one series: remove the others or use build_dataset"
            )
            continue
        case.series = series[0]
        if label is None:
            notes.append(f"{case_id}: no label{number:04d}.nii.gz; it enters as an unlabeled case")
        cases.append(case)

    out_labels = out / "labels"
    out_file = out / DATASET_FILE
    originals = {p.resolve() for paths in label_files.values() for p in paths}
    clashes = [c.label for c in cases if c.label is not None and (out_labels / _label_name(c)).resolve() in originals]
    if clashes:
        problems.append(
            f"out_dir {out} would overwrite original labels ({_listing([str(p) for p in clashes])}); "
            "choose another out_dir"
        )
    _check_output(out_file, overwrite, sorted(originals), problems)
    if not problems and not cases:
        problems.append("no case left to import")

    # Read every series' headers before writing anything: a bad series is reported with all others.
    if not problems:
        for case in cases:
            try:
                _plan_geometry(case, label_inplane)
            except AtsoMedError as error:
                problems.append(f"{case.case_id}: " + str(error).replace("\n", "\n    "))
    for note in notes:
        print(note)
    if problems:
        raise DatasetError("cannot import NIH Pancreas-CT:\n  - " + "\n  - ".join(problems))

    base = out.resolve()
    entries = []
    for case in cases:
        entry: dict[str, object] = {"id": case.case_id, "image": _relative(case.series, base)}
        if case.series_uid:
            entry["series_uid"] = case.series_uid
        if case.label is not None:
            target = out_labels / _label_name(case)
            _convert_label(case, label_inplane, target)
            entry["label"] = _relative(target, base)
            entry["source_label"] = _relative(case.label, base)
        entries.append(entry)
    data = {
        "name": name,
        "labels": dict(DEFAULT_LABELS),
        "cases": entries,
        "source": "NIH Pancreas-CT (TCIA)",
        "label_conversion": (
            f"labels reordered from InstanceNumber order to ImagePositionPatient order, in-plane order "
            f"{label_inplane!r}, written with the image's affine (atso_med.data.importers.import_nih_pancreas)"
        ),
    }
    dataset = _write_dataset(data, out_file)
    print(f"imported {len(entries)} NIH case(s) into {out_file} ({sum('label' in e for e in entries)} with labels)")
    return dataset


def _label_name(case: _NihCase) -> str:
    return f"label{case.number:04d}.nii.gz"
