"""The dataset.json contract: loading, validation messages, writing, and the data lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atso_med.atso.generations import training_items
from atso_med.data.dataset import Case, Dataset, evaluation_datalist, load_case
from atso_med.data.nifti import save_nifti
from atso_med.data.splits import Splits
from atso_med.errors import DatasetError, SplitError

LPS = np.array([[-1.5, 0, 0, 10.0], [0, -1.5, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def small_dataset(root: Path, n: int = 6, unlabeled: tuple[int, ...] = ()) -> Path:
    """dataset.json with n cases (files not created: only the structure matters here)."""
    cases = []
    for i in range(n):
        case = {"id": f"case{i:02d}", "image": f"images/case{i:02d}.nii.gz"}
        if i not in unlabeled:
            case["label"] = f"labels/case{i:02d}.nii.gz"
        cases.append(case)
    return write_json(
        root / "dataset.json", {"name": "tiny", "labels": {"0": "background", "1": "pancreas"}, "cases": cases}
    )


def test_load_resolves_paths_against_the_file_folder_and_keeps_extra_keys(tmp_path):
    absolute = tmp_path / "elsewhere" / "img.nii.gz"
    data = {
        "name": "tiny",
        "labels": {"0": "background", "1": "pancreas"},
        "cases": [
            {"id": "a", "image": "img/a.nii.gz", "label": "lab/a.nii.gz", "series_uid": "1.2.3", "note": "x"},
            {"id": "b", "image": str(absolute)},
        ],
        "licence": "CC-BY",
    }
    sub = tmp_path / "ds"
    sub.mkdir()
    write_json(sub / "dataset.json", data)
    dataset = Dataset.load(sub)  # the folder works as well as the file
    assert dataset.ids == ["a", "b"]
    assert dataset.labels == {0: "background", 1: "pancreas"}
    a = dataset.case("a")
    assert a.image == (sub / "img/a.nii.gz").resolve() and a.label == (sub / "lab/a.nii.gz").resolve()
    assert a.series_uid == "1.2.3" and a.extra["note"] == "x"
    assert dataset.case("b").image == absolute.resolve() and dataset.case("b").label is None
    assert dataset.extra == {"licence": "CC-BY"}
    with pytest.raises(DatasetError, match="no case with id 'zzz'"):
        dataset.case("zzz")


def test_write_round_trips_to_another_folder(tmp_path):
    dataset = Dataset.load(small_dataset(tmp_path, n=3, unlabeled=(2,)))
    dataset.extra["licence"] = "CC-BY"
    dataset.cases[0].extra["note"] = "kept"
    inside = dataset.write(tmp_path / "copy.json")
    assert json.loads(inside.read_text())["cases"][0]["image"] == "images/case00.nii.gz"  # relative below root
    moved = dataset.write(tmp_path / "other" / "dataset.json")
    again = Dataset.load(moved)
    assert [(c.id, c.image, c.label) for c in again.cases] == [(c.id, c.image, c.label) for c in dataset.cases]
    assert again.extra == {"licence": "CC-BY"} and again.case("case00").extra == {"note": "kept"}
    assert again.labels == dataset.labels


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "top level must be a JSON object"),
        ({"labels": {"0": "bg"}, "cases": []}, "missing key\\(s\\): 'name'"),
        ({"name": "x", "labels": {"1": "pancreas"}, "cases": [{"id": "a", "image": "a"}]}, "must include 0"),
        ({"name": "x", "labels": {"0": "bg", "one": "p"}, "cases": [{"id": "a", "image": "a"}]}, "labels key 'one'"),
        (
            {"name": "x", "labels": {"0": "bg"}, "cases": [{"id": "a", "image": "a"}, {"id": "b"}]},
            "cases\\[1\\] \\(id 'b'\\): missing key 'image'",
        ),
        ({"name": "x", "labels": {"0": "bg"}, "cases": [{"image": "a"}]}, "cases\\[0\\]: missing key 'id'"),
        ({"name": "x", "labels": {"0": "bg"}, "cases": [{"id": "", "image": "a"}]}, "'id' must be a non-empty string"),
        (
            {"name": "x", "labels": {"0": "bg"}, "cases": [{"id": "../up", "image": "a"}]},
            "id '../up'.*not safe as a file name",
        ),
        ({"name": "x", "labels": {"0": "bg"}, "cases": [{"id": "a b", "image": "a"}]}, "not safe as a file name"),
        (
            {"name": "x", "labels": {"0": "bg"}, "cases": [{"id": 7, "image": "a"}]},
            "'id' must be a non-empty string, got 7",
        ),
        (
            {"name": "x", "labels": {"0": "bg"}, "cases": [{"id": "a", "image": "a", "label": 3}]},
            "'label' must be a path string",
        ),
        (
            {
                "name": "x",
                "labels": {"0": "bg"},
                "cases": [{"id": "a", "image": "1"}, {"id": "b", "image": "2"}, {"id": "a", "image": "3"}],
            },
            "duplicate case id\\(s\\): 'a' \\(2 times\\)",
        ),
        ('{"name": "x", "labels": {"0": "bg", "1": "a", "1": "b"}, "cases": []}', "duplicate key '1'"),
    ],
)
def test_load_rejects_malformed_files_naming_the_key_or_case(tmp_path, content, message):
    path = tmp_path / "dataset.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DatasetError, match=message):
        Dataset.load(path)


def test_load_reports_every_problem_at_once(tmp_path):
    data = {"name": "x", "labels": {"0": "bg"}, "cases": [{"id": "a"}, {"id": "b"}, {"id": "a", "image": "i"}]}
    with pytest.raises(DatasetError) as info:
        Dataset.load(write_json(tmp_path / "d.json", data))
    text = str(info.value)
    assert "cases[0] (id 'a'): missing key 'image'" in text and "cases[1] (id 'b'): missing key 'image'" in text


def test_missing_dataset_file(tmp_path):
    with pytest.raises(DatasetError, match="dataset file not found"):
        Dataset.load(tmp_path)


def splits_for(labeled, reference, test=()):
    return Splits(labeled=list(labeled), reference=[list(f) for f in reference], test=list(test))


def test_training_list_has_labeled_truth_and_reference_pseudo_labels_only(tmp_path):
    dataset = Dataset.load(small_dataset(tmp_path, n=6))  # every case has a truth label
    splits = splits_for(["case00", "case01"], [["case02", "case03"], ["case04"]], test=["case05"])
    pseudo = {"case02": tmp_path / "pl" / "case02.nii.gz", "case04": tmp_path / "pl" / "case04.nii.gz"}
    items = training_items(dataset, splits, pseudo)
    assert [(i["id"], i["source"]) for i in items] == [
        ("case00", "labeled"),
        ("case01", "labeled"),
        ("case02", "pseudo"),
        ("case04", "pseudo"),
    ]
    assert items[0]["label"] == str(dataset.case("case00").label)
    assert items[2]["label"] == str(pseudo["case02"]) and items[2]["image"] == str(dataset.case("case02").image)
    reference_truth = {str(dataset.case(i).label) for i in splits.reference_ids + splits.test}
    assert not reference_truth & {i["label"] for i in items}
    # Without pseudo labels the reference cases are simply absent.
    assert [i["id"] for i in training_items(dataset, splits)] == ["case00", "case01"]


def test_only_the_named_reference_cases_train_on_their_truth_for_the_fully_supervised_bound(tmp_path):
    dataset = Dataset.load(small_dataset(tmp_path, n=6))
    splits = splits_for(["case00"], [["case01", "case02"], ["case03"]], test=["case04"])
    items = training_items(dataset, splits, {"case01": tmp_path / "p1.nii.gz"}, reference_truth=["case02", "case03"])
    assert [(i["id"], i["source"]) for i in items] == [
        ("case00", "labeled"),
        ("case01", "pseudo"),
        ("case02", "truth"),
        ("case03", "truth"),
    ]
    assert items[3]["label"] == str(dataset.case("case03").label)
    with pytest.raises(SplitError, match="not unlabeled reference cases: 'case04'"):
        training_items(dataset, splits, reference_truth=["case04"])  # a test case's truth never trains
    with pytest.raises(SplitError, match="not unlabeled reference cases: 'case01'"):
        training_items(dataset, splits, {"case01": tmp_path / "p1.nii.gz"}, reference_truth=["case01"])


def test_a_pseudo_label_brings_its_uncertain_voxel_mask_and_nothing_else_does(tmp_path):
    dataset = Dataset.load(small_dataset(tmp_path, n=5))
    splits = splits_for(["case00"], [["case01", "case02"], ["case03"]], test=["case04"])
    pseudo = {"case01": tmp_path / "p1.nii.gz", "case03": tmp_path / "p3.nii.gz"}
    items = training_items(dataset, splits, pseudo, uncertain={"case01": tmp_path / "p1_uncertain.nii.gz"})
    assert [i.get("uncertain") for i in items] == [None, str(tmp_path / "p1_uncertain.nii.gz"), None]
    with pytest.raises(SplitError, match="without a pseudo label: 'case02'"):
        training_items(dataset, splits, pseudo, uncertain={"case02": tmp_path / "p2_uncertain.nii.gz"})
    with pytest.raises(SplitError, match="without a pseudo label: 'case00'"):  # a labeled case keeps its truth
        training_items(dataset, splits, pseudo, uncertain={"case00": tmp_path / "p0_uncertain.nii.gz"})


class _TrapCase:
    """Stands in for a reference case: reading its ``label`` fails the test."""

    def __init__(self, case: Case):
        self.id, self.image, self.extra = case.id, case.image, case.extra

    @property
    def label(self):
        raise AssertionError(f"training_items read the ground truth of reference case {self.id}")


def test_training_list_never_reads_a_reference_cases_label(tmp_path):
    dataset = Dataset.load(small_dataset(tmp_path, n=4))
    splits = splits_for(["case00"], [["case01"], ["case02", "case03"]])
    real_labels = {c.id: c.label for c in dataset.cases}
    dataset.cases = [c if c.id == "case00" else _TrapCase(c) for c in dataset.cases]
    # validate() may check only labeled/validation labels; it must not touch reference labels either.
    items = training_items(dataset, splits, {"case01": "p1.nii.gz", "case03": "p3.nii.gz"})
    assert [i["source"] for i in items] == ["labeled", "pseudo", "pseudo"]
    assert all(i["label"] != str(real_labels[i["id"]]) for i in items[1:])


def test_training_list_refuses_pseudo_labels_for_test_or_labeled_cases(tmp_path):
    dataset = Dataset.load(small_dataset(tmp_path, n=5))
    splits = splits_for(["case00"], [["case01"], ["case02"]], test=["case03"])
    with pytest.raises(SplitError, match="'case03' \\(test\\)"):
        training_items(dataset, splits, {"case03": "leak.nii.gz"})
    with pytest.raises(SplitError, match="'case00' \\(labeled\\)"):
        training_items(dataset, splits, {"case00": "x.nii.gz"})


def test_training_list_validates_the_splits(tmp_path):
    dataset = Dataset.load(small_dataset(tmp_path, n=4, unlabeled=(0,)))
    with pytest.raises(SplitError, match=r"labeled ids without a label in dataset.json: 'case00'"):
        training_items(dataset, splits_for(["case00"], [["case01"], ["case02"]]))


def test_evaluation_list_uses_truth_and_names_unusable_ids(tmp_path):
    dataset = Dataset.load(small_dataset(tmp_path, n=4, unlabeled=(3,)))
    items = evaluation_datalist(dataset, ["case02", "case01"])
    assert [i["id"] for i in items] == ["case02", "case01"]
    assert items[0]["label"] == str(dataset.case("case02").label)
    with pytest.raises(DatasetError, match="without a label: 'case03'"):
        evaluation_datalist(dataset, ["case01", "case03"])
    with pytest.raises(DatasetError, match=r"not in dataset.json: 'nope'"):
        evaluation_datalist(dataset, ["nope"])


def test_load_case_puts_a_differently_oriented_label_on_the_image_grid(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(0, 100, (8, 7, 6)).astype(np.float32)
    label = np.zeros((8, 7, 6), np.uint8)
    label[2:5, 1:3, 2:4] = 1
    save_nifti(image, LPS, tmp_path / "img.nii.gz")
    # Same world grid stored with the second axis reversed (LAS instead of LPS).
    flipped = LPS.copy()
    flipped[:3, 1] *= -1
    flipped[:3, 3] = LPS[:3, 3] + LPS[:3, 1] * 6
    save_nifti(label[:, ::-1, :], flipped, tmp_path / "lab.nii.gz")
    case = Case(id="c", image=tmp_path / "img.nii.gz", label=tmp_path / "lab.nii.gz")
    volume, on_grid = load_case(case)
    np.testing.assert_allclose(volume.array, image, atol=1e-3)
    np.testing.assert_array_equal(on_grid, label)
    assert load_case(case, with_label=False)[1] is None


@pytest.mark.parametrize("disk_form, json_form", [("NFC", "NFD"), ("NFD", "NFC")])
def test_paths_that_differ_from_the_disk_only_by_unicode_normalisation_are_found(tmp_path, disk_form, json_form):
    """A dataset.json written on macOS (NFD) and read against NFC files used to say 'image not found'."""
    import unicodedata

    from atso_med.data import verify_dataset
    from atso_med.data.datalist import read_datalist

    folder, name = "Études", "café_01.nii.gz"
    on_disk = tmp_path / unicodedata.normalize(disk_form, folder) / unicodedata.normalize(disk_form, name)
    on_disk.parent.mkdir()
    save_nifti(np.eye(4, dtype=np.int16)[:, :, None].repeat(3, axis=2), np.eye(4), on_disk)  # doubles as a 0/1 label
    stored = unicodedata.normalize(json_form, f"{folder}/{name}")
    assert not (tmp_path / stored).exists()  # the file system tells the two spellings apart
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "name": "u",
                "labels": {"0": "background", "1": "pancreas"},
                "cases": [{"id": "c1", "image": stored, "label": stored}],
            },
            ensure_ascii=False,
        )
    )
    case = Dataset.load(tmp_path).case("c1")
    assert case.image == on_disk and case.label == on_disk
    assert verify_dataset(tmp_path).ok
    (tmp_path / "list.json").write_text(json.dumps({"training": [{"image": stored}]}, ensure_ascii=False))
    assert read_datalist(tmp_path / "list.json")[0]["image"] == str(on_disk)
    # A name that matches no file by any normalisation is still reported missing.
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {"name": "u", "labels": {"0": "background"}, "cases": [{"id": "c1", "image": "Études/cafe_02.nii.gz"}]}
        )
    )
    assert "image not found" in verify_dataset(tmp_path).rows[0].errors[0]
