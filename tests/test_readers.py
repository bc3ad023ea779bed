"""load_image / load_label / canonical reorientation on real NIfTI data and on broken files."""

from __future__ import annotations

import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from atso_med.data.nifti import save_nifti
from atso_med.data.readers import (
    load_image,
    load_label,
    reorient_from_canonical,
    reorient_to_canonical,
    voxel_world_coordinates,
)
from atso_med.data.volume import Volume
from atso_med.errors import GridMismatchError, ImageReadError

REAL = Path(__file__).parent / "data" / "real"
CT3 = REAL / "totalseg_ct3mm"
CT_SMALL = CT3 / "ct_3mm_upperabd_30sl.nii.gz"  # int16, 122x101x30, RAS, 3 mm
CT_FULL = CT3 / "ct_3mm_abdpelvis.nii.gz"
SEG_FULL = CT3 / "seg_total117_pseudo.nii.gz"


@pytest.fixture(scope="module")
def ct_full() -> Volume:
    return load_image(CT_FULL)


@pytest.fixture(scope="module")
def seg_full_stored() -> np.ndarray:
    return np.asanyarray(nib.load(str(SEG_FULL)).dataobj)


def tiny(shape=(4, 5, 6), affine=None) -> Volume:
    affine = np.diag([2.0, 3.0, 4.0, 1.0]) if affine is None else affine
    return Volume(np.zeros(shape, np.float32), affine)


# --------------------------------------------------------------------------- load_image


def test_real_nifti_loads_with_its_affine(ct_full):
    stored = nib.load(str(CT_FULL))
    assert ct_full.shape == (122, 101, 112)
    assert ct_full.array.dtype == np.float32
    np.testing.assert_array_equal(ct_full.affine, stored.affine)
    np.testing.assert_array_equal(ct_full.array, np.asanyarray(stored.dataobj).astype(np.float32))
    assert ct_full.orientation == "RAS" and ct_full.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert ct_full.array.min() <= -1000 and ct_full.array.max() > 500  # HU


def test_label_on_the_same_grid_loads_unchanged(ct_full, seg_full_stored):
    label = load_label(SEG_FULL, ct_full)
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, seg_full_stored)
    liver = ct_full.array[label == 5]
    assert 0 < np.median(liver) < 150  # soft tissue, not air or bone: image and label agree


def test_trailing_singleton_4th_axis_is_squeezed(tmp_path):
    path = tmp_path / "img4d1.nii.gz"
    save_nifti(np.arange(60, dtype=np.int16).reshape(3, 4, 5, 1), np.eye(4), path)
    volume = load_image(path)
    assert volume.shape == (3, 4, 5)
    np.testing.assert_array_equal(volume.array, np.arange(60).reshape(3, 4, 5))


def test_nan_voxels_do_not_crash(tmp_path):
    data = np.zeros((3, 4, 5), np.float32)
    data[1, 2, 3] = np.nan
    save_nifti(data, np.eye(4), tmp_path / "nan.nii.gz")
    assert np.isnan(load_image(tmp_path / "nan.nii.gz").array[1, 2, 3])


def test_float_label_values_are_not_cast(tmp_path):
    reference = tiny()
    data = np.zeros(reference.shape, np.float32)
    data[0, 0, 0] = 0.5
    save_nifti(data, reference.affine, tmp_path / "soft.nii.gz")
    label = load_label(tmp_path / "soft.nii.gz", reference)
    assert label.dtype == np.float32 and label[0, 0, 0] == 0.5


def test_dicom_folder_goes_through_the_dicom_reader():
    volume = load_image(REAL / "dcmqi_ct3slice" / "ct")
    assert volume.shape == (512, 512, 3) and volume.meta["format"] == "dicom"
    assert volume.array.min() == -3024


@pytest.mark.parametrize("name", ["missing.nii.gz", "missing_folder"])
def test_missing_path(tmp_path, name):
    with pytest.raises(ImageReadError, match="does not exist") as info:
        load_image(tmp_path / name)
    assert name in str(info.value)
    with pytest.raises(ImageReadError, match="does not exist"):
        load_label(tmp_path / name, tiny())


def test_truncated_nii_gz(tmp_path):
    data = CT_SMALL.read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_uncompressed_nii(tmp_path):
    path = tmp_path / "full.nii"
    save_nifti(np.ones((6, 7, 8), np.int16), np.eye(4), path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ImageReadError, match="truncated"):
        load_image(path)
    with pytest.raises(ImageReadError, match="truncated"):
        load_label(path, tiny((6, 7, 8), np.eye(4)))


def test_random_bytes_named_nii_gz(tmp_path):
    path = tmp_path / "noise.nii.gz"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(ImageReadError, match="not valid gzip") as info:
        load_image(path)
    assert "noise.nii.gz" in str(info.value)


def test_unsupported_suffix_and_single_dicom_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.dcm").write_bytes(b"x")
    with pytest.raises(ImageReadError, match="unsupported image format"):
        load_image(tmp_path / "a.png")
    with pytest.raises(ImageReadError, match="pass the folder"):
        load_image(tmp_path / "b.dcm")


@pytest.mark.parametrize(
    ("shape", "reason"),
    [((6, 7), "2D"), ((4, 0, 5), "zero-sized"), ((4, 5, 6, 2), "4D .*2 volumes")],
)
def test_not_a_3d_volume(tmp_path, shape, reason):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(path))
    with pytest.raises(ImageReadError, match=reason):
        load_image(path)


@pytest.mark.parametrize("bad", ["singular", "nan"])
def test_bad_affine(tmp_path, bad):
    affine = np.eye(4)
    if bad == "singular":
        affine[:3, 2] = affine[:3, 0]  # two voxel axes along the same direction
    else:
        affine[1, 3] = np.nan
    image = nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), None)
    image.set_sform(affine, code=1)
    path = tmp_path / "bad_affine.nii.gz"
    nib.save(image, str(path))
    with pytest.raises(ImageReadError, match="non-invertible" if bad == "singular" else "non-finite"):
        load_image(path)


# --------------------------------------------------------------------------- load_label grids


def flipped_copy(data: np.ndarray, affine: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with ``axis`` reversed: the origin moves to the other end."""
    n = data.shape[axis]
    flip = np.eye(4)
    flip[axis, axis] = -1
    flip[axis, 3] = n - 1
    return np.flip(data, axis), affine @ flip


def test_label_saved_in_another_orientation_loads_back_identical(tmp_path, ct_full, seg_full_stored):
    data, affine = flipped_copy(seg_full_stored, ct_full.affine, 1)  # RAS -> RPS
    data, affine = flipped_copy(data, affine, 0)  # -> LPS
    # and permute axes (i, j, k) -> (k, i, j): stored as S, L, P
    data = np.transpose(data, (2, 0, 1))
    affine = affine[:, [2, 0, 1, 3]]
    path = tmp_path / "seg_SLP.nii.gz"
    save_nifti(data, affine, path)
    assert "".join(nib.aff2axcodes(nib.load(str(path)).affine)) == "SLP"

    label = load_label(path, ct_full)
    assert label.dtype == np.uint8 and label.flags.c_contiguous
    np.testing.assert_array_equal(label, seg_full_stored)


def test_label_flipped_in_header_but_origin_kept_is_refused(tmp_path, ct_full, seg_full_stored):
    affine = ct_full.affine.copy()
    affine[:3, 1] *= -1  # axis 1 now runs posterior, origin unchanged
    path = tmp_path / "seg_badflip.nii.gz"
    save_nifti(seg_full_stored, affine, path)
    with pytest.raises(GridMismatchError, match=r"axis 1 runs the opposite way.*origin was kept") as info:
        load_label(path, ct_full)
    assert "RPS" in str(info.value) and "RAS" in str(info.value)


def test_label_of_another_shape_is_refused(tmp_path, ct_full, seg_full_stored):
    path = tmp_path / "seg_cropped.nii.gz"
    save_nifti(seg_full_stored[:, :, :30], ct_full.affine, path)
    with pytest.raises(GridMismatchError, match=r"shape differs.*\(122, 101, 30\).*\(122, 101, 112\)"):
        load_label(path, ct_full)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: a @ np.diag([1.0, 1.0, 2.0, 1.0]), "spacing differs"),
        (lambda a: np.vstack([a[:3] + np.array([[0, 0, 0, 1.5]]), a[3:]]), "fraction of a voxel"),
        (lambda a: a @ np.array([[1, 0, 0, 2], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), "shifted by 2 voxels"),
        (
            lambda a: (
                np.array(
                    [[np.cos(0.1), -np.sin(0.1), 0, 0], [np.sin(0.1), np.cos(0.1), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
                )
                @ a
            ),
            "rotated",
        ),
    ],
    ids=["spacing", "subvoxel", "shift", "rotation"],
)
def test_other_grid_differences_are_refused(tmp_path, change, reason):
    reference = tiny()
    path = tmp_path / "label.nii.gz"
    save_nifti(np.zeros(reference.shape, np.uint8), change(reference.affine), path)
    with pytest.raises(GridMismatchError, match=reason):
        load_label(path, reference)


def test_float32_header_rounding_is_tolerated(tmp_path):
    affine = np.diag([0.9765625, 0.9765625, 2.0, 1.0])
    affine[:3, 3] = [-249.51171875, 123.456789123, -804.5]  # not representable in float32
    reference = tiny((4, 5, 6), affine)
    path = tmp_path / "label.nii.gz"
    save_nifti(np.arange(120, dtype=np.int16).reshape(4, 5, 6), affine, path)
    assert not np.array_equal(nib.load(str(path)).affine, affine)
    np.testing.assert_array_equal(load_label(path, reference), np.arange(120).reshape(4, 5, 6))


# --------------------------------------------------------------------------- canonical round trip


def oriented_affine(codes: str, spacing=(0.7, 1.3, 2.1), origin=(10.0, -20.0, 30.0)) -> np.ndarray:
    """Affine whose array axes point along ``codes`` (e.g. "LPS", "SRA")."""
    unit = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    affine = np.eye(4)
    affine[:3, :3] = 0
    for axis, code in enumerate(codes):
        row, sign = unit[code]
        affine[row, axis] = sign * spacing[axis]
    affine[:3, 3] = origin
    return affine


@pytest.mark.parametrize("codes", ["RAS", "LPS", "LAS", "SRA", "PIL"])
def test_canonical_round_trip_preserves_world_coordinates(codes):
    shape = (3, 5, 7)
    affine = oriented_affine(codes)
    # A slight rotation makes the affine oblique: reorientation must still be exact.
    tilt = np.eye(4)
    tilt[:2, :2] = [[np.cos(0.05), -np.sin(0.05)], [np.sin(0.05), np.cos(0.05)]]
    affine = tilt @ affine
    array = np.random.default_rng(1).random(shape).astype(np.float32)
    volume = Volume(array, affine)

    canonical, ornt = reorient_to_canonical(volume)
    assert canonical.orientation == "RAS"
    assert sorted(canonical.shape) == sorted(shape)
    # Every voxel keeps its value at its world position.
    index = np.array(list(itertools.product(*(range(s) for s in shape))))
    world = voxel_world_coordinates(volume, index)
    canonical_index = np.rint(voxel_world_coordinates(np.linalg.inv(canonical.affine), world)).astype(int)
    np.testing.assert_allclose(voxel_world_coordinates(canonical, canonical_index), world, atol=1e-9)
    np.testing.assert_array_equal(canonical.array[tuple(canonical_index.T)], array[tuple(index.T)])

    back = reorient_from_canonical(canonical.array, ornt)
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_canonical_of_real_dicom_grid_puts_axial_planes_last():
    # The DICOM-like LPS grid of the real 20-slice series, with a tiny array.
    affine = np.array([[-0.977, 0, 0, 249.5], [0, -0.977, 0, 437.5], [0, 0, 2.0, -804.5], [0, 0, 0, 1]])
    array = np.arange(4 * 6 * 3, dtype=np.int16).reshape(4, 6, 3)
    canonical, ornt = reorient_to_canonical(Volume(array, affine))
    np.testing.assert_array_equal(canonical.array, array[::-1, ::-1, :])
    np.testing.assert_array_equal(reorient_from_canonical(canonical.array, ornt), array)


def test_single_slice_nifti_is_refused_as_2d(tmp_path):
    path = tmp_path / "slice.nii.gz"
    save_nifti(np.zeros((8, 9, 1), dtype=np.int16), np.eye(4), path)
    with pytest.raises(ImageReadError, match=r"single slice.*2D"):
        load_image(path)
