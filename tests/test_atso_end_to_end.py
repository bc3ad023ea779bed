"""ATSO experiments with the real bundle training and whole-volume predictor, CPU-sized.

Tiny phantoms (32x32x16), the tiny RSTN, a few iterations: the numbers mean nothing, the paths
are the real ones. A run killed at any moment (``--stop-after``, SIGKILL in the middle of a
training) and resumed must end with the same models and report as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import pytest
import torch
import yaml
from bundle_files import ATSO, INFERENCE, bundle_argv

from atso_med.atso.experiment import STOP_EXIT_STATUS
from atso_med.atso.training_runs import model_file_sha256, state_dict_sha256
from atso_med.cli.main import main
from atso_med.data import PhantomConfig, write_phantom_dataset

pytestmark = pytest.mark.slow

TINY_TRAINING = {
    "preset": "tiny",
    "iterations": 3,
    "batch_size": 1,
    "optimizer": "adam",
    "lr_coarse": 0.001,
    "lr_fine": 0.001,
    "weight_decay": 0.0,
    "num_workers": 0,
}
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


@pytest.fixture(scope="module")
def phantom(phantom_dataset) -> Path:
    return phantom_dataset(cases=6, seed=5)


def write_experiment(path: Path, **settings) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def semi_supervised(phantom: Path, out: Path, **extra) -> dict:
    return {
        "output_dir": str(out),
        "dataset": str(phantom),
        "split": {"labeled": 1, "test": 1},
        "strategies": ["supervised", "self_learning", "atso"],
        "generations": 1,
        "folds": 2,
        "planes": ["Z"],
        "devices": ["cpu"],
        "training": TINY_TRAINING,
        "inference": {"rounds": 1},
        "report": {"overlay_cases": 1},
        **extra,
    }


def journal(out: Path) -> dict:
    return json.loads((out / "state.json").read_text())


def report_numbers(out: Path) -> dict:
    report = json.loads((out / "reports" / "report.json").read_text())
    return {k: v for k, v in report.items() if k not in ("files", "experiment")}


def run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "atso_med", *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def uninterrupted(phantom, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    config = write_experiment(root / "experiment.yaml", **semi_supervised(phantom, root / "run"))
    umask = os.umask(0o022)  # a lab's usual umask, whatever the test machine's
    try:
        assert main(["run", "--config", str(config), "--no-progress"]) == 0
    finally:
        os.umask(umask)
    return root / "run"


def test_every_output_file_is_readable_by_colleagues(uninterrupted):
    """Models, predictions, pseudo labels, plans, journals and reports: 0644 under umask 022, never 0600."""
    modes = {
        path.relative_to(uninterrupted): path.stat().st_mode & 0o777
        for path in uninterrupted.rglob("*")
        if path.is_file()
    }
    assert len(modes) > 50 and any(p.suffix == ".pt" for p in modes) and any(p.name.endswith(".nii.gz") for p in modes)
    assert {p: oct(m) for p, m in modes.items() if m != 0o644} == {}


def test_killed_run_resumes_to_the_same_models_and_report(phantom, uninterrupted, tmp_path):
    config = write_experiment(tmp_path / "experiment.yaml", **semi_supervised(phantom, tmp_path / "run"))
    out = tmp_path / "run"
    plan = json.loads((uninterrupted / "plan.json").read_text())["steps"]

    # 1. an abrupt exit (os._exit) after 3 finished steps
    first = run_cli("run", "--config", str(config), "--no-progress", "--stop-after", "3")
    output, _ = first.communicate(timeout=600)
    assert first.returncode == STOP_EXIT_STATUS, output[-3000:]
    assert len(journal(out)["order"]) == 3

    # 2. SIGKILL in the middle of a training: wait until the journal reaches the step before it
    target = next(i for i, s in enumerate(plan) if s["kind"] == "train" and s["params"]["model"] == "atso/gen1/fold0")
    second = run_cli("run", "--config", str(config), "--no-progress", "--resume")
    deadline = time.time() + 600
    while time.time() < deadline and second.poll() is None:
        try:
            if len(journal(out)["order"]) >= target:
                break
        except (json.JSONDecodeError, FileNotFoundError):  # never expected: the journal is written atomically
            raise
        time.sleep(0.02)
    second.send_signal(signal.SIGKILL)
    second.communicate(timeout=60)
    assert second.returncode == -signal.SIGKILL
    done = journal(out)["order"]
    assert 3 < len(done) < len(plan)
    # the killed step left a partial training folder behind (or had not started writing)
    assert plan[len(done)]["id"] not in done

    # 3. resume to the end, in this process
    assert main(["run", "--config", str(config), "--no-progress", "--resume"]) == 0
    finished = journal(out)
    assert finished["order"][: len(done)] == done and set(finished["steps"]) == {s["id"] for s in plan}
    reference = journal(uninterrupted)
    for step in plan:
        if step["kind"] == "train":
            assert (
                finished["steps"][step["id"]]["result"]["model_sha256"]
                == reference["steps"][step["id"]]["result"]["model_sha256"]
            ), step["id"]
    assert report_numbers(out) == report_numbers(uninterrupted)
    # nothing was left of the interrupted attempts
    assert not list(out.glob("models/**/checkpoint_*.pt")) and not list(out.glob("models/**/initial_weights.pt"))


def test_scratch_trainings_start_from_bit_identical_weights_and_self_learning_from_its_teacher(uninterrupted):
    from atso_med.networks import build_rstn, initialize_rstn

    state = journal(uninterrupted)["steps"]
    expected = state_dict_sha256(initialize_rstn(build_rstn("tiny"), seed=0).state_dict())
    scratch = ["supervised/gen0/all", "atso/gen1/fold0", "atso/gen1/fold1", "atso/gen1/all"]
    for model in scratch:
        assert state[f"train/{model}/plane_Z"]["result"]["initial_weights_sha256"] == expected, model
        meta = json.loads((uninterrupted / "models" / model / "plane_Z" / "training.json").read_text())
        assert meta["initial_weights_sha256"] == expected and meta["init"] == {"kind": "scratch"}
    m0 = model_file_sha256(uninterrupted / "models/supervised/gen0/all/plane_Z/model.pt")
    assert state["train/self_learning/gen1/all/plane_Z"]["result"]["initial_weights_sha256"] == m0 != expected
    # trained weights differ from the initial ones: the trainings did train
    assert state["train/atso/gen1/fold0/plane_Z"]["result"]["model_sha256"] != expected


def test_logged_commands_are_the_bundle_runs(uninterrupted, tmp_path):
    log = (uninterrupted / "log.txt").read_text()
    train_commands = [line.split(": ", 1)[1] for line in log.splitlines() if " INFO train train/" in line]
    assert len(train_commands) == 5
    assert all(c.startswith("python -m monai.bundle run --config_file ") for c in train_commands)
    assert f"--config_file {INFERENCE}" in log
    # Run by hand, a logged training gives the experiment's model (into another folder).
    folder = uninterrupted / "models/atso/gen1/fold0/plane_Z"
    (command,) = [c for c in train_commands if str(folder / "settings.json") in c]
    argv = [sys.executable, *shlex.split(command)[1:], "--output_dir", str(tmp_path / "by_hand")]
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((folder / "training.json").read_text())["model_sha256"]
    assert model_file_sha256(tmp_path / "by_hand" / "model.pt") == recorded


def test_pseudo_labels_and_predictions_lie_on_the_images_grids(uninterrupted, phantom):
    dataset = json.loads(phantom.read_text())
    splits = json.loads((uninterrupted / "splits.json").read_text())
    for k, fold in enumerate(splits["reference"]):
        for case in fold:
            image = nib.load(str(phantom.parent / f"imagesTr/{case}.nii.gz"))
            label = nib.load(str(uninterrupted / f"pseudo_labels/atso/gen1/fold{k}/{case}.nii.gz"))
            assert label.shape == image.shape and (label.affine == image.affine).all()
    assert len(dataset["cases"]) == 6


def test_bundle_config_runs_the_whole_experiment(phantom, tmp_path):
    settings = semi_supervised(phantom, tmp_path / "run", strategies=["supervised"], generations=0)
    config = write_experiment(tmp_path / "experiment.yaml", **settings)
    command = bundle_argv("run", ATSO, experiment=config, progress=False)
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "reports" / "report.json").read_text())
    assert report["strategies"]["supervised"]["final"]["test"]["cases"] == 1
    assert (tmp_path / "run" / "models/supervised/gen0/all/plane_Z/model.pt").is_file()


def test_trainings_run_concurrently_in_worker_processes_when_several_devices_are_given(phantom, tmp_path):
    settings = semi_supervised(
        phantom,
        tmp_path / "run",
        strategies=["supervised"],
        generations=0,
        planes=["X", "Y", "Z"],
        devices=["cpu", "cpu"],
    )
    config = write_experiment(tmp_path / "experiment.yaml", **settings)
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    starts = [line for line in log.splitlines() if " INFO train train/" in line and "(worker " in line]
    assert len(starts) == 3
    # one serving worker per device: the third training went to a worker that had already trained
    workers = [line.split("(worker ", 1)[1].split(")", 1)[0] for line in starts]
    assert len(set(workers)) == 2
    ends = [line for line in log.splitlines() if "step train/" in line and ": done" in line]
    # both workers were started before the first one finished
    assert log.index(starts[1]) < log.index(ends[0])
    state = journal(tmp_path / "run")["steps"]
    for plane in "XYZ":
        result = state[f"train/supervised/gen0/all/plane_{plane}"]["result"]
        assert result["model_sha256"] == model_file_sha256(
            tmp_path / f"run/models/supervised/gen0/all/plane_{plane}/model.pt"
        )
        assert (
            torch.load(tmp_path / f"run/models/supervised/gen0/all/plane_{plane}/model.pt", weights_only=True)[
                "config"
            ]["plane"]
            == plane
        )


def test_transfer_from_a_labeled_source_to_a_shifted_unlabeled_target(tmp_path):
    source = write_phantom_dataset(tmp_path / "source", PhantomConfig(cases=2, seed=7, shape=(32, 32, 16)))
    target = write_phantom_dataset(
        tmp_path / "target", PhantomConfig(cases=5, seed=7, shape=(32, 32, 16), domain="shifted")
    )
    settings = {
        "output_dir": str(tmp_path / "run"),
        "transfer": {"source": str(source), "target": str(target), "target_test": 1},
        "strategies": ["supervised", "fully_supervised", "atso"],
        "generations": 1,
        "planes": ["X", "Y", "Z"],
        "devices": ["cpu"],
        "long_axis_spacing": 2.0,
        "training": {**TINY_TRAINING, "iterations": 2},
        "inference": {"rounds": 1},
        "report": {"overlay_cases": 1},
    }
    config = write_experiment(tmp_path / "experiment.yaml", **settings)
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    out = tmp_path / "run"
    splits = json.loads((out / "splits.json").read_text())
    assert splits["labeled"] == ["source_case_000", "source_case_001"]
    assert len(splits["test"]) == 1 and splits["test"][0].startswith("target_")
    assert sorted(i for fold in splits["reference"] for i in fold) == sorted(
        f"target_case_{k:03d}" for k in range(5) if f"target_case_{k:03d}" != splits["test"][0]
    )
    merged = json.loads((out / "dataset.json").read_text())
    assert len(merged["cases"]) == 7 and merged["transfer"]["target"] == str(target)
    report = json.loads((out / "reports" / "report.json").read_text())
    assert report["setting"] == "transfer" and report["metric"] == "global"
    assert 0.0 <= report["strategies"]["atso"]["final"]["test"]["global_dsc"] <= 1.0
    assert "global DSC" in (out / "reports" / "report.md").read_text()
    # long-axis spacing: in the training preprocessing and in the prediction; outputs on the original grid
    assert "--long_axis_spacing 2.0" in (out / "log.txt").read_text()
    models = list(out.glob("models/**/model.pt"))
    assert models and all(torch.load(m, weights_only=True)["config"]["long_axis_spacing"] == 2.0 for m in models)
    test_case = splits["test"][0][len("target_") :]
    prediction = nib.load(str(out / f"predictions/atso/gen1/all/test/target_{test_case}.nii.gz"))
    image = nib.load(str(target.parent / f"imagesTr/{test_case}.nii.gz"))
    assert prediction.shape == image.shape and (prediction.affine == image.affine).all()
    # the target's labels (reference folds) never reached a training list except the upper bound's
    for datalist in out.glob("models/atso/**/datalist.json"):
        for item in json.loads(datalist.read_text())["training"]:
            assert item["id"].startswith("source_") or "/pseudo_labels/atso/" in item["label"]


def test_demo_runs_end_to_end_and_says_it_is_a_cpu_demo(tmp_path, monkeypatch, capsys):
    from atso_med.cli import demo

    monkeypatch.setattr(demo, "DEMO_PHANTOM", {"cases": 6, "seed": 5, "shape": (32, 32, 16)})
    monkeypatch.setattr(
        demo,
        "DEMO_EXPERIMENT",
        {
            **demo.DEMO_EXPERIMENT,
            "split": {"labeled": 1, "test": 1},
            "planes": ["Z"],
            "devices": ["cpu"],
            # the demo's protocol (snapshot STSO students, continued ATSO, labeled share) at a tiny size
            "training": {
                **TINY_TRAINING,
                "iterations": 4,
                "init_mode": demo.DEMO_EXPERIMENT["training"]["init_mode"],
                "overrides": {"labeled_share": demo.DEMO_EXPERIMENT["training"]["overrides"]["labeled_share"]},
            },
            "inference": {"rounds": 1},
        },
    )
    assert main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "CPU demo, not the paper's setting" in printed
    # it says which protocol it runs and what the benchmark measured, and runs that protocol
    assert "the protocol the benchmark recommends" in printed and "labeled_share 0.5" in printed
    assert "fold_init: continue" in printed and "within the noise" not in printed

    def student(model: str) -> dict:
        return json.loads(
            (tmp_path / "demo" / "experiment" / "models" / model / "plane_Z" / "settings.json").read_text()
        )

    # STSO's snapshot student trains stage J only, from M0's stage-S+I weights
    stso = student("stso/gen1/all")
    assert stso["labeled_share"] == 0.5 and stso["stage_fractions"] == [0.0, 0.0, 1.0]
    assert stso["init_weights"].endswith("models/supervised/gen0/all/plane_Z/snapshot_SI.pt")
    # ATSO's fold models continue their own chains: M0 at G1, their own previous model after
    assert student("atso/gen1/fold0")["init_weights"].endswith("models/supervised/gen0/all/plane_Z/model.pt")
    assert student("atso/gen2/fold0")["init_weights"].endswith("models/atso/gen1/fold0/plane_Z/model.pt")
    assert student("atso/gen2/fold0")["labeled_share"] == 0.5
    assert "| G1 |" in printed and "ATSO @E" in printed and str(tmp_path / "demo" / "experiment" / "reports") in printed
    for path in (
        "data/dataset.json",
        "splits.json",
        "experiment.yaml",
        "experiment/reports/report.md",
        "experiment/reports/progress.png",
    ):
        assert (tmp_path / "demo" / path).is_file(), path
    for strategy in ("supervised", "fully_supervised", "self_learning", "stso", "atso"):
        assert (tmp_path / "demo" / "experiment" / "models" / strategy).is_dir()
    # a second demo in the same folder resumes: nothing left to do, the report is printed again
    assert main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    assert "(resuming)" in capsys.readouterr().out


def test_snapshot_mode_starts_every_scratch_generation_from_m0s_stage_si_weights(phantom, tmp_path):
    """The paper's "scratch model" (Section 4.2): M0 after stages S and I, saliency module re-initialised."""
    from atso_med.networks import SaliencyTransform, load_state_file

    settings = semi_supervised(phantom, tmp_path / "run", strategies=["supervised", "stso", "atso"], generations=2)
    settings["training"] = {**TINY_TRAINING, "iterations": 8, "init_mode": "snapshot"}
    config = write_experiment(tmp_path / "experiment.yaml", **settings)
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    out = tmp_path / "run"
    snapshot_file = out / "models/supervised/gen0/all/plane_Z/snapshot_SI.pt"
    snapshot = load_state_file(snapshot_file)
    expected = state_dict_sha256(snapshot)
    # the snapshot is M0 after 4 of its 8 iterations (S 1/8 + I 3/8), with the saliency module of a fresh start
    assert torch.load(snapshot_file, weights_only=True)["iteration"] == 4
    fresh = SaliencyTransform(3)
    fresh.reset_parameters(0, prefix="saliency.")
    assert all(torch.equal(snapshot[f"saliency.{k}"], v) for k, v in fresh.state_dict().items())
    state = journal(out)["steps"]
    m0 = state["train/supervised/gen0/all/plane_Z"]["result"]
    assert m0["initial_weights_sha256"] != expected and m0["model_sha256"] != expected
    students = [
        "stso/gen1/all",
        "stso/gen2/all",
        "atso/gen1/fold0",
        "atso/gen1/fold1",
        "atso/gen2/fold0",
        "atso/gen2/fold1",
        "atso/gen2/all",
    ]
    for model in students:
        result = state[f"train/{model}/plane_Z"]["result"]
        assert result["initial_weights_sha256"] == expected, model
        assert result["iterations"] == 4, model  # stage J only
        meta = json.loads((out / "models" / model / "plane_Z" / "training.json").read_text())
        assert meta["init"]["kind"] == "snapshot" and meta["init"]["weights"].endswith("snapshot_SI.pt")
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["training"]["init_mode"] == "snapshot"


def test_pseudo_label_confidence_marks_uncertain_voxels_that_the_students_train_without(phantom, tmp_path):
    settings = semi_supervised(phantom, tmp_path / "run", pseudo_label_confidence=0.9)
    config = write_experiment(tmp_path / "experiment.yaml", **settings)
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    out = tmp_path / "run"
    state = journal(out)["steps"]
    for fold in ("fold0", "fold1"):
        step = state[f"pseudo/atso/gen1/{fold}"]["result"]
        assert step["uncertain"]["voxels"] > 0
        for case in json.loads((out / "models/atso/gen1" / fold / "datalist.json").read_text())["training"]:
            if case["source"] == "pseudo":
                mask = Path(case["uncertain"])
                assert mask.parent == Path(case["label"]).parent and mask.name == f"{case['id']}_uncertain.nii.gz"
                assert nib.load(str(mask)).shape == nib.load(case["label"]).shape
            else:
                assert "uncertain" not in case
    report = json.loads((out / "reports" / "report.json").read_text())
    assert report["pseudo_label_confidence"] == 0.9
    # the masks beside the labels are not taken for cases: every student's fit is still measured
    fits = {student["model"]: student["fit"]["cases"] for student in report["lazy_learning"]["students"]}
    assert fits == {"self_learning/gen1/all": 4, "atso/gen1/fold0": 2, "atso/gen1/fold1": 2}, fits
    uncertain = report["lazy_learning"]["uncertain_voxels"]
    assert sorted(uncertain) == ["atso", "self_learning"] and all(sorted(u) == ["1", "2"] for u in uncertain.values())
    assert "Uncertain voxels (pseudo_label_confidence)" in (out / "reports" / "report.md").read_text()


# ---------------------------------------------------------------- on a Ray cluster (a local one here)


def test_run_started_on_ray_resumes_on_one_machine_and_back_to_the_same_models(phantom, uninterrupted, tmp_path):
    """The journal is the single truth: Ray -> this machine -> Ray gives the sequential run's models and report."""
    config = write_experiment(tmp_path / "experiment.yaml", **semi_supervised(phantom, tmp_path / "run"))
    # as many threads per training as the sequential run had: the same floating-point sums
    ray_settings = {"ray": {"cpus_per_training": 2, "num_cpus": 2}}
    ray_config = write_experiment(
        tmp_path / "ray.yaml", **semi_supervised(phantom, tmp_path / "run", distributed=ray_settings)
    )
    out = tmp_path / "run"
    plan = json.loads((uninterrupted / "plan.json").read_text())["steps"]

    on_ray = run_cli("run", "--config", str(ray_config), "--no-progress", "--ray-address", "local", "--stop-after", "4")
    output, _ = on_ray.communicate(timeout=600)
    assert on_ray.returncode == STOP_EXIT_STATUS, output[-3000:]
    assert len(journal(out)["order"]) == 4
    log = (out / "log.txt").read_text()
    assert "trainings: Ray at a local Ray" in log and "on Ray: python -m monai.bundle run" in log
    # each training's own output file (the cluster's nodes do not append to one shared log)
    assert (out / "models/supervised/gen0/all/plane_Z.log").is_file()

    here = run_cli("run", "--config", str(config), "--no-progress", "--resume", "--stop-after", "6")
    output, _ = here.communicate(timeout=600)
    assert here.returncode == STOP_EXIT_STATUS, output[-3000:]
    assert len(journal(out)["order"]) == 10 and "trainings: this process on cpu" in (out / "log.txt").read_text()

    assert main(["run", "--config", str(ray_config), "--no-progress", "--resume"]) == 0
    finished, reference = journal(out), journal(uninterrupted)
    assert set(finished["steps"]) == {s["id"] for s in plan}
    trainings = [s["id"] for s in plan if s["kind"] == "train"]
    assert any(finished["order"].index(t) >= 10 for t in trainings)  # the last run trained too
    for step_id in trainings:
        for key in ("initial_weights_sha256", "model_sha256"):
            assert finished["steps"][step_id]["result"][key] == reference["steps"][step_id]["result"][key], step_id
    assert report_numbers(out) == report_numbers(uninterrupted)


def test_a_training_that_fails_on_ray_is_reported_with_its_log(tmp_path):
    from atso_med.atso.distributed import RayExecutor, RaySettings
    from atso_med.atso.training_runs import TrainingJob

    job = TrainingJob(
        "train/supervised/gen0/all/plane_Z",
        [str(tmp_path / "missing_train.json")],
        {"output_dir": str(tmp_path / "plane_Z")},
        str(tmp_path / "plane_Z.log"),
    )
    executor = RayExecutor(RaySettings(num_cpus=1))
    try:
        executor.submit(job)
        finished = []
        deadline = time.time() + 300
        while not finished and time.time() < deadline:
            finished = executor.wait(timeout=1.0)
    finally:
        executor.close()
    (result,) = finished
    assert (
        result.result is None and "missing_train.json" in result.error and result.log == str(tmp_path / "plane_Z.log")
    )


@pytest.mark.parametrize(
    "section, message",
    [
        ({"ray": {"gpus_per_training": -1}}, "gpus_per_training: expected a number >= 0"),
        ({"ray": {"retries": 1.5}}, "retries: expected a whole number"),
        ({"ray": {"address": "auto", "num_cpus": 4}}, "sizes a local Ray only"),
        ({"ray": {"adress": "auto"}}, "unknown key"),
        ({"slurm": {}}, "expected {ray:"),
    ],
)
def test_bad_distributed_settings_are_refused_before_any_work(phantom, tmp_path, section, message):
    from atso_med.atso.config import ExperimentConfig
    from atso_med.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        ExperimentConfig.from_dict(semi_supervised(phantom, tmp_path / "run", distributed=section))
    assert not (tmp_path / "run").exists()
