"""DICOM series reading: series selection, header geometry checks, HU, and the real-data proof.

The proof: the real 20-slice CT series read by :func:`read_dicom_series` lands exactly on the grid
of an organ map made for it by another tool (TotalSegmentator, stored LAS), organs fall on
plausible HU, and ITK reading the series on its own reports the same geometry.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from synthetic_dicom import SIZE, axial, make_slice, write_series

from atso_med.data import dicom
from atso_med.data.dicom import (
    check_series_geometry,
    list_dicom_series,
    read_dicom_series,
    select_series,
)
from atso_med.data.readers import load_label, voxel_world_coordinates
from atso_med.errors import DicomSeriesError, ImageReadError

REAL = Path(__file__).parent / "data" / "real"
DICOM20 = REAL / "totalseg_ct_dicom20"
DCMQI = REAL / "dcmqi_ct3slice"


# --------------------------------------------------------------------------- real data: the proof


@pytest.fixture(scope="module")
def real_volume():
    return read_dicom_series(DICOM20 / "dicom")


def test_real_series_lands_exactly_on_reference_label_grid(real_volume):
    seg_path = DICOM20 / "seg_total117_pseudo.nii.gz"
    seg = nib.load(str(seg_path))
    assert "".join(nib.aff2axcodes(seg.affine)) == "LAS"  # the reference is stored another way round

    assert real_volume.shape == (512, 512, 20)
    assert real_volume.array.dtype == np.float32
    assert real_volume.orientation == "LPS"
    # Slice spacing comes from the positions (2 mm), not SliceThickness (3).
    np.testing.assert_allclose(real_volume.spacing, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    assert real_volume.meta["slice_thickness"] == 3.0

    label = load_label(seg_path, real_volume)
    assert label.shape == real_volume.shape and label.dtype == np.uint8
    # Every voxel has the same world coordinate in both: DICOM voxel (i, j, k) is label voxel
    # (i, 511 - j, k), and both affines send them to the same point.
    rng = np.random.default_rng(0)
    index = np.stack([rng.integers(0, s, 200) for s in real_volume.shape], axis=1)
    index = np.vstack([index, [[0, 0, 0], [511, 511, 19], [0, 511, 0], [511, 0, 19]]])
    label_index = index * [1, -1, 1] + [0, 511, 0]
    np.testing.assert_allclose(
        voxel_world_coordinates(real_volume, index), voxel_world_coordinates(seg.affine, label_index), atol=1e-3
    )
    stored = np.asanyarray(seg.dataobj)
    np.testing.assert_array_equal(label[tuple(index.T)], stored[tuple(label_index.T)])

    names = {v: int(k) for k, v in json.loads((DICOM20 / "label_map_total_v2.json").read_text()).items()}
    hu = real_volume.array
    liver, pancreas = label == names["liver"], label == names["pancreas"]
    assert liver.sum() > 10000 and pancreas.sum() > 500
    assert 30 <= np.median(hu[liver]) <= 200
    assert 0 <= np.median(hu[pancreas]) <= 200
    assert hu[:20, :20, :].max() < -900  # air in the corners of the field of view
    assert hu[label == 0].min() >= -1024 and hu.max() > 500  # HU, not stored values (0..4095)


def test_real_series_pixels_match_pydicom_decoding(real_volume):
    """An independent decoder: slice k = 0 is the most inferior file; (i, j) = (column, row)."""
    headers = [pydicom.dcmread(p) for p in sorted((DICOM20 / "dicom").iterdir())]
    lowest = min(headers, key=lambda d: float(d.ImagePositionPatient[2]))
    expected = lowest.pixel_array.astype(np.float32) * float(lowest.RescaleSlope) + float(lowest.RescaleIntercept)
    np.testing.assert_array_equal(real_volume.array[:, :, 0], expected.T)


def test_itk_alone_reports_the_same_geometry(real_volume):
    import itk

    names = itk.GDCMSeriesFileNames.New()
    names.SetDirectory(str(DICOM20 / "dicom"))
    files = names.GetFileNames(names.GetSeriesUIDs()[0])  # ITK's own slice sorting
    image = itk.imread(files, pixel_type=itk.F)
    direction = np.asarray(itk.array_from_matrix(image.GetDirection()))
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing())
    affine[:3, 3] = np.asarray(image.GetOrigin())
    affine[:2] *= -1  # LPS -> RAS
    np.testing.assert_allclose(real_volume.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(real_volume.array, itk.array_view_from_image(image).transpose(2, 1, 0))


def test_slice_order_comes_from_positions_not_file_names(real_volume, tmp_path):
    files = sorted((DICOM20 / "dicom").iterdir())
    shuffled = list(range(len(files)))
    random.Random(3).shuffle(shuffled)
    for new_name, source in zip(shuffled, files, strict=True):
        shutil.copy(source, tmp_path / f"img{new_name:02d}.dcm")
    by_name = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(tmp_path.iterdir())]
    z = [float(d.ImagePositionPatient[2]) for d in by_name]
    assert z != sorted(z) and z != sorted(z, reverse=True)  # name order is not position order

    volume = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(volume.affine, real_volume.affine)
    np.testing.assert_array_equal(volume.array, real_volume.array)


def test_dcmqi_ct_with_seg_object_beside_it(tmp_path):
    for path in (DCMQI / "ct").iterdir():
        shutil.copy(path, tmp_path)
    shutil.copy(DCMQI / "seg" / "liver.dcm", tmp_path)
    (tmp_path / "notes.txt").write_text("not DICOM")

    series = list_dicom_series(tmp_path)
    assert sorted(s.modality for s in series) == ["CT", "SEG"]
    chosen = select_series(tmp_path)
    assert chosen.modality == "CT" and chosen.n_slices == 3

    volume = read_dicom_series(tmp_path)
    assert volume.shape == (512, 512, 3)
    np.testing.assert_allclose(volume.spacing, (0.810547, 0.810547, 1.0), atol=1e-5)
    hu = volume.array
    assert hu.min() == -3024  # padding outside the field of view, stored -2000 + intercept -1024
    assert 0.1 < np.mean(hu == -3024) < 0.5
    assert 1000 < hu.max() < 3000  # bone, in HU
    inside = hu[hu > -3024]
    assert -1100 < np.median(inside) < 200


# --------------------------------------------------------------------------- synthetic series


def test_rescale_slope_and_intercept_and_axis_convention(tmp_path):
    write_series(tmp_path, axial([0.0, 2.0, 4.0]), slope=2.0, intercept=-1024.0)
    volume = read_dicom_series(tmp_path)
    assert volume.shape == (SIZE, SIZE, 3)
    i, j, k = np.meshgrid(np.arange(SIZE), np.arange(SIZE), np.arange(3), indexing="ij")
    stored = 1000 + 100 * k + SIZE * j + i  # j = row, i = column
    np.testing.assert_array_equal(volume.array, 2.0 * stored - 1024.0)
    # Column spacing (0.75) along i, row spacing (0.5) along j, position spacing (2) along k.
    expected = np.array([[-0.75, 0, 0, 10.0], [0, -0.5, 0, 20.0], [0, 0, 2.0, 0.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(volume.affine, expected, atol=1e-6)


def test_per_slice_rescale_is_applied_per_slice(tmp_path):
    for n, (slope, intercept) in enumerate([(1.0, -1024.0), (2.0, -1000.0), (0.5, -10.0)]):
        write_series(tmp_path / str(n), [(-10.0, -20.0, 3.0 * n)], slope=slope, intercept=intercept, prefix=f"x{n}")
    volume = read_dicom_series(tmp_path)
    stored = 1000 + np.arange(SIZE)  # row 0 of each slice (n = 0 in each one-slice write)
    np.testing.assert_array_equal(volume.array[:, 0, 0], stored - 1024.0)
    np.testing.assert_array_equal(volume.array[:, 0, 1], 2.0 * stored - 1000.0)
    np.testing.assert_array_equal(volume.array[:, 0, 2], 0.5 * stored - 10.0)


def test_descending_positions_and_coronal_orientation_keep_world_coordinates(tmp_path):
    # Coronal slices: rows run left->right (+x), columns run head->feet (-z), normal is +y... or -y.
    orientation = (1, 0, 0, 0, 0, -1)
    normal = np.cross([1, 0, 0], [0, 0, -1])
    positions = [np.array([5.0, 0.0, 40.0]) + normal * 1.5 * n for n in (3, 2, 1, 0)]  # written descending
    write_series(tmp_path, positions, orientation=orientation)
    volume = read_dicom_series(tmp_path)
    headers = [pydicom.dcmread(p) for p in sorted(tmp_path.iterdir())]
    for header in headers:
        ipp = np.array([float(v) for v in header.ImagePositionPatient])
        k = int(round(float((ipp - positions[-1]) @ normal) / 1.5))
        # voxel (column c, row r) of this file sits at ipp + c*0.75*row_dir + r*0.5*col_dir (LPS)
        for r, c in [(0, 0), (7, 0), (0, 7), (3, 5)]:
            lps = ipp + c * 0.75 * np.array([1, 0, 0]) + r * 0.5 * np.array([0, 0, -1])
            ras = lps * [-1, -1, 1]
            np.testing.assert_allclose(voxel_world_coordinates(volume, (c, r, k)), ras, atol=1e-5)
            assert volume.array[c, r, k] == header.pixel_array[r, c] - 1024.0


def test_two_ct_series_raise_listing_both_and_uid_selects(tmp_path):
    write_series(tmp_path, axial([0, 1, 2]), series_uid="1.2.3.1", description="soft tissue", prefix="a")
    write_series(
        tmp_path, axial([0, 1, 2, 3]), series_uid="1.2.3.2", description="bone kernel", prefix="b", intercept=0.0
    )
    with pytest.raises(DicomSeriesError) as info:
        read_dicom_series(tmp_path)
    message = str(info.value)
    for text in ("1.2.3.1", "1.2.3.2", "soft tissue", "bone kernel", "slices=3", "slices=4", "series_uid"):
        assert text in message

    volume = read_dicom_series(tmp_path, series_uid="1.2.3.2")
    assert volume.shape == (SIZE, SIZE, 4) and volume.array[0, 0, 0] == 1000.0
    assert read_dicom_series(tmp_path, series_uid="1.2.3.1").array[0, 0, 0] == 1000.0 - 1024.0
    with pytest.raises(DicomSeriesError, match=r"no series with uid 9.9"):
        select_series(tmp_path, series_uid="9.9")


def test_uneven_spacing_raises_with_gap_sizes(tmp_path):
    write_series(tmp_path, axial([0.0, 1.0, 2.0, 4.0, 5.0]))  # one slice missing
    with pytest.raises(DicomSeriesError, match="uneven slice spacing") as info:
        read_dicom_series(tmp_path)
    assert "1.000 mm" in str(info.value) and "2.000 mm" in str(info.value)


def test_small_position_jitter_is_accepted():
    headers = [make_slice((0, 0, z)) for z in (0.0, 2.004, 3.998, 6.0)]  # within 1% of 2 mm
    geometry = check_series_geometry(headers)
    assert geometry.spacing[2] == pytest.approx(2.0)


def test_tilted_gantry_raises_with_angle(tmp_path):
    # Positions advance 1 mm along the normal (z) and drift 0.2 mm in y per slice: ~11.3 degrees.
    write_series(tmp_path, [(0.0, 0.2 * n, 1.0 * n) for n in range(4)])
    with pytest.raises(DicomSeriesError, match="tilt") as info:
        read_dicom_series(tmp_path)
    assert "11.31 degrees" in str(info.value)


def _oblique_positions(tilt_degrees: float, n: int = 24, spacing: float = 2.5):
    """An oblique stack (rotated 20 degrees about x); the slices shift along the column axis by
    tan(tilt) per mm of advance along the normal (0: no tilt)."""
    a = math.radians(20.0)
    column, normal = np.array([0.0, math.cos(a), math.sin(a)]), np.array([0.0, -math.sin(a), math.cos(a)])
    origin = np.array([-101.37, -87.21, -312.64])
    shift = math.tan(math.radians(tilt_degrees))
    return [origin + k * spacing * (normal + shift * column) for k in range(n)], (1, 0, 0, *column)


def test_positions_rounded_to_a_tenth_of_a_millimetre_are_not_a_tilt(tmp_path):
    """Scanners that write one decimal used to be refused as a 'gantry tilt of about 0.25 degrees'."""
    positions, orientation = _oblique_positions(0.0)
    write_series(tmp_path / "rounded", positions, orientation=orientation, decimals=1)
    volume = read_dicom_series(tmp_path / "rounded")
    assert volume.spacing[2] == pytest.approx(2.5, abs=0.01)
    assert dicom.position_precision_mm(
        make_slice(p, orientation=orientation, decimals=1) for p in positions
    ) == pytest.approx(0.1)
    # A real tilt is still refused, at the same precision, and a tenth of it with full precision.
    positions, orientation = _oblique_positions(2.0)
    write_series(tmp_path / "tilted", positions, orientation=orientation, decimals=1)
    with pytest.raises(DicomSeriesError, match=r"gantry tilt of about (1\.9\d|2\.0\d) degrees"):
        read_dicom_series(tmp_path / "tilted")
    positions, orientation = _oblique_positions(0.2)
    write_series(tmp_path / "slight", positions, orientation=orientation, decimals=6)
    with pytest.raises(DicomSeriesError, match=r"gantry tilt of about 0\.(19|20) degrees"):
        read_dicom_series(tmp_path / "slight")


@pytest.mark.parametrize("kept_bytes", [200, -40], ids=["header", "pixels"])
def test_a_truncated_slice_file_is_named(tmp_path, kept_bytes):
    """A slice cut in its header used to vanish from the series (then 'uneven spacing'); one cut in
    its pixels gave ITK's error, which names the folder only."""
    files = write_series(tmp_path, axial([0.0, 1.0, 2.0, 3.0]))
    content = files[1].read_bytes()
    files[1].write_bytes(content[:kept_bytes])
    with pytest.raises(DicomSeriesError, match=r"truncated|less than expected") as error:
        read_dicom_series(tmp_path)
    assert str(files[1]) in str(error.value)


def test_duplicate_positions_raise():
    headers = [make_slice((0, 0, z)) for z in (0.0, 1.0, 1.0, 2.0)]
    with pytest.raises(DicomSeriesError, match="share a position"):
        check_series_geometry(headers)


def test_single_slice_is_a_2d_image(tmp_path):
    write_series(tmp_path, axial([0.0]))
    with pytest.raises(ImageReadError, match="2D"):
        read_dicom_series(tmp_path)


@pytest.mark.parametrize("missing", ["ImagePositionPatient", "ImageOrientationPatient"])
def test_missing_position_or_orientation_raises(missing):
    headers = [make_slice((0, 0, z)) for z in (0.0, 1.0, 2.0)]
    delattr(headers[1], missing)
    with pytest.raises(DicomSeriesError, match=missing):
        check_series_geometry(headers)


def test_mixed_orientations_raise():
    headers = [make_slice((0, 0, z)) for z in (0.0, 1.0)] + [make_slice((0, 0, 2.0), orientation=(1, 0, 0, 0, 0, -1))]
    with pytest.raises(DicomSeriesError, match="ImageOrientationPatient"):
        check_series_geometry(headers)


def test_order_ignores_instance_number():
    zs = [4.0, 0.0, 2.0, 6.0]
    headers = [make_slice((0, 0, z), instance=n) for n, z in enumerate([3, 1, 4, 2])]
    for header, z in zip(headers, zs, strict=True):
        header.ImagePositionPatient = [0, 0, z]
    geometry = check_series_geometry(headers)
    assert geometry.order == [1, 2, 0, 3]
    np.testing.assert_allclose(geometry.origin_lps, [0, 0, 0])


def test_folder_without_dicom_files(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    assert list_dicom_series(tmp_path) == []
    with pytest.raises(DicomSeriesError, match="no DICOM files"):
        read_dicom_series(tmp_path)
    with pytest.raises(ImageReadError, match="does not exist"):
        read_dicom_series(tmp_path / "nowhere")


def test_only_a_seg_object_means_no_ct_series(tmp_path):
    shutil.copy(DCMQI / "seg" / "liver.dcm", tmp_path)
    with pytest.raises(DicomSeriesError, match="no CT series"):
        select_series(tmp_path)


def test_itk_geometry_disagreement_is_refused(tmp_path, monkeypatch):
    write_series(tmp_path, axial([0.0, 1.0, 2.0]))
    real_reader = dicom._read_pixels_itk

    def reversed_reader(files):
        array, affine = real_reader(files)
        affine[:3, 2] *= -1  # as if the pixel reader had stacked the slices the other way
        return array, affine

    monkeypatch.setattr(dicom, "_read_pixels_itk", reversed_reader)
    with pytest.raises(DicomSeriesError, match="geometry ITK reports differs"):
        read_dicom_series(tmp_path)
