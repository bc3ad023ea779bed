"""MLflow tracking: MONAI's ``--tracking mlflow`` on train.json, and an ATSO experiment's parent and child runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from bundle_files import META, TRAIN
from mlflow import MlflowClient
from monai.bundle import ConfigWorkflow
from test_atso_orchestration import FakePredictor, FakeTraining, settings

from atso_med.atso import ExperimentRunner
from atso_med.atso.config import ExperimentConfig, MLflowSettings
from atso_med.data import Dataset, PhantomConfig, write_datalist, write_phantom_dataset
from atso_med.errors import ConfigError


def _runs(uri: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r} at {uri}"
    return client.search_runs([found.experiment_id], max_results=1000)


def test_bundle_run_with_monai_mlflow_tracking_logs_loss_and_validation_dice(tmp_path: Path) -> None:
    dataset = Dataset.load(write_phantom_dataset(tmp_path / "data", PhantomConfig(cases=2, seed=3, shape=(48, 48, 16))))
    items = [{"id": c.id, "image": str(c.image), "label": str(c.label)} for c in dataset.cases]
    datalist = write_datalist(tmp_path / "datalist.json", items[:1], items[1:])
    out = tmp_path / "run"
    workflow = ConfigWorkflow(
        config_file=TRAIN,
        meta_file=META,
        logging_file=False,
        workflow_type="train",
        tracking="mlflow",
        datalist=str(datalist),
        output_dir=str(out),
        preset="tiny",
        num_workers=0,
        batch_size=2,
        iterations=4,
        val_interval=2,
        progress_bar=False,
        augment=False,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    # MONAI's default settings: a SQLite store next to the bundle's output_dir
    (run,) = _runs(f"sqlite:///{out}/mlruns.db", "monai_experiment")
    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlruns.db")
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 4
    assert len(client.get_metric_history(run.info.run_id, "val_dice")) == 2


def test_experiment_logs_a_parent_run_with_a_child_per_training_and_evaluation(tmp_path: Path) -> None:
    data = write_phantom_dataset(tmp_path / "data", PhantomConfig(cases=8, seed=2, shape=(32, 32, 16)))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking = {"mlflow": {"tracking_uri": uri, "experiment_name": "phantom"}}
    config = ExperimentConfig.from_dict(
        settings(data, tmp_path / "experiment", generations=1, planes=["Z"], tracking=tracking), base=tmp_path
    )
    trainer = ExperimentRunner(config, predictor=FakePredictor(), training_runner=FakeTraining(), progress=False)
    report = trainer.run()

    runs = _runs(uri, "phantom")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (parent,) = parents
    assert parent.data.params["preset"] == "tiny" and parent.data.params["planes"] == "Z"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    trainings = [s for s in trainer.plan if s.kind == "train"]
    assert len(children) == len(runs) - 1 and all(s.id in children for s in trainings)
    atso_fold = children["train/atso/gen1/fold0/plane_Z"].data.params
    assert atso_fold == {"strategy": "atso", "generation": "1", "fold": "fold0", "plane": "Z", "preset": "tiny"}
    gen1 = children["evaluate/self_learning/gen1"].data
    expected = report["strategies"]["self_learning"]["generations"]["1"]
    assert gen1.params["generation"] == "1" and gen1.params["strategy"] == "self_learning"
    assert gen1.metrics["dsc_R"] == pytest.approx(expected["reference"]["mean_dsc"])
    assert gen1.metrics["dsc_E"] == pytest.approx(expected["test"]["mean_dsc"])
    assert "evaluate/atso/final" in children and "dsc_E" in children["evaluate/atso/final"].data.metrics


def test_tracking_without_mlflow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"experiment\.tracking\.mlflow needs MLflow: .*\[tracking\]"):
        MLflowSettings.from_dict({"mlflow": {"tracking_uri": "sqlite:///m.db"}}, "experiment.tracking")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"wandb": {}}, r"expected \{mlflow:"),
        ({"mlflow": {"tracking_uri": ""}}, "tracking_uri: expected a tracking URI"),
        ({"mlflow": {"tracking_uri": "sqlite:///m.db", "run": 1}}, "unknown key"),
    ],
)
def test_malformed_tracking_section_is_refused(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MLflowSettings.from_dict(section)


def test_run_refuses_an_empty_tracking_uri_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from atso_med.cli.main import main

    data = write_phantom_dataset(tmp_path / "data", PhantomConfig(cases=4, seed=2, shape=(32, 32, 16)))
    config = tmp_path / "experiment.yaml"
    config.write_text(f"output_dir: {tmp_path / 'experiment'}\ndataset: {data}\n")
    assert main(["run", "--config", str(config), "--tracking-uri", " "]) == 2
    assert "--tracking-uri: expected a tracking URI such as sqlite:///mlflow.db" in capsys.readouterr().err
    assert not (tmp_path / "experiment").exists()
