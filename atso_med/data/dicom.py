"""Reading one CT series from a DICOM folder, with its geometry checked before any pixel is decoded.

The geometry (voxel-to-world affine) is derived from the headers alone: slices are ordered by the
projection of ImagePositionPatient on the slice normal (never by InstanceNumber or file name) and
the slice spacing comes from those positions (SliceThickness is a reconstruction property and
may differ from the spacing, e.g. overlapping reconstructions). Series that cannot be represented
by one affine without resampling (uneven spacing, gantry tilt, duplicate positions) are refused
with a message that says what is wrong, instead of being averaged silently.

Pixels are decoded by ITK (GDCM), which applies RescaleSlope / RescaleIntercept per slice and
decodes the compressed transfer syntaxes found in CT archives (JPEG lossless, JPEG-LS, JPEG 2000,
RLE) without extra Python plugins. The geometry ITK reports is cross-checked against the one
derived here.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from atso_med.data.volume import Volume
from atso_med.errors import DicomSeriesError, ImageReadError

# Tolerances. Positions are compared in millimetres; the relative part scales with the voxel size
# so that the check means "a small fraction of a voxel" for both fine and coarse series.
ABS_TOL_MM = 0.01
REL_TOL = 0.01
# Direction cosines and pixel spacings are stored as decimal strings (at most 16 characters),
# so identical values written by different slices can differ in the last digits.
COSINE_TOL = 1e-3

__all__ = [
    "DicomSeriesInfo",
    "SeriesGeometry",
    "check_series_geometry",
    "list_dicom_series",
    "position_precision_mm",
    "read_dicom_series",
    "select_series",
]


@dataclass
class DicomSeriesInfo:
    """One series found in a folder.

    Attributes:
        series_uid: SeriesInstanceUID.
        modality: Modality (``"CT"``, ``"SEG"``, ...), empty when absent.
        description: SeriesDescription, empty when absent.
        files: paths of the series' files, in file-name order (not slice order).
        n_slices: number of files (instances) in the series.
        headers: the headers read (without pixel data), in the order of ``files``; kept so that
            reading the series does not parse every file twice.
    """

    series_uid: str
    modality: str
    description: str
    files: list[Path]
    n_slices: int
    headers: list = field(default_factory=list, repr=False, compare=False)

    def summary(self) -> str:
        """One line for messages: uid, modality, description and size."""
        description = self.description or "no description"
        uid = self.series_uid or "(no SeriesInstanceUID)"
        return f"{uid} ({self.modality or '?'}, '{description}', {self.n_slices} files)"


@dataclass
class SeriesGeometry:
    """The voxel grid of a validated series, in DICOM's LPS+ patient coordinates.

    Voxel index (i, j, k) is (column, row, slice), so i runs fastest as in NIfTI.

    Attributes:
        order: indices into the headers given to :func:`check_series_geometry`, sorted by slice
            position along the normal (ascending).
        shape: (Columns, Rows, number of slices).
        origin_lps: position of voxel (0, 0, 0) in mm (ImagePositionPatient of the first slice).
        row_cosine: direction of increasing column index i (first half of the orientation).
        column_cosine: direction of increasing row index j (second half of the orientation).
        normal: row_cosine x column_cosine: direction of increasing slice index k.
        spacing: voxel size in mm along (i, j, k); k from the slice positions.
        slice_thickness: the SliceThickness header, for information only (``None`` if absent).
    """

    order: list[int]
    shape: tuple[int, int, int]
    origin_lps: np.ndarray
    row_cosine: np.ndarray
    column_cosine: np.ndarray
    normal: np.ndarray
    spacing: tuple[float, float, float]
    slice_thickness: float | None = None

    @property
    def affine_lps(self) -> np.ndarray:
        """4x4 voxel-to-LPS+ matrix."""
        affine = np.eye(4)
        affine[:3, 0] = self.row_cosine * self.spacing[0]
        affine[:3, 1] = self.column_cosine * self.spacing[1]
        affine[:3, 2] = self.normal * self.spacing[2]
        affine[:3, 3] = self.origin_lps
        return affine

    @property
    def affine_ras(self) -> np.ndarray:
        """4x4 voxel-to-RAS+ matrix (the :class:`~atso_med.data.volume.Volume` convention)."""
        return lps_to_ras(self.affine_lps)


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """Convert a voxel-to-LPS+ affine to voxel-to-RAS+ (or back: the map is its own inverse).

    Args:
        affine: 4x4 matrix.

    Returns:
        A new 4x4 matrix with its first two rows negated.
    """
    out = np.array(affine, dtype=np.float64, copy=True)
    out[:2, :] *= -1.0
    return out + 0.0  # turns -0.0 into 0.0, so printed affines are not cluttered with "-0."


def _name(header, index: int) -> str:
    """A file name for messages (pydicom records it when reading from a path)."""
    filename = getattr(header, "filename", None)
    return os.path.basename(str(filename)) if filename else f"slice #{index}"


def _floats(header, keyword: str, count: int, index: int) -> np.ndarray:
    """Read a multi-valued numeric attribute, raising a clear error if it is missing or malformed."""
    value = header.get(keyword)
    if value is None or value == "":
        raise DicomSeriesError(f"{_name(header, index)}: {keyword} is missing; cannot place the slice in space")
    try:
        items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        values = np.array([float(v) for v in items])
    except (TypeError, ValueError) as error:
        raise DicomSeriesError(f"{_name(header, index)}: {keyword} is not numeric ({value!r})") from error
    if values.size != count or not np.all(np.isfinite(values)):
        raise DicomSeriesError(f"{_name(header, index)}: {keyword} should hold {count} finite numbers, got {value!r}")
    return values


def position_precision_mm(headers: Sequence) -> float:
    """The rounding step of the coarsest ImagePositionPatient value of a series, in mm.

    Positions are decimal strings; a scanner that writes one decimal (``"-120.3"``) rounds each
    coordinate by up to 0.05 mm, which for an oblique series moves a slice off its normal by more
    than a fraction of a voxel. ``0`` when no value shows a decimal precision (exponent notation).
    """
    step = 0.0
    for header in headers:
        for value in header.get("ImagePositionPatient") or ():
            text = str(getattr(value, "original_string", None) or value).strip()
            if "e" in text.lower():
                continue
            decimals = len(text.split(".", 1)[1]) if "." in text else 0
            step = max(step, 10.0**-decimals)
    return step


def check_series_geometry(headers: Sequence) -> SeriesGeometry:
    """Check that slices form one evenly spaced, untilted 3D grid, and derive that grid.

    Args:
        headers: pydicom datasets of one series (pixel data not needed), in any order.

    Returns:
        The series geometry, with the slice order sorted by position along the slice normal.

    Raises:
        ImageReadError: the series has a single slice (a 2D image).
        DicomSeriesError: no slices; a multi-frame object; ImagePositionPatient,
            ImageOrientationPatient, Rows/Columns or PixelSpacing missing or not shared by all
            slices; a non-orthonormal orientation; duplicate slice positions; a tilted gantry
            (positions not along the normal); uneven slice spacing.
    """
    n = len(headers)
    if n == 0:
        raise DicomSeriesError("the series holds no slices")
    for index, header in enumerate(headers):
        frames = header.get("NumberOfFrames")
        if frames is not None and int(frames) > 1:
            raise DicomSeriesError(
                f"{_name(header, index)}: multi-frame DICOM ({int(frames)} frames in one file) is not supported; "
                "export the series as one file per slice"
            )
    if n == 1:
        raise ImageReadError(
            f"{_name(headers[0], 0)}: the series has a single slice, i.e. it is a 2D image; a 3D CT volume is needed"
        )

    orientations = [_floats(h, "ImageOrientationPatient", 6, i) for i, h in enumerate(headers)]
    positions = np.stack([_floats(h, "ImagePositionPatient", 3, i) for i, h in enumerate(headers)])
    spacings = [_floats(h, "PixelSpacing", 2, i) for i, h in enumerate(headers)]
    sizes = []
    for index, header in enumerate(headers):
        if header.get("Rows") is None or header.get("Columns") is None:
            raise DicomSeriesError(f"{_name(header, index)}: Rows/Columns missing")
        sizes.append((int(header.Rows), int(header.Columns)))

    # Every slice must share the in-plane grid; a series mixing stacks (e.g. a localizer kept in
    # the same series) cannot be one volume.
    for index in range(1, n):
        if np.max(np.abs(orientations[index] - orientations[0])) > COSINE_TOL:
            raise DicomSeriesError(
                f"slices have different ImageOrientationPatient: {_name(headers[0], 0)} has "
                f"{orientations[0].tolist()}, {_name(headers[index], index)} has {orientations[index].tolist()}"
            )
        if sizes[index] != sizes[0]:
            raise DicomSeriesError(
                f"slices have different Rows/Columns: {_name(headers[0], 0)} is {sizes[0]}, "
                f"{_name(headers[index], index)} is {sizes[index]}"
            )
        if np.max(np.abs(spacings[index] - spacings[0])) > max(1e-4, 1e-4 * float(np.max(spacings[0]))):
            raise DicomSeriesError(
                f"slices have different PixelSpacing: {_name(headers[0], 0)} has {spacings[0].tolist()}, "
                f"{_name(headers[index], index)} has {spacings[index].tolist()}"
            )

    row_cosine, column_cosine = orientations[0][:3], orientations[0][3:]
    if (
        abs(np.linalg.norm(row_cosine) - 1) > COSINE_TOL
        or abs(np.linalg.norm(column_cosine) - 1) > COSINE_TOL
        or abs(float(row_cosine @ column_cosine)) > COSINE_TOL
    ):
        raise DicomSeriesError(f"ImageOrientationPatient {orientations[0].tolist()} is not two orthogonal unit vectors")
    row_cosine = row_cosine / np.linalg.norm(row_cosine)
    column_cosine = column_cosine / np.linalg.norm(column_cosine)
    normal = np.cross(row_cosine, column_cosine)
    normal /= np.linalg.norm(normal)
    if np.min(spacings[0]) <= 0:
        raise DicomSeriesError(f"PixelSpacing {spacings[0].tolist()} is not positive")
    pixel_spacing = spacings[0]  # DICOM order: (between rows, between columns)

    distance = positions @ normal
    order = [int(i) for i in np.argsort(distance, kind="stable")]
    distance = distance[order]
    sorted_positions = positions[order]
    gaps = np.diff(distance)
    names = [_name(headers[i], i) for i in order]

    duplicate = np.flatnonzero(gaps < ABS_TOL_MM)
    if duplicate.size:
        first = int(duplicate[0])
        raise DicomSeriesError(
            f"{duplicate.size} slice(s) share a position with another slice (e.g. {names[first]} and "
            f"{names[first + 1]} both at {distance[first]:.3f} mm along the normal): the series holds "
            "duplicate files or several acquisitions/phases; split them or pass the folder of one"
        )

    # Tilted gantry: slice positions move in-plane as well as along the normal, so the volume is
    # sheared and no affine with this orientation describes it.
    offsets = sorted_positions - sorted_positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    # A difference of two positions rounded to `step` is off by up to sqrt(3) * step; that much
    # is the precision they were written with, not a tilt (as long as it stays under half a voxel).
    rounding = math.sqrt(3.0) * position_precision_mm(headers)
    drift_tol = max(
        ABS_TOL_MM, REL_TOL * float(np.min(pixel_spacing)), min(rounding, 0.5 * float(np.min(pixel_spacing)))
    )
    if float(drift.max()) > drift_tol:
        extent = float(distance[-1] - distance[0])
        angle = math.degrees(math.atan2(float(drift[-1]), extent))
        raise DicomSeriesError(
            f"slice positions are not along the slice normal: gantry tilt of about {angle:.2f} degrees "
            f"(positions drift {float(drift.max()):.3f} mm in-plane over {extent:.1f} mm); a tilted-gantry "
            "series must be resampled (de-tilted) before use"
        )

    slice_spacing = float(distance[-1] - distance[0]) / (n - 1)
    spacing_tol = max(ABS_TOL_MM, REL_TOL * slice_spacing, min(rounding, 0.1 * slice_spacing))
    deviation = np.abs(distance - (distance[0] + slice_spacing * np.arange(n)))
    gap_deviation = np.abs(gaps - slice_spacing)
    if float(gap_deviation.max()) > spacing_tol or float(deviation.max()) > spacing_tol:
        worst = int(np.argmax(gap_deviation))
        raise DicomSeriesError(
            f"uneven slice spacing: gaps between consecutive slices range from {gaps.min():.3f} mm to "
            f"{gaps.max():.3f} mm (mean {slice_spacing:.3f} mm, tolerance {spacing_tol:.3f} mm; the most "
            f"off is {gaps[worst]:.3f} mm between {names[worst]} and {names[worst + 1]}); missing slices or "
            "a variable-spacing reconstruction; the series must be resampled, it is not averaged silently"
        )

    thickness = headers[order[0]].get("SliceThickness")
    try:
        thickness = float(thickness) if thickness not in (None, "") else None
    except (TypeError, ValueError):
        thickness = None
    rows, columns = sizes[0]
    return SeriesGeometry(
        order=order,
        shape=(columns, rows, n),
        origin_lps=sorted_positions[0].copy(),
        row_cosine=row_cosine,
        column_cosine=column_cosine,
        normal=normal,
        spacing=(float(pixel_spacing[1]), float(pixel_spacing[0]), slice_spacing),
        slice_thickness=thickness,
    )


def _read_header(path: Path):
    """Read one file's header, or ``None`` when the file is not DICOM.

    Raises:
        DicomSeriesError: the file starts like DICOM but cannot be parsed.
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None  # no "DICM" marker: not a DICOM file (README, thumbnails, ...)
    except MemoryError:
        raise
    except Exception as error:  # pydicom raises many types for damaged files
        reason = f"{type(error).__name__}: {error}"
        raise DicomSeriesError(f"{path}: DICOM file is corrupt or truncated ({reason})") from error


def _is_not_an_instance(header, path: Path) -> bool:
    """True for DICOM files that are not part of a series (DICOMDIR media index, empty stubs).

    Raises:
        DicomSeriesError: the file meta announces an instance (a CT slice) but the data set ends
            before its series attributes: a truncated file, which must not vanish from its series.
    """
    file_meta = getattr(header, "file_meta", None)
    media_class = str(file_meta.get("MediaStorageSOPClassUID", "")) if file_meta is not None else ""
    if media_class == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in header:
        return True
    if header.get("SeriesInstanceUID") or header.get("Modality"):
        return False
    if media_class:
        raise DicomSeriesError(
            f"{path}: DICOM file is truncated or damaged: its file meta announces a "
            f"{getattr(file_meta.MediaStorageSOPClassUID, 'name', media_class)} instance, but the data set "
            f"ends before SeriesInstanceUID and Modality ({path.stat().st_size} bytes)"
        )
    return True


def list_dicom_series(folder: str | os.PathLike) -> list[DicomSeriesInfo]:
    """List the DICOM series in a folder (searched recursively), reading headers only.

    Args:
        folder: a folder holding DICOM files; other files are ignored.

    Returns:
        One entry per SeriesInstanceUID, sorted by modality then uid. Files whose
        SeriesInstanceUID was blanked (by anonymisation) are grouped by Modality, SeriesNumber and
        SeriesDescription and reported with an empty ``series_uid``. DICOMDIR files are ignored.

    Raises:
        ImageReadError: ``folder`` does not exist or is not a folder.
        DicomSeriesError: a file that looks like DICOM is corrupt.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ImageReadError(f"{root}: {'is not a folder' if root.exists() else 'does not exist'}")
    groups: dict[tuple, DicomSeriesInfo] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        header = _read_header(path)
        if header is None or _is_not_an_instance(header, path):
            continue
        uid = str(header.get("SeriesInstanceUID", "") or "")
        modality = str(header.get("Modality", "") or "")
        description = str(header.get("SeriesDescription", "") or "")
        # Anonymisers sometimes blank the UIDs (the real test series has an empty
        # SeriesInstanceUID); such files are grouped by what still tells series apart.
        key = (uid,) if uid else ("", modality, str(header.get("SeriesNumber", "")), description)
        info = groups.get(key)
        if info is None:
            info = groups[key] = DicomSeriesInfo(
                series_uid=uid, modality=modality, description=description, files=[], n_slices=0
            )
        info.files.append(path)
        info.headers.append(header)
        info.n_slices += 1
    return sorted(groups.values(), key=lambda s: (s.modality, s.series_uid))


def select_series(
    folder: str | os.PathLike, series_uid: str | None = None, modality: str | None = "CT"
) -> DicomSeriesInfo:
    """Choose one series in a folder: by uid, or the only one of the modality.

    Args:
        folder: folder of DICOM files.
        series_uid: SeriesInstanceUID to read; ``None`` to pick the only series of ``modality``.
        modality: required modality; ``None`` accepts any.

    Returns:
        The chosen series.

    Raises:
        ImageReadError: the folder does not exist.
        DicomSeriesError: no DICOM files; the uid is not in the folder or has another modality;
            no series of the modality; several series of the modality and no uid given (the
            message lists each one so the user can pass ``series_uid``).
    """
    series = list_dicom_series(folder)
    if not series:
        raise DicomSeriesError(f"{folder}: no DICOM files found (files without a DICOM header are ignored)")
    listing = "\n".join(f"  - {s.summary()}" for s in series)
    if series_uid is not None:
        chosen = [s for s in series if s.series_uid == str(series_uid)]
        if not chosen:
            raise DicomSeriesError(f"{folder}: no series with uid {series_uid}; the folder holds:\n{listing}")
        if len(chosen) > 1:
            raise DicomSeriesError(
                f"{folder}: several series have no SeriesInstanceUID, so series_uid='' is ambiguous; "
                f"put each series in its own folder:\n{listing}"
            )
        if modality is not None and chosen[0].modality != modality:
            raise DicomSeriesError(
                f"{folder}: series {series_uid} has modality {chosen[0].modality or '?'}, expected {modality}"
            )
        return chosen[0]
    candidates = [s for s in series if modality is None or s.modality == modality]
    if not candidates:
        raise DicomSeriesError(f"{folder}: no {modality} series; the folder holds:\n{listing}")
    if len(candidates) > 1:
        lines = "\n".join(
            f"  - series_uid={s.series_uid or '(none)'}  description='{s.description}'  slices={s.n_slices}"
            for s in candidates
        )
        raise DicomSeriesError(
            f"{folder}: {len(candidates)} {modality or 'DICOM'} series found; "
            f"choose one by passing series_uid:\n{lines}"
        )
    return candidates[0]


def _first_undecodable_slice(files: Sequence[Path]) -> tuple[Path, str] | None:
    """The first slice file pydicom cannot decode either, and why (ITK's error names no file)."""
    for path in files:
        try:
            pydicom.dcmread(path).pixel_array  # noqa: B018 - reading the pixels is what decodes them
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - any decoding failure names the file
            return path, f"{type(error).__name__}: {error}"
    return None


def _read_pixels_itk(files: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Decode a sorted list of slice files with ITK/GDCM.

    Args:
        files: slice files in the order of the volume's k axis.

    Returns:
        ``(array, affine_lps)``: float32 modality values (HU for CT) indexed (i, j, k), and the
        4x4 voxel-to-LPS matrix ITK derived.

    Raises:
        DicomSeriesError: ITK cannot decode the files.
    """
    # ITK's SWIG modules emit DeprecationWarnings while they load lazily; they are noise to users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import itk  # imported here: loading ITK takes seconds and most callers read NIfTI only

        try:
            image = itk.imread([str(f) for f in files], pixel_type=itk.F, imageio=itk.GDCMImageIO.New())
        except MemoryError:
            raise
        except Exception as error:  # ITK wraps C++ exceptions in RuntimeError and others
            culprit = _first_undecodable_slice(files)
            where = f"{culprit[0]} ({culprit[1]})" if culprit else f"{files[0].parent}: {error}"
            raise DicomSeriesError(f"ITK could not decode the pixel data of {where}") from error
        zyx = itk.array_view_from_image(image)
        direction = np.asarray(itk.array_from_matrix(image.GetDirection()), dtype=np.float64)
        spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
        origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    if zyx.ndim != 3:
        raise DicomSeriesError(f"ITK read {zyx.ndim}D pixel data from {files[0].parent}, expected 3D")
    # ITK is (k, j, i); a real copy, so nothing points into the ITK image once it is freed.
    array = np.array(zyx.transpose(2, 1, 0), dtype=np.float32, order="C", copy=True)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = origin
    return array, affine


def _grid_corners(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """World positions of the 8 corner voxels of a grid, shape (8, 3)."""
    ends = [(0, size - 1) for size in shape[:3]]
    corners = np.array([[i, j, k, 1.0] for i in ends[0] for j in ends[1] for k in ends[2]])
    return (affine @ corners.T).T[:, :3]


def read_dicom_series(folder: str | os.PathLike, series_uid: str | None = None, modality: str | None = "CT") -> Volume:
    """Read one series as a float32 volume in modality units (HU for CT) with a RAS+ affine.

    The headers are validated (:func:`check_series_geometry`) before any pixel is decoded; the
    pixels are decoded by ITK in slice-position order and ITK's geometry must agree with the one
    derived from the headers.

    Args:
        folder: folder holding the series (other series and non-DICOM files may be present).
        series_uid: SeriesInstanceUID to read; ``None`` to take the only series of ``modality``.
        modality: required modality (``None``: any).

    Returns:
        A :class:`~atso_med.data.volume.Volume` whose array is indexed (column, row, slice) and
        whose affine maps those indices to RAS+ mm; ``meta`` holds ``series_uid``, ``modality``,
        ``description``, ``files`` (in slice order) and ``slice_thickness``.

    Raises:
        ImageReadError: missing folder, or a single-slice (2D) series.
        DicomSeriesError: see :func:`select_series` and :func:`check_series_geometry`; also when
            pixels cannot be decoded or ITK's geometry disagrees with the headers.
    """
    info = select_series(folder, series_uid=series_uid, modality=modality)
    headers = info.headers or [pydicom.dcmread(f, stop_before_pixels=True) for f in info.files]
    geometry = check_series_geometry(headers)
    files = [info.files[i] for i in geometry.order]

    array, itk_affine = _read_pixels_itk(files)
    if array.shape != geometry.shape:
        raise DicomSeriesError(
            f"{folder}: ITK decoded a volume of shape {array.shape}, the headers describe {geometry.shape}"
        )
    # A disagreement means one of the two readers misinterprets the series (slice order, axis
    # direction); refusing is safer than writing labels in the wrong place.
    header_corners = _grid_corners(geometry.affine_lps, geometry.shape)
    itk_corners = _grid_corners(itk_affine, geometry.shape)
    mismatch = float(np.max(np.linalg.norm(header_corners - itk_corners, axis=1)))
    if mismatch > max(ABS_TOL_MM, REL_TOL * min(geometry.spacing)):
        raise DicomSeriesError(
            f"{folder}: the geometry ITK reports differs from the slice headers by up to {mismatch:.3f} mm "
            f"(ITK origin {np.round(itk_affine[:3, 3], 3).tolist()}, "
            f"headers {np.round(geometry.origin_lps, 3).tolist()} LPS)"
        )
    meta = {
        "format": "dicom",
        "series_uid": info.series_uid,
        "modality": info.modality,
        "description": info.description,
        "files": [str(f) for f in files],
        "slice_thickness": geometry.slice_thickness,
    }
    return Volume(array=array, affine=geometry.affine_ras, source=str(folder), meta=meta)
