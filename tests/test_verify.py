"""``verify_dataset`` and ``atso-med verify``: every check, with a specific message per bad case."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset as DicomDataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from atso_med.cli.main import main
from atso_med.data.dataset import Dataset
from atso_med.data.nifti import save_nifti
from atso_med.data.splits import Splits
from atso_med.data.verify import verify_dataset
from atso_med.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 6)
# LPS-oriented grid (as DICOM-derived NIfTI often is): 1.5 x 1.5 x 2.5 mm.
AFFINE = np.array([[-1.5, 0, 0, 10.0], [0, -1.5, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
SERIES_A = "1.2.826.0.1.3680043.8.498.1001"
SERIES_B = "1.2.826.0.1.3680043.8.498.1002"


def ct_array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(40, 200, SHAPE).astype(np.float32)


def mask() -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[2:5, 3:6, 1:4] = 1  # 27 voxels
    return label


def write_ct_series(folder: Path, series_uid: str, z_positions, tilt_deg: float = 0.0, size: int = 4) -> None:
    """Write one tiny uncompressed CT series, one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    t = math.radians(tilt_deg)
    # A tilted gantry: columns run tilted about x while the table (positions) moves along z.
    orientation = [1.0, 0.0, 0.0, 0.0, math.cos(t), math.sin(t)]
    study, frame = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    for index, z in enumerate(z_positions):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = DicomDataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.SeriesDescription = "CT", "TEST", f"series {series_uid[-4:]}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        ds.ImageOrientationPatient = orientation
        if tilt_deg:
            ds.GantryDetectorTilt = tilt_deg
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.full((size, size), 1000 + index, np.int16).tobytes()
        ds.save_as(folder / f"{series_uid[-4:]}_{index:03d}.dcm", enforce_file_format=True)


def build_mixed_dataset(root: Path) -> Path:
    """One dataset holding a good case and one case per problem verify must name."""
    ct, lab = ct_array(), mask()
    cases, images = [], []

    def add(case_id: str, image=None, label=None, **extra) -> None:
        entry = {"id": case_id, "image": image or f"img/{case_id}.nii.gz", **extra}
        if label is not None:
            entry["label"] = label
        cases.append(entry)

    def nifti(name: str, array: np.ndarray, affine: np.ndarray = AFFINE) -> str:
        if name.startswith("img/"):  # every image its own voxels: no two cases are copies of one image
            images.append(name)
            array = array + float(len(images))
        save_nifti(array, affine, root / name)
        return name

    add("good", nifti("img/good.nii.gz", ct), nifti("lab/good.nii.gz", lab))
    # Same world grid, second axis stored reversed: LAS instead of LPS.
    las = AFFINE.copy()
    las[:3, 1] *= -1
    las[:3, 3] = AFFINE[:3, 3] + AFFINE[:3, 1] * (SHAPE[1] - 1)
    add("las_label", nifti("img/las.nii.gz", ct), nifti("lab/las.nii.gz", lab[:, ::-1, :].copy(), las))
    add("unlabeled", nifti("img/unlabeled.nii.gz", ct))
    add("missing_image", "img/not_there.nii.gz", nifti("lab/mi.nii.gz", lab))
    add("missing_label", nifti("img/ml.nii.gz", ct), "lab/not_there.nii.gz")
    truncated = root / nifti("img/truncated.nii.gz", ct)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    add("truncated", "img/truncated.nii.gz")
    (root / "img/zero_bytes.nii.gz").write_bytes(b"")
    add("zero_bytes", "img/zero_bytes.nii.gz")
    add("zero_size", nifti("img/zero_size.nii.gz", np.zeros((8, 8, 0), np.float32)))
    add("image_2d", nifti("img/flat.nii.gz", ct[:, :, 0].copy()))
    with_nan = ct.copy()
    with_nan[0, 0, :3] = np.nan
    add("nan_voxels", nifti("img/nan.nii.gz", with_nan))
    add("label_shape", nifti("img/ls.nii.gz", ct), nifti("lab/ls.nii.gz", lab[:, :, :5].copy()))
    flipped = AFFINE.copy()
    flipped[:3, 0] *= -1  # direction of the first axis reversed, origin kept: another place in space
    add("label_elsewhere", nifti("img/le.nii.gz", ct), nifti("lab/le.nii.gz", lab, flipped))
    undeclared = lab.copy()
    undeclared[0, 0, :2] = 2
    add("label_value_2", nifti("img/v2.nii.gz", ct), nifti("lab/v2.nii.gz", undeclared))
    fractional = lab.astype(np.float32)
    fractional[7, 7, 5] = 0.5
    add("label_fraction", nifti("img/fr.nii.gz", ct), nifti("lab/fr.nii.gz", fractional))
    add("label_empty", nifti("img/em.nii.gz", ct), nifti("lab/em.nii.gz", np.zeros(SHAPE, np.uint8)))

    write_ct_series(root / "dcm/two", SERIES_A, [0, 2, 4])
    write_ct_series(root / "dcm/two", SERIES_B, [0, 3, 6])
    add("dicom_two_series", "dcm/two")
    add("dicom_chosen_series", "dcm/two", series_uid=SERIES_B)
    write_ct_series(root / "dcm/uneven", SERIES_A, [0, 2, 4, 7, 9])
    add("dicom_uneven", "dcm/uneven")
    write_ct_series(root / "dcm/tilt", SERIES_A, [0, 2, 4, 6], tilt_deg=20.0)
    add("dicom_tilt", "dcm/tilt")

    path = root / "dataset.json"
    path.write_text(json.dumps({"name": "mixed", "labels": {"0": "background", "1": "pancreas"}, "cases": cases}))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    path = build_mixed_dataset(root)
    before = tree_digest(root)
    report = verify_dataset(path)
    return root, path, report, before


@pytest.fixture
def only_our_commands(monkeypatch):
    """Register just verify and split, so these tests do not depend on other subcommands' modules."""
    # atso_med.cli.main is shadowed by the function of that name in atso_med.cli: fetch the module.
    monkeypatch.setattr(importlib.import_module("atso_med.cli.main"), "COMMANDS", ("verify", "split"))


def row(report, case_id):
    return next(r for r in report.rows if r.id == case_id)


def test_good_case_row(mixed):
    good = row(mixed[2], "good")
    assert good.status == "ok"
    cells = good.cells()
    assert cells["shape"] == "8x8x6" and cells["spacing (mm)"] == "1.50x1.50x2.50" and cells["orient"] == "LPS"
    assert cells["label values"] == "0,1" and cells["voxels per label"] == f"0:{8 * 8 * 6 - 27} 1:27"


def test_label_stored_in_another_orientation_passes(mixed):
    las = row(mixed[2], "las_label")
    assert las.status == "ok" and las.label_counts == {0: 8 * 8 * 6 - 27, 1: 27}


def test_unlabeled_case_is_ok(mixed):
    unlabeled = row(mixed[2], "unlabeled")
    assert unlabeled.status == "ok" and unlabeled.cells()["label values"] == "no label"


@pytest.mark.parametrize(
    ("case_id", "pattern"),
    [
        ("missing_image", r"^error: image not found: .*not_there\.nii\.gz"),
        ("missing_label", r"^error: label not found: .*not_there\.nii\.gz"),
        ("truncated", r"^error: image unreadable: .*truncated"),
        ("zero_bytes", r"^error: image unreadable: .*zero_bytes\.nii\.gz"),
        ("zero_size", r"^error: image (unreadable: .*|is )empty"),
        ("image_2d", r"^error: image (unreadable: .*2D|is 2D)"),
        ("nan_voxels", r"^error: image (has non-finite voxels: 3 NaN, 0 inf|unreadable: .*NaN)"),
        ("label_shape", r"^error: label unusable: .*shape"),
        ("label_elsewhere", r"^error: label unusable: .*(direction|grid|world)"),
        ("label_value_2", r"^error: label values not among the declared classes \{0, 1\}: 2 \(2 voxels\)$"),
        ("label_fraction", r"^error: label has non-integer values: 0\.5 \(1 voxels\)"),
        ("dicom_two_series", rf"^error: image unreadable: .*2 CT series.*{SERIES_A}.*{SERIES_B}"),
        ("dicom_uneven", r"^error: image unreadable: .*uneven slice spacing"),
        ("dicom_tilt", r"^error: image unreadable: .*gantry tilt"),
    ],
)
def test_each_problem_has_a_specific_message(mixed, case_id, pattern):
    status = row(mixed[2], case_id).status
    assert "\n" not in status
    assert re.search(pattern, status, flags=re.I), status


def test_empty_label_is_a_warning_not_an_error(mixed):
    empty = row(mixed[2], "label_empty")
    assert empty.ok and empty.status.startswith("ok (warning: label is empty")
    assert "label_empty: label is empty (background only); accepted as a case without the organ" in mixed[2].warnings


def test_series_uid_picks_one_series_of_a_multi_series_folder(mixed):
    chosen = row(mixed[2], "dicom_chosen_series")
    assert chosen.status == "ok" and chosen.shape == (4, 4, 3) and chosen.spacing[2] == pytest.approx(3.0)


def test_report_collects_every_bad_case_and_modifies_nothing(mixed):
    root, _, report, before = mixed
    bad = {r.id for r in report.rows if not r.ok}
    good = {"good", "las_label", "unlabeled", "label_empty", "dicom_chosen_series"}
    assert bad == {r.id for r in report.rows} - good
    assert not report.ok and len(report.rows) == 19
    assert {e.split(":")[0] for e in report.errors} == bad
    table = report.format_table().splitlines()
    assert len(table) == 2 + len(report.rows) and table[0].startswith("id")
    assert all(any(line.startswith(r.id + " ") for line in table) for r in report.rows)
    assert tree_digest(root) == before


def test_splits_problems_are_reported(mixed):
    _, path, _, _ = mixed
    dataset = Dataset.load(path)
    splits = Splits(["good", "ghost"], [["las_label", "good"], ["unlabeled"]], ["label_empty"])
    # Only the cases named in the splits matter here; check a dataset trimmed to them for speed.
    dataset.cases = [c for c in dataset.cases if c.id in {"good", "las_label", "unlabeled", "label_empty"}]
    report = verify_dataset(dataset, splits)
    assert "splits: labeled ids not in dataset.json: 'ghost'" in report.errors
    assert "splits: id 'good' is in more than one place: labeled and reference[0]" in report.errors
    assert not report.ok and all(r.ok for r in report.rows)
    assert [r.role for r in report.rows] == ["labeled", "reference[0]", "reference[1]", "test"]
    assert report.format_table().splitlines()[0].split()[:2] == ["id", "role"]


def test_two_cases_on_one_image_file_are_flagged(tmp_path):
    save_nifti(ct_array(), AFFINE, tmp_path / "a.nii.gz")
    cases = [{"id": "p2", "image": "a.nii.gz"}, {"id": "p25", "image": "./a.nii.gz"}]
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"name": "dup", "labels": {"0": "bg"}, "cases": cases}))
    report = verify_dataset(path)
    assert report.ok and report.warnings == ["p2: same image file as p25", "p25: same image file as p2"]


def test_duplicate_ids_in_raw_json_are_a_dataset_error(tmp_path, capsys, only_our_commands):
    save_nifti(ct_array(), AFFINE, tmp_path / "a.nii.gz")
    cases = [{"id": "a", "image": "a.nii.gz"}, {"id": "b", "image": "a.nii.gz"}, {"id": "a", "image": "a.nii.gz"}]
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"name": "dup", "labels": {"0": "bg"}, "cases": cases}))
    with pytest.raises(DatasetError, match="duplicate case id\\(s\\): 'a' \\(2 times\\)"):
        verify_dataset(path)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("atso-med verify: error:") and "'a' (2 times)" in err and "Traceback" not in err


def test_cli_exit_1_with_table_errors_and_json(mixed, tmp_path, capsys, only_our_commands):
    _, path, report, _ = mixed
    out_json = tmp_path / "report.json"
    assert main(["verify", str(path), "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("id ") and "mixed: 19 cases, 5 ok, 14 bad" in out
    assert "ERROR label_value_2: label values not among the declared classes {0, 1}: 2 (2 voxels)" in out
    assert "WARNING label_empty: label is empty" in out
    saved = json.loads(out_json.read_text())
    assert saved["ok"] is False and saved["n_bad"] == 14 and saved["errors"] == report.errors


def test_cli_exit_0_on_a_clean_dataset(tmp_path, capsys, only_our_commands):
    save_nifti(ct_array(), AFFINE, tmp_path / "img.nii.gz")
    save_nifti(mask(), AFFINE, tmp_path / "lab.nii.gz")
    path = tmp_path / "dataset.json"
    path.write_text(
        json.dumps(
            {
                "name": "one",
                "labels": {"0": "bg", "1": "p"},
                "cases": [{"id": "a", "image": "img.nii.gz", "label": "lab.nii.gz"}],
            }
        )
    )
    assert main(["verify", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "one: 1 cases, 1 ok, 0 bad" in out and "ERROR" not in out


def test_real_sample_dataset_verifies(tmp_path, capsys, only_our_commands):
    path = REPO / "tests/data/real/dataset.json"
    out_json = tmp_path / "report.json"
    assert main(["verify", str(path), "--json", str(out_json)]) == 0, capsys.readouterr().out
    rows = {r["id"]: r for r in json.loads(out_json.read_text())["cases"]}
    assert rows["totalseg_ct3mm_abdpelvis"]["label_counts"]["1"] == 695
    assert rows["totalseg_ct3mm_upperabd_30sl"]["label_counts"]["1"] == 644
    # DICOM series with a label stored LAS (another axis order/sign than the image): the mask must
    # land on the image grid with all its voxels.
    dicom = rows["totalseg_dicom20"]
    stored = nib.load(REPO / "tests/data/real/totalseg_ct_dicom20/DERIVED_pancreas_mask_pseudo.nii.gz")
    assert "".join(nib.aff2axcodes(stored.affine)) == "LAS" != dicom["orientation"]
    assert dicom["shape"] == [512, 512, 20] and dicom["label_counts"]["1"] == 1327
    assert dicom["spacing_mm"] == pytest.approx([0.9766, 0.9766, 2.0])
    small = rows["dcmqi_ct3slice"]
    assert small["shape"] == [512, 512, 3] and small["has_label"] is False and small["status"] == "ok"
