"""The RSTN training bundle, run the way users run it: MONAI's bundle runner, ConfigWorkflow, torchrun.

Everything is CPU-sized (tiny preset, 64x64 phantom slices) but goes through the real workflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_files import META, MULTI_GPU_TRAIN, TRAIN, bundle_argv
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from atso_med.data import Dataset, write_datalist
from atso_med.engines.bundle_runner import bundle_command, config_files, run_workflow, user_errors
from atso_med.errors import AtsoMedError, ConfigError

# CPU-sized settings for the workflow's mechanics (resume, validation, export, DDP): the tiny
# FCN-8s, Adam, no augmentation. That models learn is tests/test_learning.py's concern.
FAST = {
    "preset": "tiny",
    "num_workers": 0,
    "batch_size": 4,
    "optimizer_name": "adam",
    "lr_coarse": 0.001,
    "lr_fine": 0.001,
    "weight_decay": 0.0,
    "augment": False,
}


@pytest.fixture(scope="module")
def phantom_items(phantom_dataset) -> list[dict]:
    dataset = Dataset.load(phantom_dataset(cases=3, seed=3, shape=(64, 64, 32)))
    return [{"id": case.id, "image": str(case.image), "label": str(case.label)} for case in dataset.cases]


@pytest.fixture(scope="module")
def phantom_datalist(phantom_items, tmp_path_factory) -> Path:
    """Two labeled phantom cases to train on, one to validate on."""
    return write_datalist(tmp_path_factory.mktemp("lists") / "datalist.json", phantom_items[:2], phantom_items[2:])


def _workflow(datalist: Path, output_dir: Path, **overrides) -> ConfigWorkflow:
    settings = {**FAST, "datalist": str(datalist), "output_dir": str(output_dir), **overrides}
    return ConfigWorkflow(config_file=TRAIN, meta_file=META, logging_file=False, workflow_type="train", **settings)


def test_train_workflow_has_every_required_property(phantom_datalist, tmp_path):
    workflow = _workflow(phantom_datalist, tmp_path / "run", iterations=2)
    workflow.initialize()
    assert workflow.check_properties() == []


@pytest.mark.parametrize("preset", ["tiny", "unet_tiny"])
def test_verify_net_in_out_passes_for_the_network_definition(preset):
    command = bundle_argv("verify_net_in_out", TRAIN, "network_def", preset=preset)
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "verified with no error" in result.stdout + result.stderr


def test_resume_continues_the_iteration_count_and_schedule(phantom_datalist, tmp_path):
    out = tmp_path / "run"

    class Crash(RuntimeError):
        pass

    first = _workflow(phantom_datalist, out, iterations=12, save_interval=4, val_interval=100)
    first.initialize()

    @first.trainer.on(Events.ITERATION_COMPLETED(once=9))
    def crash(engine):
        raise Crash("simulated kill")

    with pytest.raises(RuntimeError) as failure:  # MONAI wraps errors raised while evaluating `run`
        first.run()
    assert isinstance(failure.value.__cause__, Crash)
    assert {p.name for p in out.glob("checkpoint_iteration=*.pt")} == {
        "checkpoint_iteration=4.pt",
        "checkpoint_iteration=8.pt",
    }

    # a fresh run into the same folder without resume is refused: it would mix two runs' files
    with pytest.raises(ConfigError, match="already holds checkpoints"), user_errors():
        _workflow(phantom_datalist, out, iterations=12, save_interval=4).initialize()

    second = _workflow(phantom_datalist, out, iterations=12, save_interval=4, val_interval=100, resume=True)
    second.initialize()
    seen = []
    second.trainer.add_event_handler(
        Events.ITERATION_STARTED, lambda engine: seen.append((engine.state.iteration, engine.state.rstn_mode))
    )
    second.run()
    assert [iteration for iteration, _ in seen] == [9, 10, 11, 12]
    # iterations 9..12 of 12 lie in stage J (fractions 1/8, 3/8, 1/2: J starts at iteration 6)
    assert {mode for _, mode in seen} == {"J"}
    assert torch.load(out / "model.pt", weights_only=True)["iteration"] == 12


def test_same_seed_gives_the_same_model_whatever_the_worker_count(phantom_datalist, tmp_path):
    states = []
    for workers in (0, 2):
        out = tmp_path / f"workers{workers}"
        run_workflow(
            config_files("train"),
            {
                **FAST,
                "datalist": str(phantom_datalist),
                "output_dir": str(out),
                "iterations": 3,
                "num_workers": workers,
                "val_interval": 100,
            },
        )
        states.append(torch.load(out / "model.pt", weights_only=True)["network"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_resume_from_a_checkpoint_of_another_width_is_refused(phantom_datalist, tmp_path):
    out = tmp_path / "run"
    run_workflow(
        config_files("train"),
        {
            **FAST,
            "datalist": str(phantom_datalist),
            "output_dir": str(out),
            "iterations": 2,
            "save_interval": 2,
            "val_interval": 100,
        },
    )
    with pytest.raises(ConfigError, match="another width"):
        run_workflow(
            config_files("train"),
            {
                **FAST,
                "preset": "small",
                "datalist": str(phantom_datalist),
                "output_dir": str(out),
                "iterations": 4,
                "resume": True,
                "overwrite": True,  # the first run finished: resuming it is refused without overwrite
            },
        )


def test_amp_flag_given_as_text_false_is_read_as_false(phantom_datalist, tmp_path):
    workflow = _workflow(phantom_datalist, tmp_path / "run", iterations=1, amp="false")
    workflow.initialize()
    assert workflow.trainer.amp is False


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"plane": "W"}, "plane"),
        ({"datalist": "/nonexistent/datalist.json"}, "does not exist"),
        ({"datalist": ""}, "no data list"),
        ({"preset": "huge"}, "preset"),
    ],
)
def test_bad_configuration_fails_before_any_work(phantom_datalist, tmp_path, overrides, message):
    settings = {"iterations": 2, **overrides}
    with pytest.raises(AtsoMedError, match=message):
        run_workflow(
            config_files("train"),
            {**FAST, "datalist": str(phantom_datalist), "output_dir": str(tmp_path / "run"), **settings},
        )
    assert not (tmp_path / "run").exists()


def test_checkpoint_of_another_width_is_refused_with_the_difference(phantom_datalist, tmp_path):
    weights = tmp_path / "tiny.pt"
    from atso_med.networks import build_rstn

    torch.save(build_rstn("tiny").state_dict(), weights)
    workflow = _workflow(phantom_datalist, tmp_path / "run", iterations=1, preset="small", init_weights=str(weights))
    with pytest.raises(ConfigError, match="shape"), user_errors():
        workflow.initialize()


def test_run_workflow_logs_the_equivalent_bundle_command(phantom_datalist, tmp_path, caplog):
    caplog.set_level("INFO")
    run_workflow(
        config_files("train"),
        {**FAST, "datalist": str(phantom_datalist), "output_dir": str(tmp_path / "run"), "iterations": 2},
    )
    command = bundle_command(config_files("train"), {"plane": "Z", "iterations": 2})
    assert command.startswith("python -m monai.bundle run --config_file ")
    assert "--plane Z --iterations 2" in command
    assert any("equivalent command: python -m monai.bundle run" in record.getMessage() for record in caplog.records)


def _torchrun(datalist: Path, out: Path, *extra: str) -> list[str]:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    # bundle_argv starts with the Python executable; torchrun starts the processes instead.
    bundle = bundle_argv("run", [TRAIN, MULTI_GPU_TRAIN], datalist=datalist, output_dir=out, **FAST)[1:]
    return [*torchrun, *bundle, *extra]


def _children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux ``/proc``; no psutil needed)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_multi_gpu_training_killed_under_torchrun_resumes_to_the_end(phantom_datalist, tmp_path):
    """Two gloo processes on the CPU; the whole torchrun group is killed after a checkpoint, then resumed.

    A resume used to compare the DDP wrapper's ``module.`` keys with the unwrapped checkpoint and refuse it.
    """
    import signal
    import time

    out = tmp_path / "ddp"
    settings = ["--iterations", "40", "--val_interval", "40", "--save_interval", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed_run.log"
    with log.open("w") as stderr:  # a file, not a pipe: nobody drains a pipe while we wait
        run = subprocess.Popen(
            _torchrun(phantom_datalist, out, *settings),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 400
        # The second checkpoint has begun, so the first is whole; the kill may leave the second half-written.
        while not (out / "checkpoint_iteration=8.pt").exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # torchrun starts each rank in a session of its own: kill the ranks' groups, then torchrun's,
        # as a node failure would. Killing torchrun alone leaves orphan ranks training on.
        for rank in _children(run.pid):
            os.killpg(rank, signal.SIGKILL)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert (out / "checkpoint_iteration=4.pt").exists() and not (out / "model.pt").exists(), log.read_text()[-3000:]
    saved = torch.load(out / "checkpoint_iteration=4.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in saved["network"])  # DDP wrapper not leaked into checkpoints

    result = subprocess.run(
        _torchrun(phantom_datalist, out, *settings, "--resume", "true"),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Restored all variables from" in result.stdout + result.stderr
    assert torch.load(out / "model.pt", weights_only=True)["iteration"] == 40


@pytest.mark.parametrize("long_axis_spacing", [None, 1.25])
def test_long_axis_spacing_key_resamples_image_and_label_before_slicing(phantom_items, long_axis_spacing):
    from monai.bundle import ConfigParser

    from atso_med.transforms import long_axis_slices

    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser["long_axis_spacing"] = long_axis_spacing
    preprocessing = parser.get_parsed_content("preprocessing")
    item = phantom_items[0]
    data = preprocessing({"image": item["image"], "label": item["label"]})
    original = data["image_meta"].get("long_axis_spacing", {}).get("original_slices", data["image"].shape[-1])
    spacing = float(np.linalg.norm(np.asarray(data["image_meta"]["canonical_affine"])[:3, 2]))
    if long_axis_spacing is None:
        assert "long_axis_spacing" not in data["image_meta"]
    else:
        record = data["image_meta"]["long_axis_spacing"]
        assert data["image"].shape[-1] == long_axis_slices(original, record["original_spacing_mm"], 1.25) != original
        assert spacing == pytest.approx(record["spacing_mm"]) and abs(spacing - 1.25) < 0.1
    assert data["label"].shape == data["image"].shape
    assert set(np.unique(np.asarray(data["label"]))) <= {0, 1}  # labels by nearest neighbour, never blended


def test_initialize_workflow_keeps_monai_logging_notice_out_of_the_callers_output(phantom_datalist, tmp_path):
    import logging

    from atso_med.engines.bundle_runner import initialize_workflow

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    monai_logger = logging.getLogger("monai.bundle.workflows")
    monai_logger.addHandler(handler)
    try:
        _workflow(phantom_datalist, tmp_path / "direct", iterations=1)  # MONAI's own: the notice shows
        assert any(m.startswith("Logging file is set to False") for m in seen)
        seen.clear()
        settings = {**FAST, "datalist": str(phantom_datalist), "output_dir": str(tmp_path / "run"), "iterations": 1}
        workflow = initialize_workflow(config_files("train"), settings)
    finally:
        monai_logger.removeHandler(handler)
    assert not any(m.startswith("Logging file is set to False") for m in seen)
    assert workflow.parser.get_parsed_content("iterations") == 1
