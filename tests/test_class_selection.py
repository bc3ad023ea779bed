"""Choosing what to segment by the class names of dataset.json: selection, remapping, verify, loading.

The real-data tests use TotalSegmentator's 117-class organ map of a 3 mm CT (tests/data/real,
see its README: a model's output, so only plumbing and geometry are checked, never accuracy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from atso_med.data import Dataset, select_classes, verify_dataset
from atso_med.data.datalist import datalist_class_selection, write_datalist
from atso_med.errors import ConfigError, LabelValueError
from atso_med.transforms import CTPreprocessingd

REAL = Path(__file__).parent / "data" / "real" / "totalseg_ct3mm"
ITEM = {
    "id": "upperabd",
    "image": str(REAL / "ct_3mm_upperabd_30sl.nii.gz"),
    "label": str(REAL / "seg_total117_pseudo_upperabd_30sl.nii.gz"),
}
ORGANS = {0: "background", 1: "liver", 2: "spleen", 3: "kidney_left", 4: "kidney_right", 5: "pancreas"}


def test_the_three_forms_of_a_selection():
    one = select_classes("pancreas", ORGANS)
    assert (one.names, one.values, one.num_classes) == (("pancreas",), ((5,),), 1)
    assert one.classes == {0: "background", 1: "pancreas"}
    several = select_classes(["spleen", "liver"], ORGANS)
    assert several.names == ("spleen", "liver") and several.values == ((2,), (1,))
    merged = select_classes({"kidneys": ["kidney_left", "kidney_right"], "pancreas": "pancreas"}, ORGANS)
    assert merged.names == ("kidneys", "pancreas") and merged.values == ((3, 4), (5,))
    assert merged.foreground == (3, 4, 5)
    assert merged.to_spec() == {"kidneys": ["kidney_left", "kidney_right"], "pancreas": "pancreas"}
    assert several.to_spec() == ["spleen", "liver"] and one.to_spec() == "pancreas"
    assert "kidneys = kidney_left + kidney_right (3, 4)" in merged.describe()


def test_remap_orders_the_output_classes_and_drops_the_rest():
    label = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int16)
    merged = select_classes({"kidneys": ["kidney_left", "kidney_right"], "liver": "liver"}, ORGANS)
    out = merged.remap(label)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 2, 0], [1, 1, 0]])
    np.testing.assert_array_equal(select_classes("pancreas", ORGANS).remap(label), [[0, 0, 0], [0, 0, 1]])
    with pytest.raises(LabelValueError, match=r"x\.nii\.gz.*negative"):
        merged.remap(np.array([-1, 1]), "x.nii.gz")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("pancreaz", "'pancreaz' is not a class of dataset.json; did you mean 'pancreas'"),
        ("heart", "'heart' is not a class of dataset.json; its classes are: liver, spleen"),
        ("background", "background"),
        (["liver", "liver"], "'liver' is listed twice"),
        ({"a": ["liver"], "b": ["liver", "spleen"]}, "'liver' is chosen twice \\(in 'a' and 'b'\\)"),
        ({"liver": ["spleen"]}, "named after another class"),
        ({"kidneys": ["kidney_left", "kidney_left"]}, "lists a class twice"),
        ([], "empty"),
        (3, "must be a class name"),
        ({"kidneys": []}, "not a class name or a list"),
    ],
)
def test_bad_selections_are_refused_with_the_name(spec, message):
    with pytest.raises(ConfigError, match=message):
        select_classes(spec, ORGANS)


@pytest.fixture(scope="module")
def totalseg_dataset(tmp_path_factory) -> Path:
    """A one-case dataset.json over TotalSegmentator's 117-class map, labels named as its label map."""
    root = tmp_path_factory.mktemp("totalseg")
    names = json.loads((REAL / "label_map_total_v2.json").read_text())
    labels = {"0": "background", **{str(k): v for k, v in names.items()}}
    (root / "dataset.json").write_text(json.dumps({"name": "totalseg117", "labels": labels, "cases": [ITEM]}))
    return root / "dataset.json"


def test_pancreas_out_of_117_classes_is_the_derived_pancreas_mask(totalseg_dataset):
    """Selecting "pancreas" by name gives exactly the mask made from value 7 (the data README's derivation)."""
    dataset = Dataset.load(totalseg_dataset)
    selection = select_classes("pancreas", dataset.labels)
    assert selection.values == ((7,),)
    datalist = write_datalist(totalseg_dataset.parent / "datalist.json", [ITEM], labels=dataset.labels)
    chosen = datalist_class_selection(datalist, "pancreas")
    assert chosen == selection
    item = CTPreprocessingd(selection=chosen, classes=dataset.labels)(ITEM)
    derived = nib.load(str(REAL / "DERIVED_pancreas_mask_pseudo_upperabd_30sl.nii.gz"))
    expected = CTPreprocessingd()(
        {"image": str(REAL / "ct_3mm_upperabd_30sl.nii.gz"), "label": derived.get_filename()}
    )["label"]
    np.testing.assert_array_equal(np.asarray(item["label"]), np.asarray(expected))
    assert int(np.asarray(item["label"]).sum()) > 0


def test_several_and_merged_classes_load_as_output_classes(totalseg_dataset):
    dataset = Dataset.load(totalseg_dataset)
    selection = select_classes({"kidneys": ["kidney_left", "kidney_right"], "liver": "liver"}, dataset.labels)
    label = np.asarray(CTPreprocessingd(selection=selection, classes=dataset.labels)(ITEM)["label"])
    kidneys = np.asarray(CTPreprocessingd(classes=dataset.labels, foreground=[2, 3])(ITEM)["label"])
    liver = np.asarray(CTPreprocessingd(classes=dataset.labels, foreground=[5])(ITEM)["label"])
    assert set(np.unique(label)) == {0, 1, 2}
    np.testing.assert_array_equal(label == 1, kidneys == 1)
    np.testing.assert_array_equal(label == 2, liver == 1)


def test_a_selection_needs_a_labelled_data_list(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"training": []}))
    with pytest.raises(ConfigError, match="has no 'labels'"):
        datalist_class_selection(plain, "pancreas")
    assert datalist_class_selection(plain, None) is None
    with pytest.raises(ConfigError, match="not both"):
        CTPreprocessingd(foreground=[1], selection=select_classes("liver", ORGANS))


def test_verify_checks_the_chosen_classes_against_the_labels(totalseg_dataset):
    report = verify_dataset(
        totalseg_dataset, classes={"kidneys": ["kidney_left", "kidney_right"], "pancreas": "pancreas"}
    )
    assert report.ok, report.errors
    assert report.class_presence() == {"kidneys": 1, "pancreas": 1}
    # Urinary bladder (value 21) is not in these 30 upper-abdominal slices: declared, chosen, found nowhere.
    report = verify_dataset(totalseg_dataset, classes=["pancreas", "urinary_bladder"])
    assert not report.ok
    assert report.errors == ["classes: no label holds the chosen class 'urinary_bladder'"]
    assert any("label holds no urinary_bladder" in w for w in report.warnings)
    assert report.to_dict()["classes"] == {
        "selection": ["pancreas", "urinary_bladder"],
        "labels_holding": {"pancreas": 1, "urinary_bladder": 0},
    }
    with pytest.raises(ConfigError, match="'pancrea' is not a class of totalseg117's labels; did you mean 'pancreas'"):
        verify_dataset(totalseg_dataset, classes="pancrea")


def test_verify_command_takes_classes_by_name(totalseg_dataset):
    command = [sys.executable, "-m", "atso_med", "verify", str(totalseg_dataset), "--classes"]
    done = subprocess.run(
        [*command, "kidneys=kidney_left+kidney_right", "pancreas"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "classes: kidneys = kidney_left + kidney_right (3, 2), pancreas (7)" in done.stdout
    assert "  pancreas: in 1 of 1 labels" in done.stdout
    refused = subprocess.run([*command, "pancrease"], capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "did you mean 'pancreas'" in refused.stderr and "Traceback" not in refused.stderr


def test_an_experiment_takes_its_organs_by_name(tmp_path, totalseg_dataset):
    from atso_med.atso.cases import experiment_selection, organ_values
    from atso_med.atso.config import ExperimentConfig

    base = {"output_dir": str(tmp_path / "run"), "dataset": str(totalseg_dataset)}
    config = ExperimentConfig.from_dict({**base, "classes": {"kidneys": ["kidney_left", "kidney_right"]}})
    assert config.resolved()["classes"] == {"kidneys": ["kidney_left", "kidney_right"]}
    dataset = Dataset.load(totalseg_dataset)
    selection = experiment_selection(config.classes, dataset)
    assert selection.num_classes == 1 and organ_values(config.foreground, selection) == [2, 3]
    assert organ_values([7], None) == [7] and experiment_selection(None, dataset) is None
    several = experiment_selection(["liver", "pancreas"], dataset)
    assert several.names == ("liver", "pancreas") and organ_values(None, several) == [5, 7]
    with pytest.raises(ConfigError, match="did you mean 'pancreas'"):
        experiment_selection("pancreaas", dataset)
    with pytest.raises(ConfigError, match="not both"):
        ExperimentConfig.from_dict({**base, "classes": "pancreas", "foreground": [7]})
    with pytest.raises(ConfigError, match=r"experiment\.classes: class selection: 'liver' is listed twice"):
        ExperimentConfig.from_dict({**base, "classes": ["liver", "liver"]})


def test_evaluate_scores_classes_chosen_by_name(tmp_path, totalseg_dataset):
    """A prediction equal to the selected truth scores 1 per class; a class left out of it vanishes."""
    from atso_med.data.nifti import save_nifti

    dataset = Dataset.load(totalseg_dataset)
    selection = select_classes({"kidneys": ["kidney_left", "kidney_right"], "liver": "liver"}, dataset.labels)
    stored = nib.load(ITEM["label"])
    truth = selection.remap(np.asarray(stored.dataobj))
    save_nifti(truth, stored.affine, tmp_path / "perfect" / "upperabd.nii.gz", dtype=np.uint8)
    save_nifti(
        np.where(truth == 1, 0, truth), stored.affine, tmp_path / "no_kidneys" / "upperabd.nii.gz", dtype=np.uint8
    )
    command = [sys.executable, "-m", "atso_med", "evaluate", "--dataset", str(totalseg_dataset), "--predictions"]
    classes = ["--classes", "kidneys=kidney_left+kidney_right", "liver"]
    done = subprocess.run([*command, str(tmp_path / "perfect"), *classes], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "upperabd: DSC 1.0000, kidneys 1.0000, liver 1.0000" in done.stdout
    summary = json.loads((tmp_path / "perfect" / "summary.json").read_text())
    assert summary["classes"]["per_class"]["kidneys"]["label_values"] == [3, 2]
    done = subprocess.run(
        [*command, str(tmp_path / "no_kidneys"), *classes], capture_output=True, text=True, check=False
    )
    assert "  kidneys: mean DSC 0.0000 over 1 cases, vanished in 1" in done.stdout
    refused = subprocess.run(
        [*command, str(tmp_path / "perfect"), "--classes", "liverr"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "did you mean 'liver'" in refused.stderr


def test_a_model_of_three_classes_predicts_a_named_label_map_on_the_cts_own_grid(tmp_path, totalseg_dataset):
    """Plumbing and geometry only (the organ map is a model's output): a tiny 3-class model, untrained."""
    import slicerio
    import torch

    from atso_med.networks import build_rstn, initialize_rstn
    from atso_med.prediction import predict_case

    dataset = Dataset.load(totalseg_dataset)
    selection = select_classes(
        {"kidneys": ["kidney_left", "kidney_right"], "liver": "liver", "pancreas": "pancreas"}, dataset.labels
    )
    network = initialize_rstn(build_rstn("tiny", num_classes=selection.num_classes), seed=0)
    model = tmp_path / "models" / "plane_Z" / "model.pt"
    model.parent.mkdir(parents=True)
    # Trained at 6 mm slices (the CT has 3 mm): prediction resamples, and the label map goes back by nearest neighbour.
    config = {
        "plane": "Z",
        "preset": "tiny",
        "num_classes": 3,
        "class_names": list(selection.names),
        "long_axis_spacing": 6.0,
    }
    torch.save({"network": network.state_dict(), "config": config}, model)

    out = tmp_path / "out"
    stats = predict_case(
        ITEM["image"],
        tmp_path / "models",
        out / "ct.nii.gz",
        device="cpu",
        seg_nrrd_path=out / "ct.seg.nrrd",
        probability_path=out / "ct_probability.nii.gz",
    )
    ct, predicted = nib.load(ITEM["image"]), nib.load(out / "ct.nii.gz")
    assert predicted.shape == ct.shape and np.allclose(predicted.affine, ct.affine)
    assert predicted.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(predicted.dataobj))) <= {0, 1, 2, 3}
    assert nib.load(out / "ct_probability.nii.gz").shape == (*ct.shape, 3)
    assert set(stats["classes"]) == {"kidneys", "liver", "pancreas"}
    assert stats["long_axis_spacing"]["target_mm"] == 6.0 and stats["long_axis_spacing"]["slices"] < ct.shape[2]
    segmentation = slicerio.read_segmentation(str(out / "ct.seg.nrrd"))
    assert [segment["name"] for segment in segmentation["segments"]] == ["kidneys", "liver", "pancreas"]
    with pytest.raises(ConfigError, match=r"per-round DSC .* 3 classes"):
        predict_case(ITEM["image"], tmp_path / "models", out / "again.nii.gz", device="cpu", truth_path=ITEM["label"])


def test_train_refuses_an_unknown_class_name_before_anything_is_written(tmp_path, totalseg_dataset, capsys):
    from atso_med.cli.main import main

    splits = tmp_path / "splits.json"
    splits.write_text("{}")
    out = tmp_path / "model"
    status = main(["train", str(totalseg_dataset), "--splits", str(splits), "--out", str(out), "--classes", "livr"])
    assert status == 2 and "'livr' is not a class" in capsys.readouterr().err
    assert not out.exists()
