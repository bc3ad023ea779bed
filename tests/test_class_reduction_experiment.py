"""The paper's class reduction in an experiment: pseudo labels scored at merged groups, then a fine-class fine-tuning.

The plan is read with its own logic (which trainings score their pseudo labels at the groups, what
the fine-tuning starts from and labels with); a tiny experiment then runs it from the command line,
and its data lists, model files and report are checked.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from atso_med.atso.config import ExperimentConfig
from atso_med.atso.generations import build_plan, final_model, model_training_ids
from atso_med.atso.steps import PlanInputs
from atso_med.cli.main import main
from atso_med.data import PhantomConfig, write_phantom_dataset
from atso_med.errors import ConfigError

CLASSES = {"liver": "liver", "spleen": "spleen", "kidneys": ["kidney_left", "kidney_right"]}
GROUPS = {"large_organs": ["liver", "spleen"], "kidneys": ["kidneys"]}
STRATEGIES = ["supervised", "self_learning", "stso", "atso"]


def plan_inputs(**options) -> PlanInputs:
    reference = [[f"R{k}_{i}" for i in range(2)] for k in range(2)]
    return PlanInputs(
        strategies=STRATEGIES,
        generations=2,
        planes=["Z"],
        labeled=["L0"],
        reference=reference,
        test=["E0"],
        with_truth=["L0", "E0"] + [i for fold in reference for i in fold],
        **options,
    )


def trainings(steps) -> dict[str, dict]:
    return {s.params["model"]: s.params for s in steps if s.kind == "train"}


def test_generations_score_their_pseudo_labels_at_the_groups_and_the_fine_tuning_at_the_classes():
    steps = build_plan(plan_inputs(class_reduction=True, fine_tune=True))
    trained = trainings(steps)
    for key, params in trained.items():
        levels = {entry.get("label_level") for entry in params["pseudo_labels"].values()}
        if key.endswith("/fine"):
            assert levels == {None}, key  # the fine-tuning learns the classes again
        elif key.startswith(("self_learning", "stso", "atso")):
            assert levels == {"groups"}, key
        else:
            assert not params["pseudo_labels"], key  # M0 trains on the labeled cases only
    for strategy in ("self_learning", "stso", "atso"):
        fine = trained[final_model(strategy, 2, fine_tune=True).key]
        assert fine["init"]["kind"] == "finetune" and fine["init"]["from"] == final_model(strategy, 2).key
        # Its labels are those the final generation's teachers made for the @R measure (gen 3).
        assert {e["dir"] for e in fine["pseudo_labels"].values()} == {
            f"pseudo_labels/{strategy}/gen3/fold{k}" for k in range(2)
        }
    # ATSO's fine-class labels of fold k still come from the fold model that never trained on it.
    seen = model_training_ids(steps)
    for step in steps:
        if step.kind == "fuse" and step.id.startswith("pseudo/atso/gen3/"):
            fold = set(step.params["ids"])
            assert all(not fold & seen[teacher] for teacher in step.params["teachers"])
    assert any(s.id == f"predict/{final_model('atso', 2, fine_tune=True).key}/test" for s in steps)


def test_without_fine_tuning_there_is_no_fine_model_and_without_reduction_the_plan_is_as_before():
    reduced = trainings(build_plan(plan_inputs(class_reduction=True)))
    assert not any(key.endswith("/fine") for key in reduced)
    plain_steps = build_plan(plan_inputs())
    assert not any(key.endswith("/fine") for key in trainings(plain_steps))
    assert "label_level" not in json.dumps([s.to_dict() for s in plain_steps])


def test_a_reduction_is_refused_before_any_work_when_its_groups_do_not_fit_the_classes(tmp_path):
    dataset = write_phantom_dataset(tmp_path / "data", PhantomConfig(cases=6, shape=(32, 32, 16), labels="organs"))
    base = {"output_dir": str(tmp_path / "run"), "dataset": str(dataset), "split": {"labeled": 2, "test": 1}}
    with pytest.raises(ConfigError, match="class_reduction: merges classes: choose them with 'classes' first"):
        ExperimentConfig.from_dict({**base, "class_reduction": {"groups": GROUPS}})
    with pytest.raises(ConfigError, match=r"class_reduction\.groups\.kidneys: expected a class name"):
        ExperimentConfig.from_dict({**base, "classes": CLASSES, "class_reduction": {"groups": {"kidneys": 3}}})
    with pytest.raises(ConfigError, match="unknown key"):
        ExperimentConfig.from_dict({**base, "classes": CLASSES, "class_reduction": {"groups": GROUPS, "fine": 1}})

    from atso_med.atso.cases import load_experiment_data

    def load(groups, classes=CLASSES):
        config = ExperimentConfig.from_dict({**base, "classes": classes, "class_reduction": {"groups": groups}})
        return load_experiment_data(config, tmp_path / "run")

    load(GROUPS)
    with pytest.raises(ConfigError, match=r"class_reduction\.groups leave out the class\(es\) \['kidneys'\]"):
        load({"large_organs": ["liver", "spleen"]})
    with pytest.raises(ConfigError, match=r"class_reduction\.groups: 'pancreas' \(in 'small'\) is not one of"):
        load({**GROUPS, "small": ["pancreas"]})
    with pytest.raises(ConfigError, match="'classes' chooses only one"):
        load({"organ": ["liver"]}, classes=["liver"])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("class_reduction")
    dataset = write_phantom_dataset(root / "data", PhantomConfig(cases=8, seed=2, shape=(32, 32, 16), labels="organs"))
    settings = {
        "output_dir": str(root / "run"),
        "dataset": str(dataset),
        "classes": CLASSES,
        "class_reduction": {"groups": GROUPS, "fine_tune": True},
        "split": {"labeled": 2, "test": 2},
        "strategies": ["supervised", "stso", "atso"],
        "generations": 1,
        "folds": 2,
        "planes": ["Z"],
        "devices": ["cpu"],
        "training": {"preset": "unet_tiny", "iterations": 3, "batch_size": 1, "num_workers": 0},
        "inference": {"rounds": 1},
        "report": {"overlay_cases": 0},
    }
    (root / "experiment.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    assert main(["run", "--config", str(root / "experiment.yaml"), "--no-progress"]) == 0
    return root / "run"


@pytest.mark.slow
def test_a_reduced_experiment_trains_softmax_students_on_grouped_pseudo_labels_and_fine_tunes_them(experiment):
    def datalist(key: str) -> list[dict]:
        return json.loads((experiment / "models" / key / "datalist.json").read_text())["training"]

    for key in ("stso/gen1/all", "atso/gen1/fold0", "atso/gen1/all"):
        items = datalist(key)
        assert {i["label_level"] for i in items if i["source"] == "pseudo"} == {"groups"}, key
        assert all("label_level" not in i for i in items if i["source"] == "labeled"), key
    for key in ("stso/gen1/fine", "atso/gen1/fine"):
        assert all("label_level" not in i for i in datalist(key)), key
    for model in experiment.glob("models/**/model.pt"):
        config = torch.load(model, map_location="cpu", weights_only=True)["config"]
        assert config["class_activation"] == "softmax", model

    report = json.loads((experiment / "reports" / "report.json").read_text())
    assert report["class_reduction"] == {"groups": GROUPS, "fine_tune": True}
    state = json.loads((experiment / "state.json").read_text())["steps"]
    for strategy in ("stso", "atso"):
        fine = state[f"evaluate/{final_model(strategy, 1, fine_tune=True).predictions('test')}"]["result"]
        reduced = state[f"evaluate/{final_model(strategy, 1).predictions('test')}"]["result"]
        entry = report["strategies"][strategy]
        assert entry["final"]["test"]["mean_dsc"] == pytest.approx(fine["mean_dsc"])
        assert entry["reduced_final"]["test"]["mean_dsc"] == pytest.approx(reduced["mean_dsc"])
    assert (
        "Class reduction: generations 1..T scored their pseudo labels at the groups"
        in (experiment / "reports" / "report.md").read_text()
    )


def test_the_reduction_is_written_with_the_resolved_configuration(tmp_path):
    config = ExperimentConfig.from_dict(
        {
            "output_dir": str(tmp_path),
            "dataset": str(tmp_path / "dataset.json"),
            "classes": CLASSES,
            "class_reduction": {"groups": {"kidneys": "kidneys", "large": ["liver", "spleen"]}, "fine_tune": False},
        }
    )
    assert dataclasses.asdict(config.class_reduction) == {
        "groups": {"kidneys": ["kidneys"], "large": ["liver", "spleen"]},
        "fine_tune": False,
    }
    assert yaml.safe_load(config.to_yaml())["class_reduction"]["fine_tune"] is False
