"""Training recipes: named settings, the learning-rate policies, and the refusal of FCN-8s from random weights."""

from __future__ import annotations

import itertools
import subprocess

import pytest
import torch
from bundle_files import TRAIN, bundle_argv

from atso_med.engines import RECIPES, StageSchedule, build_optimizer, check_initialization, resolve_recipe
from atso_med.errors import ConfigError
from atso_med.losses import RSTNLoss
from atso_med.networks import build_rstn, initialize_rstn


def test_the_paper_recipe_is_the_published_setting():
    paper = resolve_recipe("paper")
    assert (paper.preset, paper.iterations, paper.batch_size, paper.optimizer) == ("full", 80000, 1, "sgd")
    assert (paper.lr_coarse, paper.lr_fine, paper.momentum, paper.weight_decay) == (1e-5, 1e-4, 0.99, 5e-4)
    assert (paper.lr_policy, paper.j_halvings, paper.bce_weight, paper.augment) == ("stages", 3, 0.0, False)
    assert paper.backbone == "fcn8s"


def test_the_default_recipe_trains_a_unet_from_scratch():
    scratch = resolve_recipe()
    assert scratch.name == "scratch" and scratch.backbone == "unet"
    assert (scratch.optimizer, scratch.lr_policy, scratch.augment) == ("adamw", "poly", True)
    assert scratch.bce_weight > 0


def test_replacements_keep_the_rest_of_the_recipe_and_none_means_the_recipe_value():
    recipe = resolve_recipe("scratch", preset="unet_tiny", iterations=10, lr_fine=None)
    assert (recipe.preset, recipe.iterations, recipe.lr_fine) == ("unet_tiny", 10, RECIPES["scratch"]["lr_fine"])
    assert recipe.to_dict()["stage_fractions"] == [0.125, 0.375, 0.5]


@pytest.mark.parametrize(
    "recipe, values, match",
    [
        ("fancy", {}, "unknown training recipe"),
        ("scratch", {"lr": 0.1}, "unknown recipe value"),
        ("scratch", {"preset": "huge"}, "unknown preset"),
        ("scratch", {"optimizer": "lbfgs"}, "unknown optimizer"),
        ("scratch", {"iterations": 0}, "iterations"),
        ("scratch", {"iterations": 2.5}, "whole number"),
        ("scratch", {"lr_fine": -1}, "lr_fine"),
        ("scratch", {"warmup_fraction": 0.9}, "warmup_fraction"),
        ("scratch", {"augment": "maybe"}, "true/false"),
        ("scratch", {"nesterov": True}, "nesterov"),
    ],
)
def test_bad_recipe_values_are_refused_by_name(recipe, values, match):
    with pytest.raises(ConfigError, match=match):
        resolve_recipe(recipe, **values)


def test_the_paper_recipe_from_random_weights_is_refused_with_the_way_out():
    paper = resolve_recipe("paper")
    with pytest.raises(ConfigError) as error:
        check_initialization(paper, None)
    message = str(error.value)
    assert (
        "init_weights" in message and "VGG16" in message and "'scratch'" in message and "allow_random_init" in message
    )
    check_initialization(paper, "/some/fcn8s.pt")
    check_initialization(paper, None, allow_random_init="true")
    check_initialization(resolve_recipe("scratch"), None)


def test_the_bundle_refuses_the_paper_recipe_without_weights_before_reading_any_data(tmp_path):
    """`python -m monai.bundle run` with recipe paper: the message, no traceback, before the data list is read."""
    command = bundle_argv("run", TRAIN, recipe="paper", datalist=tmp_path / "missing.json", output_dir=tmp_path / "run")
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "the 'paper' recipe trains FCN-8s halves" in result.stderr
    assert "missing.json" not in result.stderr.split("the 'paper' recipe")[-1].split("\n")[0]


def test_atso_med_train_refuses_the_paper_recipe_without_weights(tmp_path, capsys):
    from atso_med.cli.main import main
    from atso_med.data import PhantomConfig, write_phantom_dataset
    from atso_med.data.dataset import Dataset
    from atso_med.data.split_protocols import make_splits

    data = write_phantom_dataset(tmp_path / "data", PhantomConfig(cases=5, seed=1, shape=(40, 40, 20)))
    make_splits(Dataset.load(data), labeled=1, folds=2, seed=0, test=1).write(tmp_path / "splits.json")
    code = main(
        [
            "train",
            str(data),
            "--splits",
            str(tmp_path / "splits.json"),
            "--out",
            str(tmp_path / "run"),
            "--recipe",
            "paper",
        ]
    )
    assert code == 2
    assert "the 'paper' recipe trains FCN-8s halves" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_poly_policy_warms_up_then_decays_to_zero_and_stages_halve_in_j():
    poly = StageSchedule(100, lr_policy="poly", warmup_fraction=0.1)
    factors = [poly.lr_factor_at(i) for i in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:])) and factors[-1] < 0.05
    assert poly.mode_at(0) == "S" and poly.mode_at(99) == "J"
    stages = StageSchedule(80, j_halvings=3)
    assert [stages.lr_factor_at(i) for i in (0, 39, 40, 50, 60, 79)] == [1.0, 1.0, 1.0, 0.5, 0.25, 0.125]
    with pytest.raises(ConfigError, match="lr_policy"):
        StageSchedule(10, lr_policy="cosine")


@pytest.mark.parametrize(
    "name, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_build_optimizer_keeps_rstns_parameter_groups(name, kind):
    network = initialize_rstn(build_rstn("unet_tiny"), seed=0)
    recipe = resolve_recipe("scratch", optimizer=name, lr_coarse=1e-3, lr_fine=2e-3, weight_decay=0.01)
    optimizer = build_optimizer(network, recipe)
    assert isinstance(optimizer, kind)
    rates = {g["name"]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups}
    assert rates["coarse_weight"] == (1e-3, 0.01) and rates["fine_weight"] == (2e-3, 0.01)
    assert rates["coarse_bias"][1] == 0.0


def test_cross_entropy_is_added_to_each_dice_term_and_works_under_autocast():
    label = torch.zeros(2, 3, 8, 8)
    label[:, :, 2:5, 2:5] = 1
    prediction = torch.full((2, 6, 8, 8), 0.5)
    dice_only = RSTNLoss()(prediction, label)
    with_bce = RSTNLoss(bce_weight=1.0)(prediction, label)
    assert float(with_bce - dice_only) == pytest.approx(float(torch.log(torch.tensor(2.0))), rel=1e-5)
    perfect = torch.cat([label, label], dim=1)
    assert float(RSTNLoss(bce_weight=1.0)(perfect, label)) < 1e-4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(RSTNLoss(bce_weight=1.0)(prediction.requires_grad_(), label))
