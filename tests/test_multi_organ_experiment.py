"""An ATSO experiment on several organs chosen by name: trainings, label-map pseudo labels and per-class figures."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from atso_med.cli.main import main
from atso_med.data import PhantomConfig, write_phantom_dataset
from atso_med.networks import StoredClasses, stored_classes

pytestmark = pytest.mark.slow

CLASSES = {"liver": "liver", "spleen": "spleen", "kidneys": ["kidney_left", "kidney_right"]}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multi_organ")
    dataset = write_phantom_dataset(root / "data", PhantomConfig(cases=8, seed=2, shape=(32, 32, 16), labels="organs"))
    settings = {
        "output_dir": str(root / "run"),
        "dataset": str(dataset),
        "classes": CLASSES,
        "split": {"labeled": 2, "test": 2},
        "strategies": ["supervised", "fully_supervised", "stso", "atso"],
        "generations": 1,
        "folds": 2,
        "planes": ["Z"],
        "devices": ["cpu"],
        "training": {"preset": "tiny", "iterations": 3, "batch_size": 1, "num_workers": 0},
        "inference": {"rounds": 1},
        "report": {"overlay_cases": 1},
    }
    (root / "experiment.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    assert main(["run", "--config", str(root / "experiment.yaml"), "--no-progress"]) == 0
    return root / "run"


def test_every_model_learns_the_chosen_classes_and_pseudo_labels_are_label_maps(experiment):
    models = sorted(experiment.glob("models/**/model.pt"))
    assert models and all(stored_classes(m) == StoredClasses(3, tuple(CLASSES)) for m in models)
    pseudo = sorted(experiment.glob("pseudo_labels/atso/gen1/fold*/*.nii.gz"))
    assert pseudo
    for path in pseudo:
        assert set(np.unique(np.asarray(nib.load(path).dataobj))) <= {0, 1, 2, 3}


def test_every_evaluation_is_per_class_and_the_report_gives_the_means_over_the_classes(experiment):
    state = json.loads((experiment / "state.json").read_text())
    evaluations = [entry["result"] for entry in state["steps"].values() if entry.get("result", {}).get("class_counts")]
    assert evaluations, "no per-class evaluation in the journal"
    for result in evaluations:
        assert result["class_names"] == list(CLASSES)
        means = [c["mean_dsc"] for c in result["classes"].values() if c["mean_dsc"] is not None]
        assert result["mean_dsc"] == pytest.approx(float(np.mean(means)))
    report = json.loads((experiment / "reports" / "report.json").read_text())
    m0_test = report["strategies"]["supervised"]["final"]["test"]
    assert set(m0_test["classes"]) == set(CLASSES)
    from atso_med.atso.reports import progress_curves

    assert progress_curves(report)["classes"] == list(CLASSES)
    table = (experiment / "reports" / "report.md").read_text()
    assert "## Test DSC of the final models per class" in table
    assert "| Strategy | liver | spleen | kidneys | vanished |" in table
    from atso_med.atso.report_tables import class_generation_rows

    rows = class_generation_rows(report, "atso")
    assert [row["Generation"] for row in rows] == ["G0", "G1"]
    generation = report["strategies"]["atso"]["generations"]["1"]
    assert rows[1]["spleen @R"] == generation["reference"]["classes"]["spleen"]["mean_dsc"]
    assert rows[1]["kidneys @E"] == generation["test"]["classes"]["kidneys"]["mean_dsc"]
    assert "## ATSO by generation, per class" in table and "| Generation | liver @R | spleen @R |" in table


def test_an_experiment_refuses_a_chosen_class_that_no_label_holds(tmp_path):
    from atso_med.atso.cases import ExperimentData, experiment_selection
    from atso_med.atso.preflight import refuse_unverified_cases
    from atso_med.data import Dataset, make_splits
    from atso_med.errors import DatasetError

    dataset_file = write_phantom_dataset(tmp_path / "data", PhantomConfig(cases=4, shape=(32, 32, 16), labels="organs"))
    content = json.loads(dataset_file.read_text())
    content["labels"]["11"] = "adrenal_gland"  # declared, painted in no label
    dataset_file.write_text(json.dumps(content))
    dataset = Dataset.load(dataset_file)
    splits = make_splits(dataset, labeled=1, folds=2, seed=0, test=1)
    data = ExperimentData(
        dataset, splits, dataset_file, selection=experiment_selection(["liver", "adrenal_gland"], dataset)
    )
    with pytest.raises(DatasetError, match="classes: no label holds the chosen class 'adrenal_gland'"):
        refuse_unverified_cases(data)
    data.selection = experiment_selection(["liver", "spleen"], dataset)
    refuse_unverified_cases(data)
