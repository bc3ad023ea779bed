"""Experiment YAML: the documented example loads; mistakes are refused before any work, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from atso_med.atso.config import ExperimentConfig
from atso_med.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "experiment.yaml"


def minimal(**extra) -> dict:
    return {"output_dir": "out", "dataset": "data/dataset.json", **extra}


def test_documented_example_loads_with_the_papers_setting(tmp_path):
    # The paper's recipe needs the user's own FCN-8s weights file, at the path the example names.
    example = tmp_path / "examples" / "experiment.yaml"
    example.parent.mkdir()
    example.write_text(EXAMPLE.read_text())
    weights = tmp_path / yaml.safe_load(EXAMPLE.read_text())["training"]["init_weights"].replace("../", "")
    weights.parent.mkdir()
    weights.write_bytes(b"")
    config = ExperimentConfig.load(example)
    assert config.strategies == ["supervised", "fully_supervised", "self_learning", "stso", "atso"]
    assert config.generations == 5 and config.folds == 2 and config.planes == ["X", "Y", "Z"]
    training = config.training
    assert (training.recipe, training.preset, training.iterations, training.optimizer) == (
        "paper",
        "full",
        80000,
        "sgd",
    )
    assert (training.lr_coarse, training.lr_fine, training.momentum) == (1e-5, 1e-4, 0.99)
    assert config.inference.rounds == 10 and config.inference.fusion == "majority"
    # relative paths are resolved against the file's folder
    assert config.dataset == (example.parent / "../data/nih/dataset.json").resolve()
    assert config.training.init_weights == weights.resolve()
    # without the weights file the paper's recipe is refused, naming the way out
    weights.unlink()
    with pytest.raises(ConfigError, match="file not found"):
        ExperimentConfig.load(example)
    settings = yaml.safe_load(example.read_text())
    settings["training"]["init_weights"] = None
    with pytest.raises(ConfigError, match=r"training.recipe: the 'paper' recipe"):
        ExperimentConfig.from_dict(settings, base=example.parent)
    # every key of the example is documented by a comment in the file itself
    text = EXAMPLE.read_text()
    for key in ExperimentConfig.from_dict(minimal(), base=EXAMPLE.parent).resolved():
        if key not in ("transfer", "long_axis_spacing"):
            assert f"\n{key}:" in text, key
    assert "# transfer:" in text and "# long_axis_spacing:" in text


def test_resolved_config_round_trips(tmp_path):
    config = ExperimentConfig.from_dict(minimal(seed=3, training={"preset": "tiny", "lr_fine": "1e-3"}), base=tmp_path)
    assert config.training.init_seed == 3 and config.training.seed == 3  # defaults follow the seed
    assert config.training.lr_fine == 1e-3  # YAML 1.1 reads 1e-3 as text: accepted as a number
    file = tmp_path / "config.yaml"
    file.write_text(config.to_yaml())
    again = ExperimentConfig.load(file)
    assert again.resolved() == config.resolved()
    assert Path(yaml.safe_load(file.read_text())["output_dir"]).is_absolute()


@pytest.mark.parametrize(
    "settings, message",
    [
        (minimal(generatons=3), "unknown key.*generatons"),
        (minimal(strategies=["atso", "mean_teacher"]), "unknown strategy 'mean_teacher'"),
        (minimal(generations=0), "generations.*at least one generation"),
        (minimal(folds=1), "folds.*>= 2"),
        (minimal(planes=["Z", "W"]), "unknown plane 'W'"),
        (minimal(planes=["Z", "z"]), "listed twice"),
        (minimal(devices=["tpu"]), "device"),
        (minimal(devices=["auto", "cpu"]), "'auto' cannot be combined"),
        (minimal(training={"optimizer": "rmsprop"}), "training.optimizer"),
        (minimal(training={"preset": "huge"}), "training.preset: unknown preset"),
        (minimal(training={"recipe": "fancy"}), "training.recipe: unknown training recipe"),
        (minimal(training={"iterations": 0}), "training.iterations.*>= 1"),
        (minimal(training={"stage_fractions": [0.5, 0.6, 0.1]}), "stage_fractions"),
        (minimal(training={"overrides": {"plane": "X"}}), "set by the ATSO trainer"),
        (minimal(training={"resume": "later"}), "training.resume"),
        (minimal(training={"init_weights": "missing.pt"}), "file not found"),
        (minimal(inference={"rounds": -1}), "inference: .*rounds must be >= 0"),
        (minimal(inference={"fusion": "max"}), "inference: .*fusion"),
        (minimal(inference={"keep_round_masks": True}), "inference: unknown key.*'keep_round_masks'"),
        (minimal(inference=[10]), "inference: expected a mapping"),
        (minimal(report={"metric": "median"}), "report.metric"),
        (minimal(split={"labeled": 1.5}), "fraction"),
        (minimal(long_axis_spacing=0), "long_axis_spacing.*> 0"),
        (minimal(fold_training="all"), "fold_training: expected one of own, others"),
        (minimal(fold_init="warm"), "fold_init: expected one of scratch, continue"),
        ({"dataset": "d.json"}, "output_dir is required"),
        ({"output_dir": "o"}, "exactly one of 'dataset'"),
        (minimal(transfer={"source": "a", "target": "b"}), "exactly one of 'dataset'"),
        ({"output_dir": "o", "transfer": {"source": "a"}}, "missing key"),
        ({"output_dir": "o", "transfer": {"source": "a", "target": "b"}, "splits": "s.json"}, "cannot be combined"),
        (minimal(training={"hu_window": [240, -100]}), r"training.hu_window: the lower bound must be below"),
        (minimal(training={"hu_window": [-100]}), r"training.hu_window: expected two numbers"),
        (minimal(training={"hu_window": [-100, ".inf"]}), r"training.hu_window: expected a finite number"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_dict(settings, base=tmp_path)


def test_hu_window_defaults_to_the_package_window_and_reaches_the_training_bundle(tmp_path):
    from atso_med.atso.layout import ExperimentLayout
    from atso_med.atso.steps import Step
    from atso_med.atso.training_steps import training_settings
    from atso_med.transforms.intensity import HU_WINDOW

    params = {"datalist": "d.json", "output_dir": "m", "plane": "Z", "init": {"kind": "scratch"}, "train_ids": ["a"]}
    step = Step("train/x", "train", params=params)
    config = ExperimentConfig.from_dict(minimal(training={"preset": "tiny"}), base=tmp_path)
    assert config.training.hu_window == list(HU_WINDOW)
    assert training_settings(config, ExperimentLayout(tmp_path), step)["hu_window"] == list(HU_WINDOW)
    config = ExperimentConfig.from_dict(minimal(training={"preset": "tiny", "hu_window": [-160, 240]}), base=tmp_path)
    assert config.resolved()["training"]["hu_window"] == [-160.0, 240.0]
    assert training_settings(config, ExperimentLayout(tmp_path), step)["hu_window"] == [-160.0, 240.0]


def test_cuda_devices_are_refused_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():  # this machine class has none; keep the check honest elsewhere
        assert ExperimentConfig.from_dict(minimal(devices=["cuda:0"]), base=tmp_path).devices == ["cuda:0"]
    else:
        with pytest.raises(ConfigError, match="this machine has no CUDA device"):
            ExperimentConfig.from_dict(minimal(devices=["cuda:0", "cuda:1"]), base=tmp_path)


def test_supervised_is_always_planned_and_strategies_keep_report_order(tmp_path):
    config = ExperimentConfig.from_dict(minimal(strategies=["atso", "stso"], planes="ZX"), base=tmp_path)
    assert config.strategies == ["supervised", "stso", "atso"]
    assert config.planes == ["X", "Z"]


def test_transfer_defaults_to_the_global_dsc(tmp_path):
    config = ExperimentConfig.from_dict(
        {"output_dir": "o", "transfer": {"source": "s.json", "target": "t.json"}}, base=tmp_path
    )
    assert config.report.metric == "global" and config.transfer.target_test == 0.25
    assert ExperimentConfig.from_dict(minimal(), base=tmp_path).report.metric == "mean"


def test_yaml_errors_are_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: [unclosed\n")
    with pytest.raises(ConfigError, match="not a readable YAML"):
        ExperimentConfig.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        ExperimentConfig.load(tmp_path / "missing.yaml")


def test_a_budget_per_case_gives_each_training_iterations_in_proportion_to_its_cases(tmp_path):
    """The appendix's epochs per generation: a student of many pseudo-labelled cases trains longer than M0."""
    from atso_med.atso.generations import build_plan
    from atso_med.atso.layout import ExperimentLayout
    from atso_med.atso.steps import PlanInputs
    from atso_med.atso.training_steps import training_settings

    reference = [[f"R{k}_{i}" for i in range(3)] for k in range(2)]
    plan = build_plan(
        PlanInputs(
            strategies=["supervised", "self_learning", "stso", "atso"],
            generations=1,
            planes=["Z"],
            labeled=["L0", "L1"],
            reference=reference,
            test=["E0"],
            with_truth=[],
            init_mode="snapshot",
        )
    )
    config = ExperimentConfig.from_dict(
        minimal(training={"preset": "tiny", "iterations_per_case": 50, "init_mode": "snapshot"}), base=tmp_path
    )
    layout = ExperimentLayout(tmp_path)
    got = {s.params["model"]: training_settings(config, layout, s) for s in plan if s.kind == "train"}
    j_share = config.training.stage_fractions[2]
    assert got["supervised/gen0/all"]["iterations"] == 100  # M0: 2 labeled cases
    assert got["self_learning/gen1/all"]["iterations"] == 400  # fine-tunes M0 on 2 + 6 cases, every stage
    assert got["stso/gen1/all"]["iterations"] == round(400 * j_share)  # from the snapshot: stage J only
    assert got["atso/gen1/fold0"]["iterations"] == round(250 * j_share)  # 2 labeled + one fold of 3
    assert got["supervised/gen0/all"]["val_interval"] == 10
    fixed = ExperimentConfig.from_dict(minimal(training={"preset": "tiny", "iterations": 120}), base=tmp_path)
    for step in (s for s in plan if s.kind == "train"):
        expected = round(120 * j_share) if step.params["init"]["kind"] == "snapshot" else 120
        assert training_settings(fixed, layout, step)["iterations"] == expected, step.id
    with pytest.raises(ConfigError, match="either as 'iterations' or as 'iterations_per_case'"):
        ExperimentConfig.from_dict(minimal(training={"iterations": 100, "iterations_per_case": 5}), base=tmp_path)
    with pytest.raises(ConfigError, match=r"training\.iterations_per_case"):
        ExperimentConfig.from_dict(minimal(training={"iterations_per_case": 0}), base=tmp_path)
