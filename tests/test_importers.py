"""``build_dataset`` and ``import_nih_pancreas``: matching, the NIH label conversion, and the errors.

The NIH proof: a real DICOM series and a mask made for it (stored LAS, read onto the DICOM grid
with ``load_label``) are turned into an NIH-like case the way the NIH archive stores it - label
slices in InstanceNumber order, in-plane axes transposed against pydicom's ``pixel_array``, a
header that says nothing about the DICOM geometry - and ``import_nih_pancreas`` must give back the
on-grid mask voxel for voxel. The NIH-like label is built here from the DICOM headers alone
(positions and InstanceNumbers read with pydicom), independently of the importer's code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from atso_med.data import (
    Dataset,
    build_dataset,
    import_nih_pancreas,
    load_case,
    load_image,
    load_label,
    save_nifti,
    verify_dataset,
)
from atso_med.errors import ConfigError, DatasetError

REAL = Path(__file__).parent / "data" / "real"
DICOM20 = REAL / "totalseg_ct_dicom20" / "dicom"
MASK20 = REAL / "totalseg_ct_dicom20" / "DERIVED_pancreas_mask_pseudo.nii.gz"
# An affine that has nothing to do with the DICOM geometry, as NIH label headers.
NIH_HEADER_AFFINE = np.array([[0.7, 0, 0, 12.0], [0, -0.7, 0, 3.0], [0, 0, 1.0, -40.0], [0, 0, 0, 1]])
SMALL_AFFINE = np.diag([1.5, 1.5, 2.5, 1.0])


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def on_grid_mask() -> np.ndarray:
    """The real mask on the real series' voxel grid, indexed (column, row, slice by position)."""
    image = load_image(DICOM20)
    mask = load_label(MASK20, image)
    assert mask.shape == (512, 512, 20) and 0 < int(mask.sum()) < mask.size
    # The test is meaningless for a mask symmetric under the in-plane transpose or under a reversal.
    assert not np.array_equal(mask, mask.transpose(1, 0, 2))
    assert not np.array_equal(mask, mask[:, :, ::-1])
    return mask


def position_rank(headers: list) -> list[int]:
    """Each file's index along the slice normal (ascending), computed from its own header."""
    iop = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    distance = [float(np.array([float(v) for v in h.ImagePositionPatient]) @ normal) for h in headers]
    order = np.argsort(distance)
    rank = np.empty(len(headers), int)
    rank[order] = np.arange(len(headers))
    return rank.tolist()


def copy_series(target: Path, instance_numbers: list[int] | None = None) -> list:
    """Copy the real series to ``target`` (TCIA-like file names); optionally renumber the copies.

    Returns:
        The headers of the copies, in the order of ``sorted(DICOM20.iterdir())``.
    """
    target.mkdir(parents=True)
    headers = []
    for index, source in enumerate(sorted(DICOM20.iterdir())):
        destination = target / f"1-{index + 1:03d}.dcm"
        if instance_numbers is None:
            shutil.copyfile(source, destination)
        else:
            ds = pydicom.dcmread(source)  # encapsulated JPEG 2000 pixel data is written back untouched
            ds.InstanceNumber = instance_numbers[index]
            ds.save_as(destination)
        headers.append(pydicom.dcmread(destination, stop_before_pixels=True))
    return headers


def write_nih_label(mask: np.ndarray, headers: list, path: Path, row_column: bool = False, dtype=np.int16) -> None:
    """Write ``mask`` (on the DICOM grid) the way NIH labels are stored.

    The reference implementations build an image slice by slice: the file with InstanceNumber n
    becomes slice n-1 (here: the rank of n), holding pydicom's ``pixel_array`` (row, column). NIH
    labels match that stack after a (1, 0, 2) transpose, i.e. they are stored (column, row,
    InstanceNumber rank); ``row_column`` writes the untransposed variant.
    """
    ranks = position_rank(headers)
    numbers = [int(h.InstanceNumber) for h in headers]
    by_instance = np.argsort(numbers)
    reference_stack = np.zeros((mask.shape[1], mask.shape[0], len(headers)), dtype)
    for slot, header_index in enumerate(by_instance):
        reference_stack[:, :, slot] = mask[:, :, ranks[header_index]].T  # (row, column) like pixel_array
    stored = reference_stack if row_column else reference_stack.transpose(1, 0, 2)
    image = nib.Nifti1Image(np.ascontiguousarray(stored), NIH_HEADER_AFFINE)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def tcia_case(root: Path, number: int, instance_numbers: list[int] | None = None) -> list:
    series = root / "Pancreas-CT" / f"PANCREAS_{number:04d}" / f"1.2.3.{number}" / f"1.2.3.{number}.1"
    return copy_series(series, instance_numbers)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def small_nifti(path: Path, value: float = 40.0, label: bool = False) -> Path:
    shape = (8, 8, 6)
    if label:
        array = np.zeros(shape, np.uint8)
        array[2:5, 3:6, 1:4] = 1
    else:
        array = np.random.default_rng(0).normal(value, 100, shape).astype(np.int16)
    return save_nifti(array, SMALL_AFFINE, path)


# ------------------------------------------------------------------------------------------
# import_nih_pancreas
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nih_tree(tmp_path_factory, on_grid_mask) -> Path:
    """TCIA-like tree: case 1 as shipped (InstanceNumber falls as the position rises), case 2
    renumbered in a shuffled order, case 25 (a TCIA duplicate), and an NIH-like label for each."""
    root = tmp_path_factory.mktemp("nih")
    headers = tcia_case(root, 1)
    write_nih_label(on_grid_mask, headers, root / "labels" / "label0001.nii.gz")
    shuffled = [int(n) for n in np.random.default_rng(7).permutation(20) + 1]
    headers = tcia_case(root, 2, shuffled)
    write_nih_label(on_grid_mask, headers, root / "labels" / "label0002.nii.gz")
    headers = tcia_case(root, 25)
    write_nih_label(on_grid_mask, headers, root / "labels" / "label0025.nii.gz")
    return root


def test_nih_import_gives_the_on_grid_mask_voxel_for_voxel(nih_tree, on_grid_mask, tmp_path, capsys):
    before = digest(nih_tree)
    raw = np.asarray(nib.load(str(nih_tree / "labels" / "label0001.nii.gz")).dataobj)
    assert raw.shape == on_grid_mask.shape and not np.array_equal(raw, on_grid_mask)  # a real conversion is needed

    out = tmp_path / "nih_out"
    dataset = import_nih_pancreas(nih_tree, nih_tree / "labels", out)

    assert dataset.ids == ["PANCREAS_0001", "PANCREAS_0002"]
    note = capsys.readouterr().out
    assert "skipping case 25" in note and "duplicate of case 2" in note
    for case in dataset.cases:
        assert case.label == (out / "labels" / f"label{case.id[-4:]}.nii.gz").resolve()
        assert case.image.is_relative_to(nih_tree.resolve()) and case.image.name == f"1.2.3.{int(case.id[-4:])}.1"
        image, label = load_case(case)
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, on_grid_mask)
        stored = nib.load(str(case.label))
        np.testing.assert_allclose(stored.affine, image.affine, atol=1e-5)
        assert int(stored.header["sform_code"]) == 1 and int(stored.header["qform_code"]) == 1
        np.testing.assert_array_equal(np.asarray(stored.dataobj), on_grid_mask)  # already in the image's voxel order
    data = json.loads((out / "dataset.json").read_text())
    assert data["labels"] == {"0": "background", "1": "pancreas"}
    assert all(not Path(c["image"]).is_absolute() and c["image"].startswith("..") for c in data["cases"])
    assert data["cases"][0]["source_label"].endswith("label0001.nii.gz")
    report = verify_dataset(out / "dataset.json")
    assert report.ok, report.errors
    assert digest(nih_tree) == before  # the originals are read, never written


def test_nih_keep_duplicates_and_the_pancreas_ct_parent(nih_tree, tmp_path, capsys):
    # dicom_root may also be the Pancreas-CT folder itself.
    dataset = import_nih_pancreas(nih_tree / "Pancreas-CT", nih_tree / "labels", tmp_path / "o", keep_duplicates=True)
    assert dataset.ids == ["PANCREAS_0001", "PANCREAS_0002", "PANCREAS_0025"]
    assert "skipping" not in capsys.readouterr().out


def test_nih_label_inplane_parameter(tmp_path, on_grid_mask):
    headers = tcia_case(tmp_path, 1)
    write_nih_label(on_grid_mask, headers, tmp_path / "labels" / "label0001.nii.gz", row_column=True, dtype=np.uint8)
    dataset = import_nih_pancreas(tmp_path, tmp_path / "labels", tmp_path / "rc", label_inplane="row-column")
    converted = np.asarray(nib.load(str(dataset.cases[0].label)).dataobj)
    np.testing.assert_array_equal(converted, on_grid_mask)
    # The same file read with the NIH convention lands transposed: the parameter really acts.
    dataset = import_nih_pancreas(tmp_path, tmp_path / "labels", tmp_path / "cr")
    converted = np.asarray(nib.load(str(dataset.cases[0].label)).dataobj)
    np.testing.assert_array_equal(converted, on_grid_mask.transpose(1, 0, 2))
    with pytest.raises(ConfigError, match="label_inplane"):
        import_nih_pancreas(tmp_path, tmp_path / "labels", tmp_path / "x", label_inplane="xy")


def test_nih_errors_are_listed_before_anything_is_written(nih_tree, tmp_path, on_grid_mask):
    labels = tmp_path / "labels"
    shutil.copytree(nih_tree / "labels", labels)
    shutil.copyfile(labels / "label0001.nii.gz", labels / "label0003.nii.gz")  # no PANCREAS_0003
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"label without an image: .*label0003") as error:
        import_nih_pancreas(nih_tree, labels, out)
    assert "allow_missing_images" in str(error.value)
    assert not out.exists()
    dataset = import_nih_pancreas(nih_tree, labels, out, allow_missing_images=True)
    assert dataset.ids == ["PANCREAS_0001", "PANCREAS_0002"]

    # An existing dataset.json is not replaced silently.
    with pytest.raises(DatasetError, match=r"already exists.*overwrite=True"):
        import_nih_pancreas(nih_tree, labels, out, allow_missing_images=True)
    import_nih_pancreas(nih_tree, labels, out, allow_missing_images=True, overwrite=True)

    # Converted labels must never replace the originals.
    with pytest.raises(DatasetError, match="would overwrite original labels"):
        import_nih_pancreas(nih_tree, labels, tmp_path, allow_missing_images=True)

    with pytest.raises(DatasetError, match="no NIH case folders found"):
        import_nih_pancreas(tmp_path / "labels", labels, tmp_path / "o2")
    with pytest.raises(DatasetError, match="DICOM root not found"):
        import_nih_pancreas(tmp_path / "nowhere", labels, tmp_path / "o2")
    with pytest.raises(DatasetError, match="no NIH labels found"):
        import_nih_pancreas(nih_tree, nih_tree, tmp_path / "o2")


def test_nih_shape_and_series_errors(tmp_path, on_grid_mask):
    headers = tcia_case(tmp_path, 1)
    write_nih_label(on_grid_mask[:, :, :19], headers[:19], tmp_path / "labels" / "label0001.nii.gz")
    tcia_case(tmp_path, 2)
    extra = tmp_path / "Pancreas-CT" / "PANCREAS_0002" / "other_series"
    shutil.copytree(DICOM20, extra)
    (tmp_path / "Pancreas-CT" / "PANCREAS_0004").mkdir()
    with pytest.raises(DatasetError) as error:
        import_nih_pancreas(tmp_path, tmp_path / "labels", tmp_path / "out")
    message = str(error.value)
    assert "PANCREAS_0002: 2 folders hold DICOM files" in message
    assert "PANCREAS_0004: no DICOM files" in message
    # Shape problems come from reading the headers, which happens once the layout is sound.
    shutil.rmtree(extra)
    (tmp_path / "Pancreas-CT" / "PANCREAS_0004").rmdir()
    with pytest.raises(DatasetError, match=r"label shape \(512, 512, 19\) does not fit the series"):
        import_nih_pancreas(tmp_path, tmp_path / "labels", tmp_path / "out")
    (tmp_path / "labels" / "label0002.nii.gz").write_bytes(b"not a NIfTI file")
    with pytest.raises(DatasetError) as error:
        import_nih_pancreas(tmp_path, tmp_path / "labels", tmp_path / "out")
    assert "PANCREAS_0002: " in str(error.value) and "cannot read the NIfTI header" in str(error.value)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------
# build_dataset
# ------------------------------------------------------------------------------------------


def test_build_dataset_matches_by_number_and_references_files(tmp_path):
    images, labels = tmp_path / "data" / "images", tmp_path / "data" / "labels"
    small_nifti(images / "PANCREAS_0001.nii.gz")
    small_nifti(images / "PANCREAS_0002.nii")
    small_nifti(images / "PANCREAS_0003.nii.gz")  # no label: an unlabeled case
    copy_series(images / "PANCREAS_0004" / "study" / "series")  # a DICOM case, found below its folder
    (images / "notes.txt").write_text("not an image")
    small_nifti(labels / "label0001.nii.gz", label=True)
    small_nifti(labels / "label2.nii.gz", label=True)  # numbers compare as numbers
    before = digest(tmp_path / "data")

    out = tmp_path / "project" / "dataset.json"
    dataset = build_dataset(images, labels, out_json=out, name="mine")

    assert dataset.ids == ["PANCREAS_0001", "PANCREAS_0002", "PANCREAS_0003", "PANCREAS_0004"]
    assert dataset.labeled_ids == ["PANCREAS_0001", "PANCREAS_0002"]
    assert dataset.case("PANCREAS_0002").label == (labels / "label2.nii.gz").resolve()
    assert dataset.case("PANCREAS_0004").image == (images / "PANCREAS_0004" / "study" / "series").resolve()
    assert dataset.labels == {0: "background", 1: "pancreas"}
    data = json.loads(out.read_text())
    assert data["cases"][0] == {
        "id": "PANCREAS_0001",
        "image": "../data/images/PANCREAS_0001.nii.gz",
        "label": "../data/labels/label0001.nii.gz",
    }
    assert digest(tmp_path / "data") == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and "data" not in p.parts) == ["dataset.json"]
    report = verify_dataset(dataset)
    assert report.ok, report.errors

    with pytest.raises(DatasetError, match="already exists"):
        build_dataset(images, labels, out_json=out, name="mine")
    again = build_dataset(
        images, None, out_json=out.parent, name="mine2", overwrite=True, labels_map={0: "bg", 1: "organ"}
    )
    assert again.labeled_ids == [] and again.labels == {0: "bg", 1: "organ"} and again.path == out.resolve()


def test_build_dataset_custom_matching(tmp_path):
    folder = tmp_path / "scans"
    small_nifti(folder / "ct_full.nii.gz")
    small_nifti(folder / "ct_upper.nii.gz")
    small_nifti(folder / "mask_full.nii.gz", label=True)
    small_nifti(folder / "mask_upper.nii.gz", label=True)

    # Images and labels share a folder: globs tell them apart, a regular expression reads the id.
    dataset = build_dataset(
        folder,
        folder,
        out_json=tmp_path / "a.json",
        name="a",
        image_glob="ct_*",
        label_glob="mask_*",
        id_from=r"_(?P<id>[a-z]+)$",
    )
    assert dataset.ids == ["full", "upper"]
    assert dataset.case("upper").label.name == "mask_upper.nii.gz"

    # A function of the path, and explicit lists of files.
    dataset = build_dataset(
        [folder / "ct_full.nii.gz"],
        [folder / "mask_full.nii.gz"],
        out_json=tmp_path / "b.json",
        name="b",
        id_from=lambda path: "case-" + path.name.split("_")[1].split(".")[0],
    )
    assert dataset.ids == ["case-full"] and dataset.labeled_ids == ["case-full"]

    with pytest.raises(DatasetError, match="found both as image and as label"):
        build_dataset(folder, folder, out_json=tmp_path / "c.json", name="c", id_from=r"_(\w+)$")
    with pytest.raises(DatasetError, match=r"'ct_full' does not match id_from"):
        build_dataset(folder, out_json=tmp_path / "c.json", name="c", id_from=r"\d+")
    with pytest.raises(ConfigError, match="invalid regular expression"):
        build_dataset(folder, out_json=tmp_path / "c.json", name="c", id_from="(")
    assert not (tmp_path / "c.json").exists()


def test_build_dataset_errors(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    (images / "empty_folder").mkdir(parents=True)
    labels.mkdir()
    out = tmp_path / "dataset.json"

    with pytest.raises(DatasetError, match=r"no images found in .*images"):
        build_dataset(images, out_json=out, name="x")
    with pytest.raises(DatasetError, match=r"images folder not found: .*nowhere"):
        build_dataset(tmp_path / "nowhere", out_json=out, name="x")
    with pytest.raises(DatasetError, match=r"image not found: .*missing.nii.gz"):
        build_dataset([tmp_path / "missing.nii.gz"], out_json=out, name="x")

    small_nifti(images / "PANCREAS_0001.nii.gz")
    small_nifti(images / "case1.nii.gz")  # a second image with number 1
    small_nifti(images / "scan_2_v3.nii.gz")  # two numbers: no id
    small_nifti(labels / "label0001.nii.gz", label=True)
    small_nifti(labels / "label0009.nii.gz", label=True)  # no image 9
    with pytest.raises(DatasetError) as error:
        build_dataset(images, labels, out_json=out, name="x")
    message = str(error.value)
    assert "ambiguous: 2 images have case id '1'" in message and "case1.nii.gz" in message
    assert "'scan_2_v3' holds several numbers (2, 3); pass id_from" in message
    assert "label(s) without an image: " in message and "label0009.nii.gz" in message
    assert not out.exists()

    (images / "case1.nii.gz").unlink()
    (images / "scan_2_v3.nii.gz").unlink()
    (labels / "label0009.nii.gz").unlink()
    with pytest.raises(DatasetError, match="'name' must be a non-empty string"):
        build_dataset(images, labels, out_json=out, name=" ")
    with pytest.raises(DatasetError, match="must include 0"):
        build_dataset(images, labels, out_json=out, name="x", labels_map={"1": "pancreas"})
    with pytest.raises(DatasetError, match="is one of the input files"):
        build_dataset(images, labels, out_json=labels / "label0001.nii.gz", name="x", overwrite=True)
    assert not out.exists()
    assert Dataset.load(build_dataset(images, labels, out_json=out, name="x").path).labeled_ids == ["PANCREAS_0001"]
