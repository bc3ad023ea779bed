"""ExperimentRunner's orchestration with an injected training runner and predictor (fast).

The fakes stand in for the bundle training and the whole-volume predictor only; the plan, data
lists, pseudo-label votes, journal, resume, evaluations and reports are the real code. The real
training and predictor run in ``test_atso_end_to_end.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from atso_med.atso import ExperimentConfig, ExperimentResults, ExperimentRunner, executors
from atso_med.atso.executors import InProcessExecutor, WorkerPoolExecutor
from atso_med.atso.training_runs import TrainingJob, state_dict_sha256
from atso_med.data.nifti import save_nifti
from atso_med.errors import ConfigError
from atso_med.inferers.fusion import vote_files


class FakeTraining:
    """Writes a model.pt whose weights are the real seeded initial weights nudged by the data list's content."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, configs, overrides):
        from atso_med.networks import build_rstn, initialize_rstn
        from atso_med.networks.weight_files import save_model_atomic

        # The runner's keys are in the settings overlay, the last config file; the device on the command line.
        assert Path(configs[-1]).name == "settings.json" and set(overrides) <= {"device", "resume"}
        overrides = {**json.loads(Path(configs[-1]).read_text()), **overrides}
        self.calls.append(overrides["output_dir"])
        network = initialize_rstn(
            build_rstn(overrides["preset"]), seed=overrides["init_seed"], weights_file=overrides.get("init_weights")
        )
        initial = state_dict_sha256(network.state_dict())
        # "learning": a nudge that depends on what the list holds (ids and label voxels), not on paths
        content = hashlib.sha256()
        for item in json.loads(Path(overrides["datalist"]).read_text())["training"]:
            content.update(item["id"].encode() + np.asarray(nib.load(item["label"]).dataobj).tobytes())
        digest = content.digest()
        with torch.no_grad():
            network.saliency.conv2.bias += digest[0] / 255.0
        out = Path(overrides["output_dir"])
        config = {"plane": overrides["plane"], "preset": overrides["preset"]}
        save_model_atomic(
            {"network": network.state_dict(), "config": config, "iteration": 1, "selected": "last"}, out / "model.pt"
        )
        return {
            "initial_weights_sha256": initial,
            "model_sha256": state_dict_sha256(network.state_dict()),
            "iterations": 1,
            "seconds": 0.0,
        }


class FakePredictor:
    """Truth with a model-dependent share of voxels dropped (reads the phantom's labels: a fake may)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, datalist, model_dir, output_dir, save_probability):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        from atso_med.atso.training_runs import model_file_sha256

        model_hash = "".join(model_file_sha256(p) for p in sorted(Path(model_dir).glob("plane_*/model.pt")))
        stats = []
        for item in json.loads(Path(datalist).read_text())["testing"]:
            assert "label" not in item  # predictions never see a label
            image = Path(item["image"])
            label = nib.load(str(image.parent.parent / "labelsTr" / image.name))
            truth = np.asarray(label.dataobj) != 0
            rng = np.random.default_rng(int(hashlib.sha256((model_hash + item["id"]).encode()).hexdigest()[:8], 16))
            keep = rng.uniform(0.5, 0.95)
            probability = np.where(truth, rng.uniform(0.3, 1.0, truth.shape), 0.0).astype(np.float32)
            mask = probability >= 1.0 - keep * 0.7
            out = Path(output_dir)
            if save_probability:
                save_nifti(probability, label.affine, out / f"{item['id']}_probability.nii.gz", dtype=np.float32)
            save_nifti(mask.astype(np.uint8), label.affine, out / f"{item['id']}.nii.gz", dtype=np.uint8)
            stats.append({"id": item["id"], "stopped_round": 1})
        return stats


@pytest.fixture(scope="module")
def dataset_file(phantom_dataset) -> Path:
    return phantom_dataset(cases=10, seed=2)


def settings(dataset_file: Path, out: Path, **extra) -> dict:
    return {
        "output_dir": str(out),
        "dataset": str(dataset_file),
        "split": {"labeled": 2, "test": 2},
        "folds": 2,
        "generations": 2,
        "training": {"preset": "tiny", "iterations": 3},
        "report": {"overlay_cases": 2},
        **extra,
    }


def run(dataset_file: Path, out: Path, predictor=None, training=None, resume=False, **extra) -> ExperimentRunner:
    config = ExperimentConfig.from_dict(settings(dataset_file, out, **extra), base=out.parent)
    trainer = ExperimentRunner(
        config,
        resume=resume,
        predictor=predictor or FakePredictor(),
        training_runner=training or FakeTraining(),
        progress=False,
    )
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def finished(dataset_file, tmp_path_factory) -> ExperimentRunner:
    return run(dataset_file, tmp_path_factory.mktemp("runs") / "experiment")


def numbers(report: dict) -> dict:
    """The report without its file paths and timings."""
    return {k: v for k, v in report.items() if k not in ("files", "experiment", "cpu_seconds")}


def test_layout_is_the_documented_one(finished):
    root = finished.dir
    for name in (
        "config.yaml",
        "splits.json",
        "plan.json",
        "state.json",
        "log.txt",
        "datalists/test.json",
        "datalists/fold1.json",
    ):
        assert (root / name).is_file(), name
    splits = finished.data.splits
    for model in (
        "supervised/gen0/all",
        "fully_supervised/gen0/all",
        "self_learning/gen2/all",
        "stso/gen1/all",
        "atso/gen1/fold0",
        "atso/gen2/fold1",
        "atso/gen2/all",
    ):
        for plane in "XYZ":
            assert (root / "models" / model / f"plane_{plane}" / "model.pt").is_file(), model
            folder = root / "models" / model / f"plane_{plane}"
            meta = json.loads((folder / "training.json").read_text())
            assert json.loads((folder / "settings.json").read_text())["plane"] == plane
            assert meta["command"].startswith("python -m monai.bundle run --config_file ")
            assert f'{folder / "settings.json"}"]' in meta["command"] and meta["command"].endswith("--device cpu")
    for strategy in ("self_learning", "stso", "atso"):
        for generation in (1, 2, 3):
            for k, fold in enumerate(splits.reference):
                files = sorted(
                    p.name
                    for p in (root / "pseudo_labels" / strategy / f"gen{generation}" / f"fold{k}").glob("*.nii.gz")
                )
                assert files == sorted(f"{i}.nii.gz" for i in fold)
    assert sorted(p.name for p in (root / "predictions/atso/gen2/fused/test").glob("*.nii.gz")) == sorted(
        f"{i}.nii.gz" for i in splits.test
    )
    for name in ("report.json", "report.csv", "report.md", "progress.png"):
        assert (root / "reports" / name).stat().st_size > 0
    assert (root / "reports" / "progress.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((root / "reports" / "overlays").glob("*.png"))) == 2


def test_every_stage_is_logged_with_its_bundle_command(finished):
    log = (finished.dir / "log.txt").read_text()
    trains = [s for s in finished.plan if s.kind == "train"]
    assert log.count("--config_file") >= len(trains)
    assert all(f"train {s.id} " in log for s in trains)
    assert "configs/inference.json" in log and "--model_dir" in log


def test_journal_records_every_step_and_scratch_trainings_share_initial_weights(finished):
    state = json.loads((finished.dir / "state.json").read_text())
    assert set(state["steps"]) == {s.id for s in finished.plan}
    for plane in "XYZ":
        initial = {
            s.params["model"]: state["steps"][s.id]["result"]["initial_weights_sha256"]
            for s in finished.plan
            if s.kind == "train" and s.params["plane"] == plane
        }
        scratch = {m: h for m, h in initial.items() if not m.startswith("self_learning")}
        assert len(set(scratch.values())) == 1, scratch
        # self-learning starts from its teacher's trained weights
        models = {
            s.params["model"]: state["steps"][s.id]["result"]["model_sha256"]
            for s in finished.plan
            if s.kind == "train" and s.params["plane"] == plane
        }
        assert initial["self_learning/gen1/all"] == models["supervised/gen0/all"]
        assert initial["self_learning/gen2/all"] == models["self_learning/gen1/all"]


def test_continued_atso_models_start_from_their_own_previous_weights_and_the_report_says_so(dataset_file, tmp_path):
    runner = run(
        dataset_file, tmp_path / "experiment", strategies=["supervised", "self_learning", "atso"], fold_init="continue"
    )
    state = json.loads((runner.dir / "state.json").read_text())
    for plane in "XYZ":
        trainings = {
            s.params["model"]: state["steps"][s.id]["result"]
            for s in runner.plan
            if s.kind == "train" and s.params["plane"] == plane
        }
        for group in ("fold0", "fold1", "all"):
            assert (
                trainings[f"atso/gen1/{group}"]["initial_weights_sha256"]
                == trainings["supervised/gen0/all"]["model_sha256"]
            )
            assert (
                trainings[f"atso/gen2/{group}"]["initial_weights_sha256"]
                == trainings[f"atso/gen1/{group}"]["model_sha256"]
            )
        # Generation 1's model of all labels is self-learning's student: the same start, the same labels (M0's).
        assert trainings["atso/gen1/all"]["model_sha256"] == trainings["self_learning/gen1/all"]["model_sha256"]
    report = json.loads((runner.dir / "reports" / "report.json").read_text())
    assert report["fold_init"] == "continue"
    assert (
        "each M(fold j) fine-tunes M(fold j) of the previous generation"
        in (runner.dir / "reports" / "report.md").read_text()
    )


def test_training_lists_never_carry_a_reference_or_test_truth(finished):
    dataset, splits = finished.data.dataset, finished.data.splits
    reference = set(splits.reference_ids)
    for datalist in (finished.dir / "models").glob("*/gen*/*/datalist.json"):
        strategy = datalist.relative_to(finished.dir / "models").parts[0]
        for item in json.loads(datalist.read_text())["training"]:
            assert item["id"] not in splits.test
            if item["id"] in reference:
                truth = str(dataset.case(item["id"]).label)
                if strategy == "fully_supervised":
                    assert item["label"] == truth
                else:
                    assert item["label"] != truth and f"/pseudo_labels/{strategy}/" in item["label"], item


def test_atso_pseudo_labels_are_the_other_fold_models_predictions(finished):
    root = finished.dir
    for k in (0, 1):
        other = 1 - k
        for case in finished.data.splits.reference[k]:
            labels = (root / f"pseudo_labels/atso/gen2/fold{k}/{case}.nii.gz").read_bytes()
            assert labels == (root / f"predictions/atso/gen1/fold{other}/fold{k}/{case}.nii.gz").read_bytes()
            assert labels != (root / f"predictions/atso/gen1/fold{k}/fold{k}/{case}.nii.gz").read_bytes()


def test_report_tables_have_the_papers_layout(finished):
    report = json.loads((finished.dir / "reports" / "report.json").read_text())
    assert report["metric"] == "mean" and report["generations"] == 2
    atso = report["strategies"]["atso"]
    assert set(atso["generations"]) == {"0", "1", "2"} and atso["final"]["test"]["cases"] == 2
    assert set(atso["folds"]["1"]["models"]["fold0"]) == {"fold0", "fold1", "test"}
    # G0 is M0 for every strategy
    for strategy in ("self_learning", "stso", "atso"):
        assert (
            report["strategies"][strategy]["generations"]["0"] == report["strategies"]["supervised"]["generations"]["0"]
        )
    text = (finished.dir / "reports" / "report.md").read_text()
    assert "| Generation | Self-learning @R | Self-learning @E | STSO @R | STSO @E | ATSO @R | ATSO @E |" in text
    assert "| G2 |" in text and "| final |" in text and "updated R_t" in text and "gap closed" in text
    rows = (finished.dir / "reports" / "report.csv").read_text().splitlines()
    assert rows[0] == "strategy,generation,measure,cases,mean_dsc,std_dsc,global_dsc"
    assert any(r.startswith("atso,1,fold1@fold0,") for r in rows)


def test_interrupted_run_resumes_from_the_journal_to_the_same_result(finished, dataset_file, tmp_path):
    out = tmp_path / "experiment"
    training = FakeTraining()
    with pytest.raises(KeyboardInterrupt):
        run(dataset_file, out, predictor=FakePredictor(fail_after=9), training=training)
    done = json.loads((out / "state.json").read_text())["order"]
    assert 0 < len(done) < len(finished.plan)
    trained_before = len(training.calls)

    with pytest.raises(ConfigError, match="--resume"):
        run(dataset_file, out)

    resumed_training = FakeTraining()
    resumed = run(dataset_file, out, training=resumed_training, resume=True)
    trains = [s for s in finished.plan if s.kind == "train"]
    assert len(resumed_training.calls) == len(trains) - trained_before  # finished trainings are not redone
    assert numbers(resumed.report) == numbers(finished.report)
    state = json.loads((out / "state.json").read_text())
    assert state["order"][: len(done)] == done and len(state["order"]) == len(finished.plan)


def test_resume_with_another_configuration_is_refused(finished, dataset_file):
    with pytest.raises(ConfigError, match="generations"):
        run(dataset_file, finished.dir, resume=True, generations=3)


def test_output_folder_with_other_files_is_refused(dataset_file, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        run(dataset_file, tmp_path / "busy")
    with pytest.raises(ConfigError, match="folder of the input"):
        run(dataset_file, dataset_file.parent)


def test_fully_supervised_is_skipped_when_reference_cases_have_no_label(dataset_file, tmp_path):
    data = json.loads(dataset_file.read_text())
    splits = {
        "labeled": ["case_000", "case_001"],
        "reference": [["case_002", "case_003"], ["case_004", "case_005"]],
        "test": ["case_006"],
    }
    for case in data["cases"]:
        case["image"] = str(dataset_file.parent / case["image"])
        case["label"] = str(dataset_file.parent / case["label"])
        if case["id"] == "case_004":
            del case["label"]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dataset.json").write_text(json.dumps(data))
    (tmp_path / "in" / "splits.json").write_text(json.dumps(splits))
    config = settings(
        tmp_path / "in" / "dataset.json", tmp_path / "out", generations=1, splits=str(tmp_path / "in" / "splits.json")
    )
    del config["split"]
    trainer = ExperimentRunner(
        ExperimentConfig.from_dict(config, base=tmp_path),
        predictor=FakePredictor(),
        training_runner=FakeTraining(),
        progress=False,
    )
    report = trainer.run()
    assert not [s for s in trainer.plan if s.tags.get("strategy") == "fully_supervised"]
    assert report["strategies"]["fully_supervised"]["final"]["test"] is None
    assert "not trained" in (trainer.dir / "reports" / "report.md").read_text()
    # the unlabeled reference case is pseudo-labeled, never evaluated
    assert (trainer.dir / "pseudo_labels/atso/gen1/fold1/case_004.nii.gz").is_file()
    assert report["strategies"]["atso"]["generations"]["0"]["reference"]["cases"] == 3


def test_vote_of_model_sets_is_a_majority_with_ties_broken_by_probability(tmp_path):
    affine = np.eye(4)
    masks = [
        np.array([1, 1, 0, 0, 1], np.uint8),
        np.array([1, 0, 1, 0, 0], np.uint8),
        np.array([0, 1, 1, 0, 0], np.uint8),
    ]
    probabilities = [
        np.array([0.9, 0.8, 0.1, 0.2, 0.9]),
        np.array([0.9, 0.4, 0.6, 0.2, 0.3]),
        np.array([0.1, 0.7, 0.9, 0.2, 0.1]),
    ]
    sources = []
    for n, (mask, probability) in enumerate(zip(masks, probabilities, strict=True)):
        folder = tmp_path / f"set{n}"
        save_nifti(mask.reshape(5, 1, 1), affine, folder / "c.nii.gz", dtype=np.uint8)
        save_nifti(
            probability.reshape(5, 1, 1).astype(np.float32), affine, folder / "c_probability.nii.gz", dtype=np.float32
        )
        sources.append(folder)
    three = np.asarray(nib.load(str(vote_files(sources, "c", tmp_path / "three.nii.gz"))).dataobj).ravel()
    assert three.tolist() == [1, 1, 1, 0, 0]
    # two sets: a tie (one vote each) is organ when the mean probability >= 0.5
    two = np.asarray(nib.load(str(vote_files(sources[:2], "c", tmp_path / "two.nii.gz"))).dataobj).ravel()
    assert two.tolist() == [1, 1, 0, 0, 1]
    (sources[1] / "c_probability.nii.gz").unlink()
    with pytest.raises(ConfigError, match="probabilit"):
        vote_files(sources[:2], "c", tmp_path / "x.nii.gz")


def test_results_reader_gives_the_reports_tables_as_rows(finished):
    results = ExperimentResults(finished.dir)
    report = json.loads((finished.dir / "reports" / "report.json").read_text())
    atso = report["strategies"]["atso"]
    table = results.strategy_table()
    assert [row["Generation"] for row in table] == ["G0", "G1", "G2", "final"]
    assert table[1]["ATSO @R"] == atso["generations"]["1"]["reference"]["mean_dsc"]
    assert table[2]["Self-learning @E"] == report["strategies"]["self_learning"]["generations"]["2"]["test"]["mean_dsc"]
    assert table[3]["ATSO @E"] == atso["final"]["test"]["mean_dsc"] and table[3]["ATSO @R"] is None
    folds = results.atso_fold_table()
    assert folds[2]["M(fold0) @R(fold1)"] == atso["folds"]["2"]["models"]["fold0"]["fold1"]["mean_dsc"]
    assert folds[1]["updated R_t"] == atso["folds"]["1"]["updated_reference"]["mean_dsc"]
    final = {row["Strategy"]: row["@E"] for row in results.final_table()}
    assert final["Fully supervised"] == report["strategies"]["fully_supervised"]["final"]["test"]["mean_dsc"]
    # report.md is made from the same rows
    assert all(
        line in (finished.dir / "reports" / "report.md").read_text() for line in results.markdown(folds).splitlines()
    )
    assert f"| G1 | {100 * table[1]['Self-learning @R']:.2f} |" in results.markdown(table)


def test_results_reader_finds_the_worst_pseudo_labels_of_a_generation(finished):
    results = ExperimentResults(finished.dir)
    folders = results.pseudo_label_folders("atso", 1)
    assert folders == ["pseudo_labels/atso/gen2/fold0", "pseudo_labels/atso/gen2/fold1"]
    journal = {}
    for step in finished.plan:
        if step.kind == "evaluate" and step.params["target"] in folders:
            journal.update(finished.journal.result(step.id)["dsc"])
    assert len(journal) == len(finished.data.splits.reference_ids)
    scores = results.case_scores(folders[0]) + results.case_scores(folders[1])
    assert {s.case_id: s.dsc for s in scores} == pytest.approx(journal)
    worst = results.worst_cases(folders, count=2)
    assert [s.dsc for s in worst] == sorted(journal.values())[:2]
    assert all(s.prediction.is_file() and s.prediction.parent == finished.dir / s.folder for s in worst)
    assert (
        results.pseudo_label("self_learning", 1, worst[0].case_id)
        == finished.dir / f"pseudo_labels/self_learning/gen2/{worst[0].folder.split('/')[-1]}/{worst[0].case_id}.nii.gz"
    )
    figure = results.overlay(
        worst[0].case_id, {"ATSO": worst[0].prediction, "M0": results.pseudo_label("atso", 0, worst[0].case_id)}
    )
    assert len(figure.axes) == 2 and figure.axes[0].get_title().startswith("ATSO\nDSC ")


def test_results_reader_refuses_what_is_not_a_finished_experiment(finished, tmp_path):
    with pytest.raises(ConfigError, match="no experiment folder"):
        ExperimentResults(tmp_path / "missing")
    with pytest.raises(ConfigError, match="not an experiment folder"):
        ExperimentResults(tmp_path)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "state.json"):
        (unfinished / name).write_bytes((finished.dir / name).read_bytes())
    with pytest.raises(ConfigError, match=r"no report yet.*--resume"):
        ExperimentResults(unfinished)
    results = ExperimentResults(finished.dir)
    with pytest.raises(ConfigError, match=r"generation must be in 0..2"):
        results.pseudo_label_folders("atso", 3)
    with pytest.raises(ConfigError, match="made no pseudo labels"):
        results.pseudo_label_folders("supervised", 1)
    with pytest.raises(ConfigError, match="was not evaluated"):
        results.case_scores("predictions/atso/gen9/all/test")
    with pytest.raises(ConfigError, match="not a reference case"):
        results.pseudo_label("atso", 1, finished.data.splits.test[0])


class IdleWorker:
    """Stands in for a worker process: takes jobs and never ends one (the executor's accounting is tested)."""

    def __init__(self, *args, env=None, **kwargs) -> None:
        self.stdin = io.StringIO()
        self.env = env

    def poll(self):
        return None

    def kill(self) -> None:
        pass

    def wait(self) -> int:
        return 0


def test_worker_pool_counts_the_cpu_threads_of_its_running_trainings(tmp_path, monkeypatch):
    monkeypatch.setattr(executors.subprocess, "Popen", IdleWorker)
    executor = WorkerPoolExecutor(["cpu", "cuda:0", "cpu"], tmp_path / "log.txt")
    threads = executor.worker_threads
    jobs = [TrainingJob(f"train/job{k}", [], {"output_dir": str(tmp_path / f"job{k}")}) for k in range(3)]
    assert executor.busy_cpu_threads() == 0
    executor.submit(jobs[0])  # the first CPU worker
    assert executor.busy_cpu_threads() == threads
    executor.submit(jobs[1])  # the GPU worker: no CPU threads counted
    assert executor.busy_cpu_threads() == threads
    executor.submit(jobs[2])
    assert executor.busy_cpu_threads() == 2 * threads
    executor.result_file(jobs[0]).write_text(json.dumps({"model_sha256": "0"}))
    assert [f.job.step_id for f in executor.wait(timeout=0.0)] == ["train/job0"]
    assert executor.busy_cpu_threads() == threads
    executor.close()


def test_every_worker_sees_its_device_and_takes_its_share_of_the_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(executors.subprocess, "Popen", IdleWorker)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 16)
    executor = WorkerPoolExecutor(["cpu", "cuda:1", "cpu", "cuda:0"], tmp_path / "log.txt")
    for k in range(4):
        executor.submit(TrainingJob(f"train/job{k}", [], {"output_dir": str(tmp_path / f"job{k}")}))
    envs = [executor._workers[slot].env for slot in range(4)]
    # A GPU worker's data loading and transforms run on the CPU: it takes its share too, not all 16 cores.
    assert [env["OMP_NUM_THREADS"] for env in envs] == ["4"] * 4
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["", "1", "", "0"]
    executor.close()


class BusyWorkersExecutor(InProcessExecutor):
    """In-process trainings, reporting CPU threads held elsewhere (as worker processes would)."""

    def busy_cpu_threads(self) -> int:
        return 1000


def test_predictions_beside_running_trainings_use_the_cpu_threads_they_leave(dataset_file, tmp_path, monkeypatch):
    threads_seen = []

    class ThreadRecordingPredictor(FakePredictor):
        def __call__(self, *args):
            threads_seen.append(torch.get_num_threads())
            return super().__call__(*args)

    before = torch.get_num_threads()
    monkeypatch.setattr(ExperimentRunner, "_make_executor", lambda self: BusyWorkersExecutor("cpu", FakeTraining()))
    out = tmp_path / "experiment"
    run(dataset_file, out, predictor=ThreadRecordingPredictor(), strategies=["supervised"], generations=0)
    assert threads_seen and set(threads_seen) == {1}  # not the 2 threads of a 2-core machine beside 2 trainings
    assert torch.get_num_threads() == before  # restored after each prediction
    assert "1 CPU thread(s) here, beside 1000 of running trainings" in (out / "log.txt").read_text()


def test_with_one_generation_atso_final_is_stso_generation_one_and_the_report_says_so(dataset_file, tmp_path):
    trainer = run(dataset_file, tmp_path / "experiment", generations=1)
    for plane in "XYZ":
        atso_final = trainer.journal.result(f"train/atso/gen1/all/plane_{plane}")["model_sha256"]
        assert atso_final == trainer.journal.result(f"train/stso/gen1/all/plane_{plane}")["model_sha256"]
    assert "ATSO's final model is STSO's generation 1" in (trainer.dir / "reports" / "report.md").read_text()


def test_bad_reference_and_test_cases_are_refused_before_the_first_training(dataset_file, tmp_path):
    import shutil

    from atso_med.atso.cases import load_experiment_data
    from atso_med.errors import DatasetError

    data_dir = tmp_path / "data"
    shutil.copytree(dataset_file.parent, data_dir)
    config = ExperimentConfig.from_dict(settings(data_dir / dataset_file.name, tmp_path / "experiment"), base=tmp_path)
    splits = load_experiment_data(config, tmp_path / "experiment").splits
    dataset = load_experiment_data(config, tmp_path / "experiment").dataset
    late_reference, test_case = splits.reference[1][-1], splits.test[0]
    image = nib.load(str(dataset.case(late_reference).image))
    broken = np.asarray(image.dataobj, dtype=np.float32)
    broken[0, 0, 0] = np.nan
    save_nifti(broken, image.affine, dataset.case(late_reference).image, dtype=np.float32)
    label = nib.load(str(dataset.case(test_case).label))
    save_nifti(np.asarray(label.dataobj) * 0.5, label.affine, dataset.case(test_case).label, dtype=np.float32)

    training = FakeTraining()
    trainer = ExperimentRunner(config, predictor=FakePredictor(), training_runner=training, progress=False)
    with pytest.raises(DatasetError) as error:
        trainer.run()
    message = str(error.value)
    assert f"{late_reference} (reference[1]): image has non-finite voxels: 1 NaN" in message
    assert f"{test_case} (test): label has non-integer values: 0.5" in message
    assert "nothing was trained" in message
    assert training.calls == [] and not (tmp_path / "experiment" / "state.json").exists()


def test_a_second_run_on_a_held_folder_is_refused_and_a_killed_holder_leaves_no_stale_lock(dataset_file, tmp_path):
    import signal
    import subprocess
    import sys

    from atso_med.atso.lock import FolderInUseError, FolderLock

    out = tmp_path / "experiment"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom atso_med.atso.lock import FolderLock\n"
            f"FolderLock({str(out)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        training = FakeTraining()
        with pytest.raises(FolderInUseError, match=rf"in use by another run \(pid {holder.pid} on "):
            run(dataset_file, out, training=training)
        assert training.calls == [] and not (out / "state.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the killed holder's lock: the run goes ahead, and holds the folder while it runs.
    trainer = ExperimentRunner(
        ExperimentConfig.from_dict(settings(dataset_file, out), base=tmp_path),
        predictor=FakePredictor(),
        training_runner=FakeTraining(),
        progress=False,
    )
    trainer.prepare()
    with pytest.raises(FolderInUseError):
        FolderLock(out).acquire()
    trainer.run()
    FolderLock(out).acquire().release()  # released at the end of run()
    assert (out / "reports" / "report.json").is_file()


def _mask(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj) != 0


def test_lazy_learning_figures_are_measured_from_the_students_files(finished):
    report = json.loads((finished.dir / "reports" / "report.json").read_text())
    figures = report["lazy_learning"]
    splits = json.loads((finished.dir / "splits.json").read_text())
    # every student that trained on pseudo labels and predicted its reference cases has a fit; ATSO's final has none
    students = {row["model"]: row for row in figures["students"]}
    assert set(students) == {
        f"{s}/gen{t}/{g}"
        for t in (1, 2)
        for s, g in [("self_learning", "all"), ("stso", "all"), ("atso", "fold0"), ("atso", "fold1")]
    }
    # the fit, recomputed here from the files: STSO's generation-2 prediction of each fold vs the labels it trained on
    intersection = sizes = 0
    for k, fold in enumerate(splits["reference"]):
        for case_id in fold:
            prediction = _mask(finished.dir / f"predictions/stso/gen2/all/fold{k}/{case_id}.nii.gz")
            labels = _mask(finished.dir / f"pseudo_labels/stso/gen2/fold{k}/{case_id}.nii.gz")
            intersection += int((prediction & labels).sum())
            sizes += int(prediction.sum() + labels.sum())
    assert students["stso/gen2/all"]["fit"]["global_dsc"] == pytest.approx(2 * intersection / sizes)
    # an ATSO fold model is scored on its own fold only, against that fold's labels
    assert students["atso/gen1/fold0"]["folds"] == ["fold0"]
    own = report["strategies"]["atso"]["folds"]["1"]["models"]
    assert students["atso/gen1/fold0"]["truth"]["mean_dsc"] == pytest.approx(own["fold0"]["fold0"]["mean_dsc"])
    # own fold minus other fold, from the Table 4 cells
    expected = np.mean(
        [own[f"fold{k}"][f"fold{k}"]["mean_dsc"] - own[f"fold{1 - k}"][f"fold{k}"]["mean_dsc"] for k in (0, 1)]
    )
    assert figures["atso_own_minus_other"]["1"]["mean_difference"] == pytest.approx(expected)
    # voxel errors of M0's labels (self-learning's generation-1 set), recomputed from the files
    errors = figures["pseudo_labels"]["self_learning"]["1"]
    for k, fold in enumerate(splits["reference"]):
        for case_id in fold:
            labels = _mask(finished.dir / f"pseudo_labels/self_learning/gen1/fold{k}/{case_id}.nii.gz")
            counts = errors["per_case"][case_id]
            assert counts["tp"] + counts["fp"] == int(labels.sum())
    assert errors["precision"] == pytest.approx(errors["tp"] / (errors["tp"] + errors["fp"]))
    assert errors["volume_ratio"] == pytest.approx((errors["tp"] + errors["fp"]) / (errors["tp"] + errors["fn"]))
    text = (finished.dir / "reports" / "report.md").read_text()
    assert "## Lazy learning" in text and "ATSO own fold minus other fold" in text and "volume / truth" in text


def test_repeated_errors_count_the_wrong_label_voxels_a_model_predicts_the_same_wrong_way(finished, dataset_file):
    report = json.loads((finished.dir / "reports" / "report.json").read_text())
    repeated = report["lazy_learning"]["repeated_errors"]
    splits = json.loads((finished.dir / "splits.json").read_text())
    truth_dir = dataset_file.parent / "labelsTr"

    def share(pairs) -> float:
        same = wrong = 0
        for labels_dir, prediction_dir, case_id in pairs:
            truth = _mask(truth_dir / f"{case_id}.nii.gz")
            labels = _mask(finished.dir / labels_dir / f"{case_id}.nii.gz")
            prediction = _mask(finished.dir / prediction_dir / f"{case_id}.nii.gz")
            errors = labels != truth
            same += int((errors & (prediction == labels)).sum())
            wrong += int(errors.sum())
        return same / wrong

    stso = [
        (f"pseudo_labels/stso/gen2/fold{k}", f"predictions/stso/gen2/all/fold{k}", case_id)
        for k, fold in enumerate(splits["reference"])
        for case_id in fold
    ]
    assert repeated["students"]["stso/gen2/all"] == pytest.approx(share(stso))
    assert "atso/gen2/all" not in repeated["students"]  # the final model never predicts the reference set
    own = [
        (f"pseudo_labels/atso/gen1/fold{k}", f"predictions/atso/gen1/fold{k}/fold{k}", i)
        for k, fold in enumerate(splits["reference"])
        for i in fold
    ]
    other = [
        (f"pseudo_labels/atso/gen1/fold{k}", f"predictions/atso/gen1/fold{1 - k}/fold{k}", i)
        for k, fold in enumerate(splits["reference"])
        for i in fold
    ]
    assert repeated["atso"]["1"] == pytest.approx({"own": share(own), "other": share(other)})
    assert "ATSO: share of a fold's wrong pseudo-label voxels" in (finished.dir / "reports" / "report.md").read_text()


def test_lazy_learning_of_an_experiment_reported_before_the_figures_is_measured_from_its_folder(finished, tmp_path):
    import shutil

    copy = tmp_path / "experiment"
    shutil.copytree(finished.dir, copy)
    report_file = copy / "reports" / "report.json"
    report = json.loads(report_file.read_text())
    measured = report.pop("lazy_learning")
    report_file.write_text(json.dumps(report))
    recomputed = ExperimentResults(copy).lazy_learning()
    assert recomputed["pseudo_labels"] == measured["pseudo_labels"]
    assert recomputed["atso_own_minus_other"] == measured["atso_own_minus_other"]
    assert [r["fit"] for r in recomputed["students"]] == [r["fit"] for r in measured["students"]]
    assert recomputed["repeated_errors"] == measured["repeated_errors"]


def test_resuming_a_finished_experiment_says_so_and_changes_nothing(finished, dataset_file):
    import io

    before = (finished.dir / "state.json").read_text()
    report = json.loads((finished.dir / "reports" / "report.json").read_text())
    console = io.StringIO()
    config = ExperimentConfig.from_dict(settings(dataset_file, finished.dir), base=finished.dir.parent)
    predictor, training = FakePredictor(), FakeTraining()
    runner = ExperimentRunner(
        config, resume=True, predictor=predictor, training_runner=training, progress=False, console=console
    )
    assert numbers(runner.run()) == numbers(report)
    assert "the experiment is finished" in console.getvalue() and "nothing to run" in console.getvalue()
    assert predictor.calls == 0 and training.calls == []
    assert json.loads((finished.dir / "state.json").read_text())["steps"] == json.loads(before)["steps"]


def test_an_experiment_started_before_the_hu_window_and_fold_settings_resumes(finished, dataset_file):
    import yaml

    report = json.loads((finished.dir / "reports" / "report.json").read_text())
    saved = yaml.safe_load((finished.dir / "config.yaml").read_text())
    del saved["training"]["hu_window"]  # as written before training.hu_window existed
    del saved["fold_training"], saved["fold_init"]  # and before ATSO's fold variants
    (finished.dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    config = ExperimentConfig.from_dict(settings(dataset_file, finished.dir), base=finished.dir.parent)
    runner = ExperimentRunner(
        config, resume=True, predictor=FakePredictor(), training_runner=FakeTraining(), progress=False
    )
    assert numbers(runner.run()) == numbers(report)


def test_overlays_show_a_slice_where_every_model_predicts_something():
    from atso_med.atso.report_figures import overlay_figure
    from atso_med.data.volume import Volume

    truth = np.zeros((16, 16, 10), np.uint8)
    truth[4:12, 4:12, 2:7] = 1
    truth[2:14, 2:14, 4] = 1  # the truth's largest cross-section: slice 4
    early = np.zeros_like(truth)
    early[5:9, 5:9, 5:7] = 1  # one model finds the organ on slices 5-6 only
    late = np.zeros_like(truth)
    late[5:9, 5:9, 6:8] = 1  # the other on slices 6-7 only
    image = Volume(np.random.default_rng(0).normal(size=truth.shape).astype(np.float32), np.eye(4))
    figure = overlay_figure(image, truth, [("early", early), ("late", late)], "case")
    assert "axial slice 6:" in figure._suptitle.get_text()
    # a model that predicts nothing does not hide the others' predictions: the slice most models show
    figure = overlay_figure(image, truth, [("early", early), ("late", late), ("empty", np.zeros_like(truth))], "case")
    assert "axial slice 6:" in figure._suptitle.get_text()
    lone = np.zeros_like(truth)
    lone[5:9, 5:9, 2] = 1  # with a third model that finds the organ on slice 2 only, slice 6 is still shown by two
    figure = overlay_figure(image, truth, [("early", early), ("late", late), ("lone", lone)], "case")
    assert "axial slice 6:" in figure._suptitle.get_text()
    speck = np.zeros_like(truth)
    speck[6, 6, 4] = 1
    speck[4:10, 4:10, 3] = 1  # on the truth's largest cross-section a model shows one voxel, on slice 3 a square
    figure = overlay_figure(image, truth, [("early", early + speck), ("speck", speck)], "case")
    assert "axial slice 3:" in figure._suptitle.get_text()
    beside = np.zeros_like(truth)
    beside[5:9, 5:9, 8:10] = 1  # both models' shared false positives below the organ: the organ's slice first
    figure = overlay_figure(image, truth, [("early", early + beside), ("beside", beside)], "case")
    assert "axial slice 5:" in figure._suptitle.get_text()  # slices 5 and 6 tie: the first
    figure = overlay_figure(image, truth, [("beside", beside)], "case")  # nothing on the organ's slices
    assert "axial slice 8:" in figure._suptitle.get_text()
    figure = overlay_figure(image, truth, [("empty", np.zeros_like(truth))], "case")
    assert "axial slice 4:" in figure._suptitle.get_text()
