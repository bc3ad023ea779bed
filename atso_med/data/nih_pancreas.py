"""Importing NIH Pancreas-CT as TCIA distributes it: labels put on their images' grids, and a ``dataset.json``.

NIH's labels cannot be used as they are: their voxel order follows the DICOM InstanceNumber and
their NIfTI header does not describe the DICOM geometry. :func:`import_nih_pancreas` therefore
rewrites each label onto its image's voxel grid (see the function for the exact convention
assumed) into a new folder; the originals are only read, and the DICOM series are referenced
where they are.

Every problem found while planning (no case folders, a label without an image, two labels for one
case, a label whose shape does not fit its series, ...) is collected and raised as one
:class:`~atso_med.errors.DatasetError` before anything is written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from atso_med.data.dataset import DATASET_FILE, Dataset
from atso_med.data.dataset_from_folders import (
    DEFAULT_LABELS,
    check_dataset_output,
    find_dicom_folders,
    listing,
    relative_path,
    write_dataset_json,
)
from atso_med.data.labels import check_label_values
from atso_med.data.nifti import save_nifti
from atso_med.errors import AtsoMedError, ConfigError, DatasetError, ImageReadError, LabelValueError

__all__ = ["NIH_DUPLICATES", "NIH_LABEL_INPLANE", "import_nih_pancreas"]

#: NIH Pancreas-CT case numbers that TCIA removed as duplicates of another case (25 and 70 are
#: both case 2). The label archive still holds label0025 / label0070.
NIH_DUPLICATES: dict[int, int] = {25: 2, 70: 2}

#: How NIH labels store the two in-plane axes; see :func:`import_nih_pancreas`.
NIH_LABEL_INPLANE = "column-row"
_INPLANE_CHOICES = ("column-row", "row-column")

_NIH_CASE = re.compile(r"^PANCREAS_(\d+)$", re.IGNORECASE)
_NIH_LABEL = re.compile(r"^label(\d+)\.nii(\.gz)?$", re.IGNORECASE)


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
                listed = listing([str(p) for p in paths])
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
                f"{case_id}: {len(series)} folders hold DICOM files ({listing([str(s) for s in series])}); "
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
            f"out_dir {out} would overwrite original labels ({listing([str(p) for p in clashes])}); "
            "choose another out_dir"
        )
    check_dataset_output(out_file, overwrite, sorted(originals), problems)
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
        entry: dict[str, object] = {"id": case.case_id, "image": relative_path(case.series, base)}
        if case.series_uid:
            entry["series_uid"] = case.series_uid
        if case.label is not None:
            target = out_labels / _label_name(case)
            _convert_label(case, label_inplane, target)
            entry["label"] = relative_path(target, base)
            entry["source_label"] = relative_path(case.label, base)
        entries.append(entry)
    data = {
        "name": name,
        "labels": dict(DEFAULT_LABELS),
        "cases": entries,
        "source": "NIH Pancreas-CT (TCIA)",
        "label_conversion": (
            f"labels reordered from InstanceNumber order to ImagePositionPatient order, in-plane order "
            f"{label_inplane!r}, written with the image's affine (atso_med.data.import_nih_pancreas)"
        ),
    }
    dataset = write_dataset_json(data, out_file)
    print(f"imported {len(entries)} NIH case(s) into {out_file} ({sum('label' in e for e in entries)} with labels)")
    return dataset


def _label_name(case: _NihCase) -> str:
    return f"label{case.number:04d}.nii.gz"
