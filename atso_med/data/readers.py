"""Reading CT images and their labels onto one voxel grid, and canonical reorientation.

* :func:`load_image` reads a NIfTI file or a DICOM series folder as a float32 HU
  :class:`~atso_med.data.volume.Volume`, refusing files that are missing, corrupt or not 3D with
  an :class:`~atso_med.errors.ImageReadError` that names the file and the reason.
* :func:`load_label` places a label on its image's voxel grid exactly: only axis permutations and
  flips are allowed (a label stored LAS for an image stored LPS), never interpolation. Any other
  difference is a :class:`~atso_med.errors.GridMismatchError` that says how the grids differ.
* :func:`reorient_to_canonical` / :func:`reorient_from_canonical` permute and flip array axes to
  the closest RAS order and back, so that the pipeline can slice axial planes along the last axis
  and still write its outputs on the original grid.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations

from atso_med.data.dicom import read_dicom_series
from atso_med.data.volume import Volume
from atso_med.errors import GridMismatchError, ImageReadError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# load_label tolerances: the direction/spacing part of the voxel-to-voxel map is dimensionless
# (relative), the translation is compared in mm. NIfTI stores affines as float32, so exact
# equality would refuse labels written by other tools for the very same grid.
REL_TOL = 1e-4
ABS_TOL_MM = 1e-3

__all__ = [
    "check_image_path",
    "is_nifti",
    "load_image",
    "load_label",
    "nifti_stem",
    "open_nifti",
    "reorient_from_canonical",
    "reorient_to_canonical",
    "voxel_world_coordinates",
]


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether a path names a NIfTI file (``.nii`` / ``.nii.gz``, any case), by its name only."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """A file name without ``.nii`` / ``.nii.gz``; any other name (a DICOM folder's) as it is."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_image_path(path: Path) -> None:
    """Refuse an image path that is missing or of a kind no reader takes, before anything is read.

    Args:
        path: a ``.nii`` / ``.nii.gz`` file or a DICOM series folder.

    Raises:
        ImageReadError: the path does not exist, is a single DICOM file, or is neither a NIfTI
            file nor a folder.
    """
    if not path.exists():
        raise ImageReadError(f"{path}: image does not exist")
    if path.is_dir() or is_nifti(path):
        return
    if path.suffix.lower() == ".dcm":
        raise ImageReadError(f"{path}: a single DICOM file; pass the folder that holds the whole series")
    raise ImageReadError(f"{path}: unsupported image format; expected .nii, .nii.gz or a DICOM series folder")


def _read_failure_reason(error: BaseException) -> str:
    """Turn the many exception types nibabel/gzip/zlib raise into a reason a user can act on."""
    detail = f"{type(error).__name__}: {error}"
    text = str(error).lower()
    if isinstance(error, EOFError) or ("expected" in text and "bytes" in text):
        return f"the file is truncated (less data than the header declares) [{detail}]"
    if "mmap length" in text or "buffer is smaller" in text or "cannot reshape" in text:
        return f"the file is truncated (less voxel data than the header declares) [{detail}]"
    if isinstance(error, gzip.BadGzipFile) or "not a gzip file" in text:
        return f"the file is not valid gzip data although it is named .gz [{detail}]"
    if isinstance(error, zlib.error):
        return f"the compressed data is corrupt [{detail}]"
    if isinstance(error, nib.filebasedimages.ImageFileError):
        return f"it is not a readable NIfTI file [{detail}]"
    if isinstance(error, nib.spatialimages.HeaderDataError):
        return f"the NIfTI header is invalid [{detail}]"
    return f"it is corrupt or not a NIfTI file [{detail}]"


def open_nifti(path: Path, what: str) -> tuple[nib.Nifti1Image, tuple[int, ...]]:
    """Open a NIfTI file and check its shape and affine (voxel data not read yet).

    Args:
        path: the file.
        what: "image" or "label", for messages.

    Returns:
        The nibabel image and the 3D shape to use (a trailing singleton 4th axis dropped).

    Raises:
        ImageReadError: unreadable header, not 3D, a zero-sized axis, or an affine that is
            non-finite or not invertible.
    """
    try:
        image = nib.load(str(path))
    except MemoryError:
        raise
    except Exception as error:  # nibabel raises a different type for every kind of damage
        raise ImageReadError(f"{path}: cannot read {what}: {_read_failure_reason(error)}") from error
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageReadError(f"{path}: cannot read {what}: not a NIfTI image ({type(image).__name__})")
    shape = tuple(int(s) for s in image.shape)
    if any(s == 0 for s in shape):
        raise ImageReadError(f"{path}: {what} is empty: shape {shape} has a zero-sized axis")
    if len(shape) < 3:
        raise ImageReadError(f"{path}: {what} is {len(shape)}D (shape {shape}); a 3D volume is needed")
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]  # (X, Y, Z, 1) is a 3D volume saved with a time axis
    if len(shape) > 3:
        raise ImageReadError(
            f"{path}: {what} is {len(shape)}D (shape {shape}, {int(np.prod(shape[3:]))} volumes); "
            "one 3D volume is needed"
        )
    if 1 in shape:
        # A single slice stored as (X, Y, 1) is a 2D image: two of the three planes would be lines.
        raise ImageReadError(f"{path}: {what} is a single slice (shape {shape}): a 2D image; a 3D volume is needed")
    _check_voxel_bytes(image, path, what)
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise ImageReadError(f"{path}: {what} has a non-finite affine (NaN/inf in the header):\n{affine}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12 or np.linalg.cond(affine[:3, :3]) > 1e8:
        raise ImageReadError(
            f"{path}: {what} has a non-invertible affine (zero or collinear voxel axes), so its voxels have no "
            f"place in world space:\n{affine}"
        )
    header = image.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        warnings.warn(
            f"{path}: NIfTI header has neither sform nor qform; its orientation is unknown and only the "
            "voxel size is used",
            stacklevel=3,
        )
    return image, shape


#: Deflate (gzip) cannot compress by more than about 1032:1.
_MAX_GZIP_RATIO = 1032


def _check_voxel_bytes(image: nib.Nifti1Image, path: Path, what: str) -> None:
    """Refuse a header that announces more voxel data than the file can hold, before any is read.

    A damaged or hostile header (dim[] of billions of voxels) would otherwise end in a MemoryError
    or a traceback deep inside nibabel. A ``.nii`` holds its file size; a ``.nii.gz`` the
    uncompressed size its gzip trailer states (modulo 4 GiB), and at most 1032 times its size.

    Raises:
        ImageReadError: with the header's voxel count, the bytes it needs and the bytes stored.
    """
    header = image.header
    shape = tuple(int(s) for s in image.shape)
    voxels = int(np.prod(shape, dtype=object))
    needed = int(header.get_data_offset()) + voxels * int(header["bitpix"]) // 8
    size = path.stat().st_size
    if not str(path).lower().endswith(".gz"):
        stored = size
    elif needed >= 1 << 32 or size < 18:
        stored = size * _MAX_GZIP_RATIO
    else:
        with path.open("rb") as handle:
            handle.seek(-4, os.SEEK_END)
            stored = int.from_bytes(handle.read(4), "little")
    if needed > stored:
        raise ImageReadError(
            f"{path}: cannot read {what}: the header announces {voxels:,} voxels of {int(header['bitpix'])} bits "
            f"(shape {shape}, {needed:,} bytes) but the file holds at most {stored:,} bytes: truncated, or a "
            "damaged header"
        )


def _read_voxels(image: nib.Nifti1Image, path: Path, what: str, shape: tuple[int, ...], as_float: bool) -> np.ndarray:
    """Read the voxel data now, so that truncated files fail here with a clear message.

    nibabel reads lazily, so a truncated .nii.gz opens fine and fails only when data is accessed.
    """
    try:
        if as_float:
            data = image.get_fdata(dtype=np.float32)
        else:
            # np.array copies: a memory-mapped .nii is read completely now, not at some later use.
            data = np.array(np.asanyarray(image.dataobj))
    except MemoryError:
        raise
    except Exception as error:
        raise ImageReadError(f"{path}: cannot read {what} voxels: {_read_failure_reason(error)}") from error
    finally:
        image.uncache()
    return data.reshape(shape)


def load_image(path: str | os.PathLike, series_uid: str | None = None) -> Volume:
    """Read a CT image: a NIfTI file or a folder holding a DICOM series.

    Args:
        path: ``.nii`` / ``.nii.gz`` file, or a DICOM folder.
        series_uid: for a DICOM folder with several CT series, the SeriesInstanceUID to read.

    Returns:
        The volume: float32 array (HU) indexed (i, j, k) with its RAS+ affine. NaNs are kept
        (checking values is the verifier's job).

    Raises:
        ImageReadError: the path is missing; the file is truncated, corrupt or not NIfTI; the
            image is not 3D (2D, or 4D with more than one volume) or has a zero-sized axis; its
            affine is non-finite or non-invertible; DICOM problems (see
            :func:`atso_med.data.dicom.read_dicom_series`; DicomSeriesError is a subclass).
    """
    path = Path(path)
    check_image_path(path)
    if path.is_dir():
        return read_dicom_series(path, series_uid=series_uid)
    image, shape = open_nifti(path, "image")
    array = _read_voxels(image, path, "image", shape, as_float=True)
    return Volume(
        array=array,
        affine=np.asarray(image.affine, dtype=np.float64),
        source=str(path),
        meta={"format": "nifti", **_qform_conflict(image, shape)},
    )


def _qform_conflict(image: nib.Nifti1Image, shape: tuple[int, ...]) -> dict:
    """``{"qform": (matrix, code), "header_warning": text}`` when an image's qform and sform
    place it differently (by more than a tenth of a voxel at a corner), else ``{}``.

    nibabel (and so atso-med) uses the sform; a viewer that prefers the qform shows the image
    elsewhere, so a prediction keeps the input's qform as well (see :func:`save_nifti`).
    """
    header = image.header
    if int(header["qform_code"]) <= 0 or int(header["sform_code"]) <= 0:
        return {}
    qform, sform = np.asarray(header.get_qform(), dtype=np.float64), np.asarray(header.get_sform(), dtype=np.float64)
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in shape[:3]], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    apart = float(np.max(np.linalg.norm((qform @ corners - sform @ corners)[:3], axis=0)))
    if apart <= 0.1 * float(np.min(np.linalg.norm(sform[:3, :3], axis=0))):
        return {}
    codes = "".join(orientations.aff2axcodes(qform)), "".join(orientations.aff2axcodes(sform))
    warning = (
        f"qform and sform disagree (corners up to {apart:.1f} mm apart; qform {codes[0]}, sform {codes[1]}): "
        "the sform is used; a viewer that reads the qform places this image elsewhere, and predictions keep "
        "both forms of the input"
    )
    return {"qform": (qform, int(header["qform_code"])), "header_warning": warning}


def _signed_permutation(transform: np.ndarray) -> np.ndarray | None:
    """The signed permutation matrix ``transform`` is within tolerance of, or ``None``."""
    rounded = np.round(transform)
    if np.max(np.abs(transform - rounded)) > REL_TOL:
        return None
    if not (np.all(np.abs(rounded).sum(axis=0) == 1) and np.all(np.abs(rounded).sum(axis=1) == 1)):
        return None
    return rounded


def _describe(volume_affine: np.ndarray, shape: tuple[int, ...]) -> str:
    spacing = np.linalg.norm(volume_affine[:3, :3], axis=0)
    codes = "".join(orientations.aff2axcodes(volume_affine))
    return (
        f"shape {tuple(shape)}, spacing {np.round(spacing, 4).tolist()} mm, orientation {codes}, "
        f"voxel (0,0,0) at {np.round(volume_affine[:3, 3], 3).tolist()} mm"
    )


def _grid_difference(
    label_affine: np.ndarray, label_shape: tuple, ref_affine: np.ndarray, ref_shape: tuple
) -> list[str]:
    """Reasons why a label grid is not a permutation/flip of the reference grid ([] if it is)."""
    transform = np.linalg.inv(ref_affine) @ label_affine  # label voxel index -> reference voxel index
    permutation = _signed_permutation(transform[:3, :3])
    ref_spacing = np.linalg.norm(ref_affine[:3, :3], axis=0)
    label_spacing = np.linalg.norm(label_affine[:3, :3], axis=0)
    if permutation is None:
        reasons = []
        if not np.allclose(np.sort(label_spacing), np.sort(ref_spacing), rtol=REL_TOL, atol=0):
            reasons.append(
                f"spacing differs: label {np.round(label_spacing, 4).tolist()} mm vs reference "
                f"{np.round(ref_spacing, 4).tolist()} mm (resampling would be needed)"
            )
        label_dirs = label_affine[:3, :3] / label_spacing
        ref_dirs = ref_affine[:3, :3] / ref_spacing
        # Angle of each label axis to the nearest reference axis (up to sign).
        cosines = np.max(np.abs(ref_dirs.T @ label_dirs), axis=0).clip(-1, 1)
        angle = float(np.degrees(np.max(np.arccos(cosines))))
        if angle > 1e-3:
            reasons.append(
                f"direction differs: label axes are rotated by up to {angle:.3f} degrees against the reference axes"
            )
        if not reasons:
            reasons.append("the voxel axes cannot be matched by a permutation and flips")
        return reasons

    reasons = []
    axes = [int(np.flatnonzero(permutation[b])[0]) for b in range(3)]  # label axis for reference axis b
    signs = [int(permutation[b, axes[b]]) for b in range(3)]
    mapped_shape = tuple(label_shape[axes[b]] for b in range(3))
    if mapped_shape != tuple(ref_shape):
        reasons.append(
            f"shape differs: on the reference's axes the label is {mapped_shape}, the reference is {tuple(ref_shape)}"
        )
    offset = transform[:3, 3]
    fraction = np.abs(offset - np.round(offset)) * ref_spacing
    if np.max(fraction) > ABS_TOL_MM:
        reasons.append(
            f"origin differs by a fraction of a voxel: the label grid is shifted by {np.round(offset, 4).tolist()} "
            f"reference voxels ({np.round(fraction, 4).tolist()} mm off the voxel centres)"
        )
        return reasons
    for b in range(3):
        shift = int(round(offset[b]))
        a = axes[b]
        if signs[b] > 0 and shift != 0:
            reasons.append(
                f"origin differs: the label is shifted by {shift} voxels ({shift * ref_spacing[b]:.3f} mm) along "
                f"reference axis {b}"
            )
        elif signs[b] < 0 and shift != ref_shape[b] - 1:
            if shift == 0:
                reasons.append(
                    f"label axis {a} runs the opposite way in world space to reference axis {b} but the origin was "
                    "kept: the label would lie elsewhere (mirrored about the reference's first voxel plane); the "
                    "header was probably edited without moving the origin to the other end of the axis"
                )
            else:
                expected = ref_shape[b] - 1
                reasons.append(
                    f"label axis {a} runs the opposite way to reference axis {b} and starts at reference index {shift} "
                    f"instead of {expected}: shifted by {shift - expected} voxels"
                )
    return reasons


def load_label(path: str | os.PathLike, reference: Volume) -> np.ndarray:
    """Read a label map and return its voxels on the reference image's grid, exactly.

    The label may be stored with its axes permuted or flipped relative to the image (e.g. LAS
    vs LPS); it is brought onto the image's voxel order by transposes and flips only. Any grid
    that would need interpolation (other spacing, rotation, sub-voxel or whole-voxel shift,
    other extent) is refused.

    Args:
        path: label ``.nii`` / ``.nii.gz``.
        reference: the image the label belongs to.

    Returns:
        The stored label values indexed like ``reference.array`` (same shape), C-contiguous,
        with the stored dtype (integers stay integers; floats are not cast, so that
        non-integer values can be detected by the verifier).

    Raises:
        ImageReadError: missing, corrupt, truncated, not-3D or empty file, or a bad affine.
        GridMismatchError: the label does not lie on the reference's voxel grid; the message
            says how the grids differ (shape, spacing, origin, direction).
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: label does not exist")
    if path.is_dir() or not is_nifti(path):
        raise ImageReadError(f"{path}: unsupported label format; expected a .nii or .nii.gz file")
    image, shape = open_nifti(path, "label")
    label_affine = np.asarray(image.affine, dtype=np.float64)
    ref_affine = np.asarray(reference.affine, dtype=np.float64)
    ref_shape = reference.shape[:3]
    reasons = _grid_difference(label_affine, shape, ref_affine, ref_shape)
    if reasons:
        raise GridMismatchError(
            f"{path}: label is not on the voxel grid of {reference.source or 'the image'}:\n  - "
            + "\n  - ".join(reasons)
            + f"\n  label:     {_describe(label_affine, shape)}\n  reference: {_describe(ref_affine, ref_shape)}"
        )
    data = _read_voxels(image, path, "label", shape, as_float=False)
    permutation = np.round((np.linalg.inv(ref_affine) @ label_affine)[:3, :3])
    axes = [int(np.flatnonzero(permutation[b])[0]) for b in range(3)]
    out = np.transpose(data, axes)
    flips = tuple(b for b in range(3) if permutation[b, axes[b]] < 0)
    if flips:
        out = np.flip(out, axis=flips)
    # Flips give negative strides, which torch.from_numpy refuses; a copy makes it contiguous.
    return np.ascontiguousarray(out)


def reorient_to_canonical(volume: Volume) -> tuple[Volume, np.ndarray]:
    """Permute/flip a volume's array axes to the closest RAS order (no resampling).

    Args:
        volume: any volume; its first three array axes are the spatial ones.

    Returns:
        ``(canonical, ornt)``: the reoriented volume (its affine adjusted so every voxel keeps
        its world position) and the nibabel orientation transform applied (input axis ``n``
        goes to canonical axis ``ornt[n, 0]``, flipped when ``ornt[n, 1] == -1``), to be passed
        to :func:`reorient_from_canonical`.
    """
    ornt = orientations.io_orientation(volume.affine)
    array = orientations.apply_orientation(volume.array, ornt)
    affine = volume.affine @ orientations.inv_ornt_aff(ornt, volume.array.shape[:3])
    canonical = Volume(array=array, affine=affine, source=volume.source, meta=dict(volume.meta))
    return canonical, ornt


def reorient_from_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Undo :func:`reorient_to_canonical`: put a canonical-order array back on the original axes.

    Args:
        array: array in canonical order (first three axes spatial, e.g. a prediction).
        ornt: the orientation returned by :func:`reorient_to_canonical`.

    Returns:
        The array in the original volume's axis order (a view; copy it if it must be contiguous).
    """
    # ornt is the original axes' orientation relative to RAS, and the canonical array is RAS by
    # construction, so the transform from RAS to ornt is the exact inverse.
    back = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), np.asarray(ornt))
    return orientations.apply_orientation(array, back)


def voxel_world_coordinates(volume: Volume | np.ndarray, index) -> np.ndarray:
    """World (RAS+ mm) coordinates of voxel indices.

    Args:
        volume: a volume, or a 4x4 affine.
        index: one (i, j, k) index or an array of them, shape (..., 3).

    Returns:
        Coordinates with the shape of ``index``, float64.
    """
    affine = volume.affine if isinstance(volume, Volume) else np.asarray(volume, dtype=np.float64)
    index = np.asarray(index, dtype=np.float64)
    return index @ affine[:3, :3].T + affine[:3, 3]
