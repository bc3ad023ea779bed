"""Several organs at once: the fusion, the files and the evaluation of label maps of C classes.

A label map holds 0 (background) and the classes 1..C; its probabilities are ``(C, *spatial)``.
Every rule is checked on small hand-made arrays, and the binary case (C = 1) against the binary
functions, which it must reproduce bit for bit.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from atso_med.data.class_selection import select_classes
from atso_med.data.nifti import save_nifti
from atso_med.data.writers import write_prediction
from atso_med.errors import ConfigError, GridMismatchError, LabelValueError
from atso_med.inferers.fusion import PlaneFusion, VoteAccumulator, class_labels, ensemble_vote, fuse_planes, vote_files
from atso_med.metrics.evaluation import evaluate_predictions
from atso_med.metrics.evaluation_report import CSV_COLUMNS, check_report_paths

CLASSES = {0: "background", 1: "liver", 2: "spleen"}


def probs(*voxels: tuple[float, ...]) -> np.ndarray:
    """``(C, 1, 1, n)`` float32 probabilities from one ``(p_1, ..., p_C)`` tuple per voxel."""
    return np.array(voxels, dtype=np.float32).T.reshape(len(voxels[0]), 1, 1, len(voxels))


def labels(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint8).reshape(1, 1, len(values))


# -- fusion ------------------------------------------------------------------------------------------


def test_a_planes_label_map_is_the_most_probable_class_above_the_threshold():
    p = probs((0.7, 0.9), (0.7, 0.3), (0.4, 0.45), (0.6, 0.6), (0.5, 0.2))
    # 2 beats 1; only 1 passes; none passes; a draw goes to the lower class; exactly the threshold passes
    assert class_labels(p, 0.5).ravel().tolist() == [2, 1, 0, 1, 1]
    assert class_labels(p, 0.65).ravel().tolist() == [2, 1, 0, 0, 0]


def test_three_planes_that_disagree_vote_per_class():
    planes = [
        probs((0.9, 0.1), (0.9, 0.1), (0.1, 0.9), (0.1, 0.1)),  # labels 1 1 2 0
        probs((0.9, 0.1), (0.1, 0.9), (0.1, 0.9), (0.1, 0.1)),  # labels 1 2 2 0
        probs((0.1, 0.9), (0.1, 0.1), (0.1, 0.9), (0.9, 0.1)),  # labels 2 0 2 1
    ]
    label = fuse_planes(planes, "majority", 0.5, num_classes=2)
    assert label.dtype == np.uint8 and label.shape == (1, 1, 4)
    # 2 of 3 say liver; liver, spleen and background one each: nobody wins; all say spleen; 1 of 3
    assert label.ravel().tolist() == [1, 0, 2, 0]
    fusion = PlaneFusion("majority", 0.5, num_classes=2)
    for plane in planes:
        fusion.add(plane.copy(), owned=True)
    fused, mean = fusion.result()
    np.testing.assert_array_equal(fused, label)
    np.testing.assert_allclose(mean, np.mean(planes, axis=0), rtol=1e-6)
    assert mean.dtype == np.float32 and mean.shape == (2, 1, 1, 4)
    # The mean rule: the label map of the mean probabilities (0.63, 0.37) (0.37, 0.37) (0.1, 0.9) (0.37, 0.1)
    assert fuse_planes(planes, "mean", 0.5, num_classes=2).ravel().tolist() == [1, 0, 2, 0]


def test_two_planes_must_agree_on_organ_and_a_tie_of_two_classes_goes_to_the_higher_mean():
    a = probs((0.9, 0.2), (0.6, 0.1), (0.9, 0.1), (0.2, 0.7))  # labels 1 1 1 2
    b = probs((0.3, 0.8), (0.2, 0.9), (0.2, 0.1), (0.1, 0.9))  # labels 2 2 0 2
    # means: (0.6, 0.5) -> liver; (0.4, 0.5) -> spleen; liver against background: background; both spleen
    assert fuse_planes([a, b], "majority", num_classes=2).ravel().tolist() == [1, 2, 0, 2]
    # The binary rule is the same: one plane of two is not organ.
    assert fuse_planes([a[0], b[0]], "majority").ravel().tolist() == [0, 0, 0, 0]


def test_two_and_four_model_sets_break_ties_by_the_classes_mean_probability():
    sets = [labels(1, 1, 1, 1, 2), labels(2, 2, 0, 0, 2)]
    probabilities = [
        probs((0.9, 0.2), (0.6, 0.1), (0.7, 0.1), (0.6, 0.1), (0.1, 0.9)),
        probs((0.3, 0.8), (0.2, 0.9), (0.4, 0.1), (0.3, 0.2), (0.1, 0.7)),
    ]
    label, mean = ensemble_vote(sets, probabilities, num_classes=2)
    # liver (mean 0.6) against spleen (0.5); liver (0.4) against spleen (0.5); liver against
    # background: liver where its mean 0.55 >= 0.5, background where it is 0.45; both spleen
    assert label.ravel().tolist() == [1, 2, 1, 0, 2]
    np.testing.assert_allclose(mean[0].ravel(), [0.6, 0.4, 0.55, 0.45, 0.1], rtol=1e-6)
    # Four sets: liver 2, spleen 1, background 1 is a tie that liver wins at a mean >= 0.5.
    four = [labels(1, 1), labels(1, 1), labels(2, 2), labels(0, 0)]
    tie = [probs((0.5, 0.3), (0.49, 0.3))] * 4
    assert ensemble_vote(four, tie, num_classes=2)[0].ravel().tolist() == [1, 0]
    # 3 of 4 wins outright; 2 against 2 goes to the higher mean.
    four = [labels(1, 1), labels(1, 1), labels(1, 2), labels(0, 2)]
    assert ensemble_vote(four, [probs((0.1, 0.3), (0.2, 0.3))] * 4, num_classes=2)[0].ravel().tolist() == [1, 2]


@pytest.mark.parametrize("planes", [1, 2, 3])
@pytest.mark.parametrize("fusion", ["majority", "mean"])
def test_one_class_fuses_planes_as_the_binary_functions_do(planes, fusion):
    rng = np.random.default_rng(planes)
    volumes = [rng.random((9, 8, 7), dtype=np.float32) for _ in range(planes)]
    binary = PlaneFusion(fusion, 0.45)
    one_class = PlaneFusion(fusion, 0.45, num_classes=1)
    for volume in volumes:
        binary.add(volume)
        one_class.add(volume[np.newaxis])
    (mask, mean), (label, class_mean) = binary.result(), one_class.result()
    assert label.dtype == mask.dtype == np.uint8 and label.tobytes() == mask.tobytes()
    assert class_mean[0].tobytes() == mean.tobytes()
    assert fuse_planes(volumes, fusion, 0.45).tobytes() == mask.tobytes()


@pytest.mark.parametrize("sets", [1, 2, 3, 4])
def test_one_class_votes_as_the_binary_vote_does(sets):
    rng = np.random.default_rng(sets)
    masks = [(rng.random((9, 8, 7)) > 0.5).astype(np.uint8) for _ in range(sets)]
    probabilities = [rng.random((9, 8, 7), dtype=np.float32) for _ in range(sets)]
    mask, mean = ensemble_vote(masks, probabilities)
    label, class_mean = ensemble_vote(masks, [p[np.newaxis] for p in probabilities], num_classes=1)
    assert label.tobytes() == mask.tobytes() and class_mean[0].tobytes() == mean.tobytes()


def test_a_vote_refuses_values_beyond_the_classes_shapes_without_the_class_axis_and_even_ties_without_probabilities():
    vote = VoteAccumulator(num_classes=2)
    with pytest.raises(LabelValueError):
        vote.add(labels(0, 3), probs((0.1, 0.1), (0.1, 0.1)))
    with pytest.raises(GridMismatchError):
        vote.add(labels(0, 1), np.zeros((1, 1, 2), np.float32))
    with pytest.raises(GridMismatchError):
        fuse_planes([np.zeros((3, 1, 1, 2), np.float32)], num_classes=2)
    vote.add(labels(0, 1))
    vote.add(labels(1, 1))
    with pytest.raises(ConfigError, match="even vote"):
        vote.result()
    with pytest.raises(ConfigError):
        PlaneFusion("majority", 0.5, num_classes=0)


def test_vote_files_reads_label_maps_and_the_4d_probabilities_of_an_even_vote(tmp_path):
    sets = [labels(1, 1, 1, 2), labels(2, 2, 0, 2), labels(1, 0, 0, 0)]
    probabilities = [
        probs((0.9, 0.2), (0.6, 0.1), (0.7, 0.1), (0.1, 0.9)),
        probs((0.3, 0.8), (0.2, 0.9), (0.4, 0.1), (0.1, 0.7)),
        probs((0.9, 0.1), (0.1, 0.1), (0.1, 0.1), (0.1, 0.1)),
    ]
    sources = []
    for n, (label, probability) in enumerate(zip(sets, probabilities, strict=True)):
        folder = tmp_path / f"set{n}"
        write_prediction(
            label, np.eye(4), folder / "c.nii.gz", probability, folder / "c_probability.nii.gz", classes=CLASSES
        )
        sources.append(folder)
    two = vote_files(sources[:2], "c", tmp_path / "two.nii.gz", CLASSES)
    expected, _ = ensemble_vote(sets[:2], probabilities[:2], num_classes=2)
    assert np.asarray(nib.load(str(two)).dataobj).ravel().tolist() == expected.ravel().tolist() == [1, 2, 1, 2]
    three = vote_files(sources, "c", tmp_path / "three.nii.gz", CLASSES)
    assert nib.load(str(three)).get_data_dtype() == np.uint8
    assert np.asarray(nib.load(str(three)).dataobj).ravel().tolist() == [1, 0, 0, 2]
    (sources[1] / "c_probability.nii.gz").unlink()
    with pytest.raises(ConfigError, match="probabilit"):
        vote_files(sources[:2], "c", tmp_path / "x.nii.gz", CLASSES)


# -- files -------------------------------------------------------------------------------------------

ORGANS = {0: "background", 1: "liver", 2: "spleen", 3: "kidney_left", 4: "gallbladder", 5: "mystery_blob"}
# An oblique grid with flipped axes, so that a mix-up of RAS and LPS or of the axes shows.
AFFINE = np.array([[-0.7, 0.1, 0.0, 120.0], [0.1, 0.7, 0.05, -80.0], [0.0, -0.05, 2.5, 30.0], [0.0, 0.0, 0.0, 1.0]])


def organ_map() -> np.ndarray:
    """A 12 x 10 x 6 label map of the ORGANS, the gallbladder (4) left out."""
    label = np.zeros((12, 10, 6), dtype=np.uint8)
    label[1:5, 1:6, 1:4] = 1
    label[7:11, 2:5, 2:5] = 2
    label[2:4, 7:9, 0:2] = 3
    label[9:11, 7:9, 4:6] = 5
    return label


def test_a_label_map_writes_its_classes_values_a_4d_probability_and_one_slicer_segment_per_class(tmp_path):
    import slicerio

    label = organ_map()
    probability = np.stack([(label == c).astype(np.float32) * (0.5 + 0.1 * c) for c in range(1, 6)])
    written = write_prediction(
        label,
        AFFINE,
        tmp_path / "c.nii.gz",
        probability,
        tmp_path / "c_probability.nii.gz",
        tmp_path / "c.seg.nrrd",
        classes=ORGANS,
    )
    assert set(written) == {"output", "probability", "seg_nrrd"}
    image = nib.load(written["output"])
    assert image.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(image.dataobj), label)
    np.testing.assert_allclose(image.affine, AFFINE, atol=1e-6)
    stored = nib.load(written["probability"])
    assert stored.shape == (12, 10, 6, 5) and stored.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.moveaxis(np.asarray(stored.dataobj), -1, 0), probability)

    segmentation = slicerio.read_segmentation(written["seg_nrrd"])
    assert slicerio.segment_names(segmentation) == ["liver", "spleen", "kidney_left", "gallbladder", "mystery_blob"]
    for value, name in list(ORGANS.items())[1:]:
        np.testing.assert_array_equal(slicerio.segment_mask(segmentation, name), label == value, err_msg=name)
    # The segmentation's voxel-to-LPS matrix is the NIfTI's voxel-to-RAS affine, x and y negated.
    np.testing.assert_allclose(segmentation["ijkToLPS"], np.diag([-1, -1, 1, 1]) @ image.affine, atol=1e-6)
    # 3D Slicer's General Anatomy colours and SNOMED CT codes; a side is the type's modifier; an
    # unknown name gets a palette colour and no terminology.
    segments = {s["name"]: s for s in segmentation["segments"]}
    np.testing.assert_allclose(segments["liver"]["color"], np.array([221, 130, 101]) / 255, atol=1e-6)
    np.testing.assert_allclose(segments["spleen"]["color"], np.array([157, 108, 162]) / 255, atol=1e-6)
    assert segments["liver"]["terminology"]["type"] == ["SCT", "10200004", "Liver"]
    assert segments["kidney_left"]["terminology"]["type"] == ["SCT", "64033007", "Kidney"]
    assert segments["kidney_left"]["terminology"]["typeModifier"] == ["SCT", "7771000", "Left"]
    assert segments["gallbladder"]["terminology"]["type"][1] == "28231008"
    assert "terminology" not in segments["mystery_blob"]
    colors = [tuple(np.round(s["color"], 6)) for s in segmentation["segments"]]
    assert len(set(colors)) == len(colors)


def test_one_class_writes_a_mask_a_3d_probability_and_the_named_segment(tmp_path):
    import slicerio

    label = (organ_map() == 1).astype(np.uint8)
    probability = label.astype(np.float32)[np.newaxis]
    written = write_prediction(
        label,
        AFFINE,
        tmp_path / "c.nii.gz",
        probability,
        tmp_path / "p.nii.gz",
        tmp_path / "c.seg.nrrd",
        classes={0: "background", 1: "liver"},
    )
    np.testing.assert_array_equal(np.asarray(nib.load(written["output"]).dataobj), label)
    assert nib.load(written["probability"]).shape == label.shape
    segmentation = slicerio.read_segmentation(written["seg_nrrd"])
    assert slicerio.segment_names(segmentation) == ["liver"]
    assert segmentation["segments"][0]["terminology"]["type"][2] == "Liver"


def test_a_label_map_with_a_value_beyond_its_classes_or_probabilities_without_the_class_axis_is_refused(tmp_path):
    label = organ_map()
    with pytest.raises(LabelValueError):
        write_prediction(label, AFFINE, tmp_path / "c.nii.gz", classes=CLASSES)
    with pytest.raises(GridMismatchError):
        write_prediction(
            label,
            AFFINE,
            tmp_path / "c.nii.gz",
            np.zeros(label.shape, np.float32),
            tmp_path / "p.nii.gz",
            classes=ORGANS,
        )
    assert not list(tmp_path.iterdir())


# -- evaluation --------------------------------------------------------------------------------------

ABDOMEN = {0: "background", 1: "liver", 2: "spleen", 3: "kidney"}
# The data set stores liver as 6, spleen as 1 and kidney as 2: class c is scored against FOREGROUND[c - 1].
DATASET_LABELS = {0: "background", 1: "spleen", 2: "kidney", 6: "liver"}
FOREGROUND = [6, 1, 2]
SELECTION = select_classes(["liver", "spleen", "kidney"], DATASET_LABELS)
# Per case, the truth and the prediction as classes of ABDOMEN over 12 voxels:
# a: liver I 3 of P 4, G 4 -> 0.75; spleen G 2, not predicted -> 0, vanished; kidney absent.
# b: liver 2 of 2, 2 -> 1; spleen I 1, P 2, G 3 -> 0.4; kidney I 1, P 1, G 2 -> 2/3.
# c: liver 3 of 3, 3 -> 1; spleen absent from the truth but predicted (2 voxels); kidney absent.
EVALUATION_CASES = {
    "a": ([1, 1, 1, 1, 2, 2, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]),
    "b": ([1, 1, 2, 2, 2, 3, 3, 0, 0, 0, 0, 0], [1, 1, 2, 0, 0, 3, 0, 2, 0, 0, 0, 0]),
    "c": ([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 2, 2, 0, 0, 0, 0, 0, 0]),
}


@pytest.fixture()
def organ_pairs(tmp_path):
    """The EVALUATION_CASES as files: truth in the data set's values, predictions in the classes'."""
    to_dataset = np.array([0, 6, 1, 2], dtype=np.uint8)
    pairs = []
    for case_id, (truth, prediction) in EVALUATION_CASES.items():
        truth_path, prediction_path = tmp_path / "labels" / f"{case_id}.nii.gz", tmp_path / "pred" / f"{case_id}.nii.gz"
        save_nifti(to_dataset[np.array(truth)].reshape(2, 2, 3), AFFINE, truth_path, dtype=np.uint8)
        save_nifti(np.array(prediction, np.uint8).reshape(2, 2, 3), AFFINE, prediction_path, dtype=np.uint8)
        pairs.append((case_id, prediction_path, truth_path))
    return pairs


def test_each_class_is_scored_per_case_pooled_and_over_the_classes(organ_pairs, tmp_path):
    report = evaluate_predictions(
        organ_pairs, classes=DATASET_LABELS, selection=SELECTION, output_dir=tmp_path / "report"
    )
    by_case = {row["id"]: row["classes"] for row in report.per_case}
    dsc = {case_id: {name: scores["dsc"] for name, scores in row.items()} for case_id, row in by_case.items()}
    assert dsc == {
        "a": {"liver": 0.75, "spleen": 0.0, "kidney": None},
        "b": {"liver": 1.0, "spleen": 0.4, "kidney": pytest.approx(2 / 3)},
        "c": {"liver": 1.0, "spleen": None, "kidney": None},
    }
    assert by_case["a"]["spleen"]["vanished"] and not by_case["c"]["spleen"]["vanished"]
    assert by_case["c"]["spleen"] == {
        "dsc": None,
        "intersection": 0,
        "prediction_voxels": 2,
        "truth_voxels": 0,
        "vanished": False,
    }
    # The case's own figures are the organs together (any class against background):
    # a: I 3, P 4, G 6 -> 0.6; b: I 4, P 5, G 7 -> 2/3; c: I 3, P 5, G 3 -> 0.75.
    assert report.dsc == {"a": 0.6, "b": pytest.approx(2 / 3), "c": 0.75}
    summary = report.summary["classes"]
    liver, spleen, kidney = (summary["per_class"][name] for name in ("liver", "spleen", "kidney"))
    assert liver["mean_dsc"] == pytest.approx((0.75 + 1 + 1) / 3)
    assert liver["global_dsc"] == pytest.approx(2 * 8 / (9 + 9))
    assert (liver["cases"], liver["absent"], liver["vanished"]) == (3, 0, 0)
    assert spleen["mean_dsc"] == pytest.approx(0.2) and spleen["std_dsc"] == pytest.approx(0.2)
    # the spleen predicted in c, where the truth has none, counts in the pooled DSC: 2 * 1 / (4 + 5)
    assert spleen["global_dsc"] == pytest.approx(2 / 9)
    assert (spleen["cases"], spleen["absent"], spleen["absent_predicted"]) == (2, 1, 1)
    assert (spleen["vanished"], spleen["vanished_cases"]) == (1, ["a"])
    assert (spleen["value"], spleen["label_values"]) == (2, [1])
    assert kidney["mean_dsc"] == kidney["global_dsc"] == pytest.approx(2 / 3) and kidney["cases"] == 1
    assert summary["mean_dsc"] == pytest.approx((2.75 / 3 + 0.2 + 2 / 3) / 3)
    assert summary["global_dsc"] == pytest.approx((8 / 9 + 2 / 9 + 2 / 3) / 3)
    assert report.summary["foreground"] == sorted(FOREGROUND)

    # The files: null (JSON) and empty (CSV) where a class has no DSC; one CSV column per class.
    written = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert written["classes"] == json.loads(json.dumps(summary))
    assert written["per_case"][2]["classes"]["kidney"]["dsc"] is None
    with (tmp_path / "report" / "per_case.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == [*CSV_COLUMNS, "dsc_liver", "dsc_spleen", "dsc_kidney"]
    assert [(r["dsc_liver"], r["dsc_spleen"], r["dsc_kidney"]) for r in rows][:1] == [("0.75", "0.0", "")]
    # A rerun may replace this report: it is recognised as one.
    check_report_paths(tmp_path / "report", organ_pairs, tmp_path / "datalist.json", None)


def test_the_per_class_dsc_follows_monais_dice_metric_with_ignore_empty(organ_pairs):
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    report = evaluate_predictions(organ_pairs, classes=DATASET_LABELS, selection=SELECTION)
    ours = [[np.nan if s["dsc"] is None else s["dsc"] for s in row["classes"].values()] for row in report.per_case]
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    for truth, prediction in EVALUATION_CASES.values():
        as_one_hot = [one_hot(torch.tensor(v).reshape(1, 1, 12), num_classes=4) for v in (prediction, truth)]
        metric(y_pred=as_one_hot[0], y=as_one_hot[1])
    np.testing.assert_allclose(ours, metric.aggregate().numpy(), rtol=1e-6, equal_nan=True)


def test_one_class_or_none_keeps_the_binary_report_and_bad_class_settings_are_refused(organ_pairs):
    binary = evaluate_predictions(organ_pairs, [6])
    one_class = evaluate_predictions(organ_pairs, selection=select_classes("liver", DATASET_LABELS))
    assert "classes" not in binary.summary and one_class.summary == binary.summary
    assert one_class.per_case == binary.per_case
    with pytest.raises(ConfigError, match="threshold"):
        evaluate_predictions(organ_pairs, selection=SELECTION, threshold=0.5)
    with pytest.raises(ConfigError, match="not both"):
        evaluate_predictions(organ_pairs, [6, 1], classes=DATASET_LABELS, selection=SELECTION)
    with pytest.raises(ConfigError, match="not declared"):
        evaluate_predictions(organ_pairs, classes={0: "background", 6: "liver"}, selection=SELECTION)
    two_classes = select_classes(["liver", "spleen"], DATASET_LABELS)
    with pytest.raises(LabelValueError, match="case 'b'"):
        evaluate_predictions(organ_pairs, classes=DATASET_LABELS, selection=two_classes)


def test_merged_classes_are_scored_as_one(organ_pairs):
    """Spleen and kidney merged into one class: the truth's values 1 and 2 both count as it."""
    merged = select_classes({"liver": "liver", "small_organs": ["spleen", "kidney"]}, DATASET_LABELS)
    pairs = [(i, p, t) for i, p, t in organ_pairs if i == "c"]  # predictions of c hold values 0..2 only
    report = evaluate_predictions(pairs, classes=DATASET_LABELS, selection=merged)
    # c: truth liver 3 voxels, spleen/kidney none; prediction liver 3, class 2 at 2 voxels.
    assert report.per_case[0]["classes"]["small_organs"]["prediction_voxels"] == 2
    assert report.per_case[0]["classes"]["small_organs"]["dsc"] is None
    assert report.summary["classes"]["per_class"]["small_organs"]["label_values"] == [1, 2]
