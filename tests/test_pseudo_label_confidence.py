"""``pseudo_label_confidence``: the voxels a pseudo label's teachers are unsure of, marked and left out of the loss.

From the teachers' probabilities to the mask beside the label (:func:`uncertain_voxels_file`), from
the mask to the data list, the loaded case, the sample's ``weight`` and :class:`RSTNLoss`; the plan
keeps the probabilities it needs; a tiny experiment writes and trains on the masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from atso_med.atso.config import ExperimentConfig
from atso_med.atso.generations import build_plan
from atso_med.atso.steps import PlanInputs
from atso_med.data import SliceStackDataset
from atso_med.data.slices import slice_stack
from atso_med.data.writers import prediction_file
from atso_med.engines.rstn_trainer import prepare_rstn_batch
from atso_med.errors import ConfigError, GridMismatchError
from atso_med.inferers.fusion import uncertain_voxels_file
from atso_med.inferers.votes import label_confidence
from atso_med.losses import RSTNLoss
from atso_med.transforms import CTPreprocessingd

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def test_label_confidence_is_the_probability_of_the_named_class():
    binary = label_confidence(np.array([[1, 0, 1, 0]]), np.array([[[0.95, 0.05, 0.6, 0.3]]], np.float32))
    np.testing.assert_allclose(binary, [[0.95, 0.95, 0.6, 0.7]], rtol=1e-6)
    probability = np.array([[[0.7, 0.1, 0.2, 0.45, 0.6]], [[0.2, 0.8, 0.3, 0.45, 0.5]]], np.float32)  # 2 classes
    classes = label_confidence(np.array([[1, 2, 0, 0, 0]]), probability)
    # Background: 1 - the sum, not 1 - the highest (0.7, 0.55 and 0.4 would call the last two sure).
    np.testing.assert_allclose(classes, [[0.7, 0.8, 0.5, 0.1, 0.0]], rtol=1e-6, atol=1e-6)
    with pytest.raises(GridMismatchError):
        label_confidence(np.zeros((2, 3)), probability)


def write_teacher(folder: Path, case_id: str, probability: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image((probability >= 0.5).astype(np.uint8), AFFINE), prediction_file(folder, case_id))
    nib.save(nib.Nifti1Image(probability.astype(np.float32), AFFINE), prediction_file(folder, case_id, "probability"))


def test_uncertain_voxels_are_those_the_teachers_mean_probability_doubts(tmp_path):
    rng = np.random.default_rng(0)
    first, second = rng.random((6, 5, 4)), rng.random((6, 5, 4))
    write_teacher(tmp_path / "a", "c1", first)
    write_teacher(tmp_path / "b", "c1", second)
    label = ((first + second) / 2 >= 0.5).astype(np.uint8)
    label_file = tmp_path / "labels" / "c1.nii.gz"
    label_file.parent.mkdir()
    nib.save(nib.Nifti1Image(label, AFFINE), label_file)
    target = tmp_path / "labels" / "c1_uncertain.nii.gz"
    counts = uncertain_voxels_file([tmp_path / "a", tmp_path / "b"], label_file, "c1", target, 0.8)
    mean = (first + second) / 2
    expected = (mean > 0.2) & (mean < 0.8)
    written = nib.load(str(target))
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected.astype(np.uint8))
    np.testing.assert_array_equal(written.affine, AFFINE)
    assert counts == {
        "voxels": label.size,
        "uncertain": int(expected.sum()),
        "organ": int(label.sum()),
        "uncertain_organ": int((expected & (label == 1)).sum()),
    }
    (tmp_path / "b" / "c1_probability.nii.gz").unlink()
    with pytest.raises(ConfigError, match=r"c1_probability\.nii\.gz is missing"):
        uncertain_voxels_file([tmp_path / "a", tmp_path / "b"], label_file, "c1", target, 0.8)
    with pytest.raises(ConfigError, match=r"\(0.5, 1\)"):
        uncertain_voxels_file([tmp_path / "a"], label_file, "c1", target, 0.5)


def test_the_loss_leaves_weight_zero_voxels_out():
    torch.manual_seed(0)
    label = (torch.rand(2, 3, 8, 8) > 0.5).float()
    weight = torch.ones_like(label)
    weight[:, :, :4] = 0.0
    prediction = label.clone()
    prediction[:, :, :4] = 1.0 - prediction[:, :, :4]  # wrong exactly where the label is uncertain
    output = torch.cat([prediction, prediction], dim=1)  # coarse and fine
    plain, weighted = RSTNLoss(bce_weight=1.0), RSTNLoss(bce_weight=1.0, voxel_weights=True)
    assert plain(output, label) > 0.5
    assert weighted(output, torch.cat([label, weight], dim=1)) < 1e-4
    ones = torch.cat([label, torch.ones_like(label)], dim=1)
    soft = torch.rand_like(output)
    torch.testing.assert_close(weighted(soft, ones), plain(soft, label))
    with pytest.raises(ValueError, match="even channel count"):
        weighted(output, torch.cat([label, weight[:, :2]], dim=1))


def test_a_class_reduced_loss_with_weights_reads_label_weights_then_the_group_marker():
    label = torch.zeros(1, 6, 4, 4)  # 2 classes x 3 slices, class-major
    label[:, :3, :2] = 1.0
    weight = torch.ones_like(label)
    weight[:, :, 2:] = 0.0
    prediction = label.clone()
    prediction[:, :, 2:] = 1.0  # wrong only where the weight is 0
    loss = RSTNLoss(num_classes=2, class_groups=[[1, 2]], voxel_weights=True)
    for grouped in (0.0, 1.0):
        target = torch.cat([label, weight, torch.full((1, 1, 4, 4), grouped)], dim=1)
        assert loss(torch.cat([prediction, prediction], dim=1), target) < 1e-4


@pytest.fixture(scope="module")
def pseudo_items(phantom_dataset, tmp_path_factory) -> list[dict]:
    """A labeled case and a pseudo-labelled one whose uncertain mask covers the organ's upper half."""
    dataset = phantom_dataset(cases=3, seed=2)
    cases = json.loads(dataset.read_text())["cases"]
    root = tmp_path_factory.mktemp("uncertain")
    label_image = nib.load(str(dataset.parent / cases[1]["label"]))
    label = np.asarray(label_image.dataobj)
    uncertain = np.zeros(label.shape, np.uint8)
    uncertain[:, : label.shape[1] // 2] = 1
    mask_file = root / "case_uncertain.nii.gz"
    nib.save(nib.Nifti1Image(uncertain, label_image.affine), mask_file)
    path = lambda c, key: str(dataset.parent / c[key])  # noqa: E731
    return [
        {"id": cases[0]["id"], "image": path(cases[0], "image"), "label": path(cases[0], "label"), "source": "labeled"},
        {
            "id": cases[1]["id"],
            "image": path(cases[1], "image"),
            "label": path(cases[1], "label"),
            "source": "pseudo",
            "uncertain": str(mask_file),
        },
    ]


def test_samples_carry_weights_zero_on_the_uncertain_voxels(pseudo_items):
    stacks = SliceStackDataset(pseudo_items, CTPreprocessingd(), "Z", drop_fraction=0.0)
    assert stacks.weighted
    uncertain = stacks.volumes[1]["uncertain"]
    seen = set()
    for index, (volume, slice_index) in enumerate(stacks.samples):
        sample = stacks[index]
        assert sample["weight"].shape == sample["label"].shape
        if volume == 0:
            assert torch.all(sample["weight"] == 1.0)
        else:
            expected = 1.0 - np.asarray(slice_stack(uncertain, "Z", slice_index), np.float32)
            np.testing.assert_array_equal(sample["weight"].numpy(), expected)
            assert 0.0 < float(sample["weight"].mean()) < 1.0
        seen.add(volume)
    assert seen == {0, 1}
    batch = {key: torch.stack([stacks[0][key], stacks[-1][key]]) for key in ("image", "label", "weight")}
    _, target, _, kwargs = prepare_rstn_batch(batch)
    torch.testing.assert_close(target, torch.cat([batch["label"], batch["weight"]], dim=1))
    torch.testing.assert_close(kwargs["label"], batch["label"])  # the boxes come from the label alone
    assert not SliceStackDataset(pseudo_items[:1], CTPreprocessingd(), "Z").weighted


def test_an_uncertain_mask_off_the_image_grid_or_without_a_pseudo_label_is_refused(pseudo_items, tmp_path):
    from atso_med.errors import DatasetError

    item = dict(pseudo_items[1])
    shifted = nib.load(item["uncertain"])
    bad = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(shifted.dataobj), shifted.affine @ np.diag([1.0, 1.0, 2.0, 1.0])), bad)
    with pytest.raises((GridMismatchError, DatasetError)):
        CTPreprocessingd()({**item, "uncertain": str(bad)})
    with pytest.raises(ConfigError, match="belongs to a pseudo label"):
        CTPreprocessingd()({**item, "source": "labeled"})


def test_the_plan_keeps_probabilities_and_marks_every_pseudo_label_set():
    reference = [["R0_0", "R0_1"], ["R1_0", "R1_1"]]
    plan = build_plan(
        PlanInputs(
            ["supervised", "self_learning", "stso", "atso"],
            2,
            ["Z"],
            ["L0"],
            reference,
            ["E0"],
            ["L0", "E0"],
            pseudo_label_confidence=0.9,
        )
    )
    predictions = {s.params["output_dir"]: s for s in plan if s.kind == "predict"}
    pseudo = [s for s in plan if s.kind == "fuse" and s.params["purpose"] == "pseudo"]
    assert len(pseudo) == 3 * 3 * 2  # strategies x label sets (G1..G3) x folds
    for fuse in pseudo:
        assert fuse.params["confidence"] == 0.9
        assert all(predictions[source].params["save_probability"] for source in fuse.params["sources"])
    ensembles = [s for s in plan if s.kind == "fuse" and s.params["purpose"] == "ensemble"]
    assert ensembles and all("confidence" not in s.params for s in ensembles)
    for train in (s for s in plan if s.kind == "train" and s.params["pseudo_labels"]):
        assert all(entry["uncertain"] for entry in train.params["pseudo_labels"].values()), train.id


def test_the_setting_is_read_checked_and_saved(tmp_path):
    base = {"output_dir": str(tmp_path / "run"), "dataset": str(tmp_path / "dataset.json")}
    assert ExperimentConfig.from_dict(base).pseudo_label_confidence is None
    config = ExperimentConfig.from_dict({**base, "pseudo_label_confidence": 0.9})
    assert yaml.safe_load(config.to_yaml())["pseudo_label_confidence"] == 0.9
    for bad in (0.5, 1.0, 1.5, "high"):
        with pytest.raises(ConfigError, match="pseudo_label_confidence"):
            ExperimentConfig.from_dict({**base, "pseudo_label_confidence": bad})


def test_the_augmentation_moves_the_weights_with_the_label():
    from atso_med.transforms.augment import stack_augmentation

    label = torch.zeros(3, 32, 32)
    label[:, 8:20, 10:26] = 1.0
    augment = stack_augmentation(seed=3, spatial_probability=1.0)
    for _ in range(3):
        moved = augment({"image": torch.rand(3, 32, 32), "label": label.clone(), "weight": label.clone()})
        assert not torch.equal(torch.as_tensor(moved["label"]), label)
        torch.testing.assert_close(torch.as_tensor(moved["weight"]), torch.as_tensor(moved["label"]))


def test_the_report_measures_which_label_voxels_the_masks_take_out(tmp_path):
    from atso_med.atso.layout import ExperimentLayout, pseudo_label_folder
    from atso_med.atso.lazy_learning import ReferenceTruth, _uncertain_voxels

    truth = np.zeros((4, 4, 2), np.uint8)
    truth[:2] = 1  # 16 organ voxels
    label = truth.copy()
    label[2, :2] = 1  # 4 false positives
    label[0, 0] = 0  # 2 false negatives
    uncertain = np.zeros_like(label)
    uncertain[2, :1] = 1  # 2 of the 6 wrong voxels
    uncertain[1, :2] = 1  # 4 of the 14 right organ voxels
    layout = ExperimentLayout(tmp_path / "run")
    folder = layout.path(pseudo_label_folder("atso", 1, 0))
    folder.mkdir(parents=True)
    for name, array in (("c1", label), ("c1_uncertain", uncertain)):
        nib.save(nib.Nifti1Image(array, AFFINE), folder / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(truth, AFFINE), tmp_path / "truth.nii.gz")
    figures = _uncertain_voxels(layout, ReferenceTruth({"c1": tmp_path / "truth.nii.gz"}), ["atso"], 1, 0)
    # left: 10 right organ voxels, label 10 + 2 false positives, truth 10 + 2 false negatives
    assert figures == {"atso": {"1": {"wrong_marked": 2 / 6, "right_marked": 4 / 14, "confident_dsc": 20 / 24}}}


def test_a_report_without_the_uncertain_voxel_figures_is_measured_again():
    from atso_med.atso.lazy_learning import has_lazy_learning

    figures = {"repeated_errors": {}}
    assert has_lazy_learning({"lazy_learning": figures, "pseudo_label_confidence": None})
    assert not has_lazy_learning({"lazy_learning": figures, "pseudo_label_confidence": 0.9})
    assert has_lazy_learning({"lazy_learning": {**figures, "uncertain_voxels": {}}, "pseudo_label_confidence": 0.9})
    assert not has_lazy_learning({"pseudo_label_confidence": None})
