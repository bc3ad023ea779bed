"""The experiment plan: ATSO never labels a fold with a model that saw it; the baselines are what the paper says.

These checks read the plan (what every step trains on, initialises from and labels) with their own
logic, independent of :func:`atso_med.atso.generations.check_plan`.
"""

from __future__ import annotations

import copy

import pytest

from atso_med.atso.generations import build_plan, check_plan, model_training_ids
from atso_med.atso.steps import PlanInputs
from atso_med.errors import ConfigError

LABELED = ["L0", "L1"]
TEST = ["E0", "E1"]


def inputs(
    folds: int,
    generations: int = 3,
    strategies=("supervised", "fully_supervised", "self_learning", "stso", "atso"),
    labeled_reference=True,
):
    reference = [[f"R{k}_{i}" for i in range(2)] for k in range(folds)]
    truth = LABELED + TEST + ([i for fold in reference for i in fold] if labeled_reference else [])
    return PlanInputs(
        strategies=list(strategies),
        generations=generations,
        planes=["X", "Y", "Z"],
        labeled=LABELED,
        reference=reference,
        test=TEST,
        with_truth=truth,
    )


def by_kind(steps, kind):
    return [s for s in steps if s.kind == kind]


def trained_on(steps) -> dict[str, set[str]]:
    """Model key -> case ids in its plane trainings, plus everything its fine-tuning ancestors saw."""
    seen: dict[str, set[str]] = {}
    for step in by_kind(steps, "train"):
        ids = set(step.params["train_ids"])
        if step.params["init"]["kind"] == "finetune":
            ids |= seen[step.params["init"]["from"]]
        seen.setdefault(step.params["model"], set()).update(ids)
    return seen


@pytest.mark.parametrize("folds", [2, 3, 4])
def test_no_fold_is_ever_labeled_by_a_model_that_trained_on_it(folds):
    plan = inputs(folds)
    steps = build_plan(plan)
    seen = trained_on(steps)
    atso_labels = [
        s for s in by_kind(steps, "fuse") if s.params["purpose"] == "pseudo" and s.tags["strategy"] == "atso"
    ]
    assert len(atso_labels) == folds * (plan.generations + 1)
    for step in atso_labels:
        fold = set(plan.reference[int(step.tags["set"][4:])])
        assert step.params["teachers"], step.id
        for teacher in step.params["teachers"]:
            assert not fold & seen[teacher], f"{step.id}: {teacher} trained on {sorted(fold & seen[teacher])}"
        # the labels are read from the teachers' own predictions of exactly this fold
        assert all(src.endswith(step.tags["set"]) for src in step.params["sources"])


@pytest.mark.parametrize("folds", [2, 3])
def test_atso_teachers_are_the_other_folds_models_of_the_previous_generation(folds):
    steps = build_plan(inputs(folds))
    for step in by_kind(steps, "fuse"):
        if step.params["purpose"] != "pseudo" or step.tags["strategy"] != "atso":
            continue
        generation, k = step.tags["labels_of"], int(step.tags["set"][4:])
        if generation == 1:
            assert step.params["teachers"] == ["supervised/gen0/all"]  # M0 stands in for every fold model
        else:
            expected = [f"atso/gen{generation - 1}/fold{j}" for j in range(folds) if j != k]
            assert step.params["teachers"] == expected
        assert step.params["output_dir"] == f"pseudo_labels/atso/gen{generation}/fold{k}"


def test_each_fold_model_trains_on_labeled_cases_and_its_own_folds_pseudo_labels_only():
    plan = inputs(2)
    for step in by_kind(build_plan(plan), "train"):
        model = step.params["model"]
        if not model.startswith("atso/"):
            continue
        generation = int(model.split("/")[1][3:])
        group = model.split("/")[2]
        folds = [0, 1] if group == "all" else [int(group[4:])]
        expected = LABELED + [i for k in folds for i in plan.reference[k]]
        assert step.params["train_ids"] == expected
        assert sorted(step.params["pseudo_labels"]) == [f"fold{k}" for k in folds]
        for k in folds:
            assert step.params["pseudo_labels"][f"fold{k}"]["dir"] == f"pseudo_labels/atso/gen{generation}/fold{k}"
        assert step.params["init"] == {"kind": "scratch"} and not step.params["truth_ids"]


def test_self_learning_fine_tunes_the_previous_generation_and_stso_atso_start_from_scratch():
    steps = build_plan(inputs(2, generations=3))
    trains = by_kind(steps, "train")
    for step in trains:
        strategy, generation, plane = step.tags["strategy"], step.tags["generation"], step.params["plane"]
        init = step.params["init"]
        if strategy == "self_learning":
            previous = "supervised/gen0/all" if generation == 1 else f"self_learning/gen{generation - 1}/all"
            assert init == {
                "kind": "finetune",
                "from": previous,
                "weights": f"models/{previous}/plane_{plane}/model.pt",
            }
            assert f"train/{previous}/plane_{plane}" in step.requires
        else:
            assert init == {"kind": "scratch"}, step.id
    # generation 0 is trained once and shared: one M0 per plane, no other gen-0 semi-supervised model
    assert [s.id for s in trains if s.tags["generation"] == 0 and s.tags["strategy"] != "fully_supervised"] == [
        f"train/supervised/gen0/all/plane_{p}" for p in "XYZ"
    ]


def test_self_learning_and_stso_label_the_whole_reference_set_with_the_previous_model():
    steps = build_plan(inputs(2, generations=2))
    for step in by_kind(steps, "fuse"):
        if step.tags["strategy"] in ("self_learning", "stso") and step.params["purpose"] == "pseudo":
            generation = step.tags["labels_of"]
            teacher = "supervised/gen0/all" if generation == 1 else f"{step.tags['strategy']}/gen{generation - 1}/all"
            assert step.params["teachers"] == [teacher]
    for step in by_kind(steps, "train"):
        if step.tags["strategy"] in ("self_learning", "stso"):
            assert set(step.params["train_ids"]) == set(LABELED) | {i for f in inputs(2).reference for i in f}


def test_layout_paths_are_predictable_and_pseudo_label_paths_are_new_every_generation():
    steps = build_plan(inputs(2, generations=3))
    outputs = [s.params["output_dir"] for s in steps if "output_dir" in s.params and s.kind != "evaluate"]
    assert len(outputs) == len(set(outputs))
    for step in by_kind(steps, "train"):
        assert step.params["output_dir"] == f"models/{step.params['model']}/plane_{step.params['plane']}"
    pseudo = sorted(s.params["output_dir"] for s in by_kind(steps, "fuse") if s.params["purpose"] == "pseudo")
    assert "pseudo_labels/stso/gen1/fold0" in pseudo and "pseudo_labels/atso/gen4/fold1" in pseudo
    assert "predictions/atso/gen3/all/test" in outputs and "predictions/atso/gen2/fused/test" in outputs
    assert steps[-1].id == "report" and len(steps[-1].requires) == len(steps) - 1


def test_every_step_comes_after_what_it_reads():
    steps = build_plan(inputs(3, generations=2))
    position = {s.id: i for i, s in enumerate(steps)}
    for step in steps:
        assert all(position[r] < position[step.id] for r in step.requires), step.id


def test_even_votes_have_the_probabilities_that_break_ties():
    for folds in (2, 3):
        steps = build_plan(inputs(folds, generations=2))
        predict = {s.params["output_dir"]: s for s in by_kind(steps, "predict")}
        for fuse in by_kind(steps, "fuse"):
            voters = len(fuse.params["sources"])
            for source in fuse.params["sources"]:
                assert predict[source].params["save_probability"] == (voters % 2 == 0 and voters > 1), fuse.id


def test_fully_supervised_only_when_every_reference_case_has_a_label_and_truth_is_only_evaluated():
    steps = build_plan(inputs(2))
    full = [s for s in by_kind(steps, "train") if s.tags["strategy"] == "fully_supervised"]
    assert len(full) == 3 and all(s.params["truth_ids"] == [i for f in inputs(2).reference for i in f] for s in full)
    assert not [
        s for s in build_plan(inputs(2, labeled_reference=False)) if s.tags.get("strategy") == "fully_supervised"
    ]
    # without reference labels, reference folders are predicted but never evaluated
    unlabeled = build_plan(inputs(2, labeled_reference=False))
    assert not [s for s in by_kind(unlabeled, "evaluate") if "fold" in s.params["target"].split("/")[-1]]
    assert [s for s in by_kind(unlabeled, "evaluate") if s.params["target"].endswith("/test")]


def test_no_training_ever_sees_a_test_case():
    for step in by_kind(build_plan(inputs(3, generations=2)), "train"):
        assert not set(step.params["train_ids"]) & set(TEST)


def test_check_plan_refuses_a_plan_where_a_fold_is_labeled_by_its_own_model():
    plan = inputs(2, generations=2)
    steps = copy.deepcopy(build_plan(plan))
    leaky = next(s for s in steps if s.id == "pseudo/atso/gen2/fold0")
    leaky.params["teachers"] = ["atso/gen1/fold0"]
    with pytest.raises(ConfigError, match="trained on them"):
        check_plan(steps, plan)


def test_check_plan_refuses_fine_tuning_chains_that_inherit_a_fold():
    plan = inputs(2, generations=2)
    steps = copy.deepcopy(build_plan(plan))
    # make ATSO's fold-1 model of generation 1 a fine-tune of self-learning (which saw fold 0)
    for step in steps:
        if step.kind == "train" and step.params["model"] == "atso/gen1/fold1":
            step.params["init"] = {"kind": "finetune", "from": "self_learning/gen1/all", "weights": ""}
    assert "R0_0" in model_training_ids(steps)["atso/gen1/fold1"]
    with pytest.raises(ConfigError, match="trained on them"):
        check_plan(steps, plan)


def test_plan_needs_two_folds_and_a_labeled_case():
    with pytest.raises(ConfigError, match="2 reference folds"):
        build_plan(PlanInputs(["supervised"], 1, ["Z"], LABELED, [["R0"]], TEST, []))
    with pytest.raises(ConfigError, match="labeled"):
        build_plan(PlanInputs(["supervised"], 1, ["Z"], [], [["R0"], ["R1"]], TEST, []))


# --------------------------------------------------------------------------- leave-one-fold-out (beyond the paper)


@pytest.mark.parametrize("folds", [2, 3])
def test_leave_one_fold_out_models_train_on_every_other_fold_and_alone_label_their_own(folds):
    plan = inputs(folds)
    plan.fold_training = "others"
    steps = build_plan(plan)
    seen = trained_on(steps)
    for step in by_kind(steps, "train"):
        group = step.params["model"].split("/")[2]
        if step.tags["strategy"] != "atso" or group == "all":
            continue
        k = int(group[4:])
        others = [j for j in range(folds) if j != k]
        assert step.params["train_ids"] == LABELED + [i for j in others for i in plan.reference[j]]
        assert sorted(step.params["pseudo_labels"]) == [f"fold{j}" for j in others]
    for step in by_kind(steps, "fuse"):
        if step.params["purpose"] != "pseudo" or step.tags["strategy"] != "atso":
            continue
        generation, k = step.tags["labels_of"], int(step.tags["set"][4:])
        expected = ["supervised/gen0/all"] if generation == 1 else [f"atso/gen{generation - 1}/fold{k}"]
        assert step.params["teachers"] == expected
        assert not set(plan.reference[k]) & seen[expected[0]]


def test_with_two_folds_leave_one_fold_out_trains_what_algorithm_1_trains_under_swapped_names():
    standard, variant = inputs(2), inputs(2)
    variant.fold_training = "others"

    def atso_fold_data(steps):
        return sorted(
            tuple(s.params["train_ids"])
            for s in by_kind(steps, "train")
            if s.tags["strategy"] == "atso" and s.tags["model"] != "all"
        )

    assert atso_fold_data(build_plan(standard)) == atso_fold_data(build_plan(variant))


def test_own_minus_other_compares_the_models_that_trained_on_a_fold_with_those_that_did_not():
    from atso_med.atso.lazy_learning import _own_minus_other
    from atso_med.atso.steps import ModelRef

    dsc = {(0, 0): 0.70, (1, 0): 0.80, (2, 0): 0.90, (0, 1): 0.60, (1, 1): 0.50, (2, 1): 0.55}  # (model, fold)
    dsc |= {(0, 2): 0.4, (1, 2): 0.4, (2, 2): 0.4}
    evaluations = {
        ModelRef("atso", 1, f"fold{j}").predictions(f"fold{k}"): {"mean_dsc": value} for (j, k), value in dsc.items()
    }
    own = [
        {"strategy": "atso", "generation": 1, "group": f"fold{j}", "pseudo_labels": {f"fold{j}": ""}} for j in range(3)
    ]
    result = _own_minus_other(evaluations, own, 3)["1"]["folds"]
    assert result["fold0"]["own"] == pytest.approx(0.70) and result["fold0"]["other"] == pytest.approx(0.85)
    others = [
        {
            "strategy": "atso",
            "generation": 1,
            "group": f"fold{j}",
            "pseudo_labels": {f"fold{i}": "" for i in range(3) if i != j},
        }
        for j in range(3)
    ]
    result = _own_minus_other(evaluations, others, 3)["1"]["folds"]
    assert result["fold0"]["own"] == pytest.approx(0.85) and result["fold0"]["other"] == pytest.approx(0.70)
    assert result["fold1"]["difference"] == pytest.approx((0.60 + 0.55) / 2 - 0.50)


# --------------------------------------------------------------------------- continued fold models (beyond the paper)


@pytest.mark.parametrize("folds, fold_training", [(2, "own"), (3, "own"), (3, "others")])
def test_continued_atso_models_fine_tune_their_own_chain_and_never_label_what_they_saw(folds, fold_training):
    plan = inputs(folds)
    plan.fold_training, plan.fold_init = fold_training, "continue"
    steps = build_plan(plan)
    seen = trained_on(steps)
    for step in by_kind(steps, "train"):
        if step.tags["strategy"] != "atso":
            continue
        t, group = step.tags["generation"], step.tags["model"]
        expected = "supervised/gen0/all" if t == 1 else f"atso/gen{t - 1}/{group}"
        assert step.params["init"]["kind"] == "finetune"
        assert step.params["init"]["from"] == expected
        assert step.params["init"]["weights"] == f"models/{expected}/plane_{step.params['plane']}/model.pt"
    labels = [s for s in by_kind(steps, "fuse") if s.params["purpose"] == "pseudo" and s.tags["strategy"] == "atso"]
    assert labels
    for step in labels:
        fold = set(plan.reference[int(step.tags["set"][4:])])
        for teacher in step.params["teachers"]:
            assert not fold & seen[teacher], (step.id, teacher)
    # The model of all labels is trained at every generation on that generation's labels, as self-learning's
    # student is; Algorithm 1 trains it once, at T. Every other training and STSO's initialisation are unchanged.
    all_labels = {s.params["model"]: s for s in by_kind(steps, "train") if s.params["model"].endswith("/all")}
    for t in (1, 2, 3):
        chain = all_labels[f"atso/gen{t}/all"]
        assert sorted(chain.params["pseudo_labels"]) == [f"fold{k}" for k in range(folds)]
        assert [s.tags["labels_of"] for s in by_kind(steps, "fuse") if s.id in chain.requires] == [t] * folds
    assert all(s.params["init"]["kind"] == "scratch" for s in by_kind(steps, "train") if s.tags["strategy"] == "stso")
    algorithm_1 = inputs(folds)
    algorithm_1.fold_training = fold_training
    extra = {f"train/atso/gen{t}/all/plane_{p}" for t in (1, 2) for p in "XYZ"}
    assert [s.params["train_ids"] for s in by_kind(steps, "train") if s.id not in extra] == [
        s.params["train_ids"] for s in by_kind(build_plan(algorithm_1), "train")
    ]
    assert {s.id for s in by_kind(steps, "predict")} == {s.id for s in by_kind(build_plan(algorithm_1), "predict")}
