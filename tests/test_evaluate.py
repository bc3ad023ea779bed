"""Evaluation of written predictions: known DSCs, grid checks, report files, CLI and bundle runs."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bundle_files import EVALUATE, bundle_argv

from atso_med.cli.main import main
from atso_med.data.nifti import save_nifti
from atso_med.errors import ConfigError, DatasetError, GridMismatchError, ImageReadError, LabelValueError
from atso_med.metrics import evaluate_predictions, run_evaluation
from atso_med.metrics.evaluation_report import CSV_COLUMNS
from atso_med.metrics.prediction_stats import PREDICTION_STATS_FILE, per_round_summary

SHAPE = (6, 5, 4)
AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, -0.8, 0, 30.0], [0, 0, 2.0, -100.0], [0, 0, 0, 1]])
# Each voxel is 0.8 * 0.8 * 2.0 mm = 1.28 mm^3.
VOXEL_ML = 0.8 * 0.8 * 2.0 / 1000


def _mask(indices) -> np.ndarray:
    out = np.zeros(SHAPE, dtype=np.uint8)
    flat = out.reshape(-1)
    flat[list(indices)] = 1
    return out


@pytest.fixture()
def cases(tmp_path):
    """Three cases with hand-counted overlaps: DSC 0.5, 1.0 and 0.0.

    a: prediction voxels 0..9, truth 5..14 -> |P & G| = 5, DSC 2*5/20 = 0.5
    b: prediction = truth = voxels 20..23 (truth stored MSD-style: values 1 and 2) -> 1.0
    c: empty prediction, truth 6 voxels -> 0.0
    """
    preds, labels = tmp_path / "pred", tmp_path / "labels"
    truth_b = _mask(range(20, 24))
    truth_b.reshape(-1)[22:24] = 2  # tumour voxels count as pancreas by default
    content = {
        "a": (_mask(range(10)), _mask(range(5, 15))),
        "b": (_mask(range(20, 24)), truth_b),
        "c": (_mask([]), _mask(range(30, 36))),
    }
    items = []
    for case_id, (prediction, truth) in content.items():
        save_nifti(prediction, AFFINE, preds / f"{case_id}.nii.gz", dtype=np.uint8)
        save_nifti(truth, AFFINE, labels / f"{case_id}.nii.gz", dtype=np.uint8)
        label = str(labels / f"{case_id}.nii.gz")
        items.append({"id": case_id, "image": label, "label": label})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"testing": items}))
    pairs = [(i, preds / f"{i}.nii.gz", labels / f"{i}.nii.gz") for i in content]
    return {"pairs": pairs, "preds": preds, "labels": labels, "datalist": datalist, "root": tmp_path}


def test_known_per_case_mean_std_and_global_dsc(cases, tmp_path):
    report = evaluate_predictions(cases["pairs"], output_dir=tmp_path / "report")
    assert report.dsc == {"a": 0.5, "b": 1.0, "c": 0.0}
    s = report.summary
    assert s["cases"] == 3
    assert s["mean_dsc"] == pytest.approx(0.5)
    assert s["std_dsc"] == pytest.approx(math.sqrt((0.0 + 0.25 + 0.25) / 3))  # population std
    # Pooled: 2 * (5 + 4 + 0) / ((10 + 10) + (4 + 4) + (0 + 6)) = 18 / 34.
    assert s["global_dsc"] == pytest.approx(18 / 34)
    assert (s["min_dsc"], s["max_dsc"]) == (0.0, 1.0)
    assert s["per_round"] is None
    row = report.per_case[0]
    assert (row["intersection"], row["prediction_voxels"], row["truth_voxels"]) == (5, 10, 10)
    assert row["truth_ml"] == pytest.approx(10 * VOXEL_ML)


def test_foreground_values_select_the_organ(cases):
    # Only value 1: case b's truth keeps voxels 20, 21 -> DSC 2*2/(4+2).
    report = evaluate_predictions(cases["pairs"], foreground=[1])
    assert report.dsc["b"] == pytest.approx(4 / 6)
    assert report.summary["foreground"] == [1]
    with pytest.raises(ConfigError, match="non-zero"):
        evaluate_predictions(cases["pairs"], foreground=[0, 1])


def test_summary_json_and_csv_are_written_with_the_numbers(cases, tmp_path):
    out = tmp_path / "report"
    report = evaluate_predictions(cases["pairs"], output_dir=out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean_dsc"] == pytest.approx(0.5) and summary["global_dsc"] == pytest.approx(18 / 34)
    assert [row["id"] for row in summary["per_case"]] == ["a", "b", "c"]
    with open(out / "per_case.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["id"], float(r["dsc"])) for r in rows] == [("a", 0.5), ("b", 1.0), ("c", 0.0)]
    assert rows[2]["prediction_voxels"] == "0" and rows[2]["truth_voxels"] == "6"
    assert report.files == {"summary": out / "summary.json", "per_case": out / "per_case.csv"}
    assert not list(out.glob(".*"))  # no temporary files left behind


def _relabel(path: Path, affine: np.ndarray, data: np.ndarray | None = None) -> None:
    import nibabel as nib

    image = nib.load(str(path))
    save_nifti(np.asarray(image.dataobj) if data is None else data, affine, path, dtype=np.uint8)


def test_grid_mismatch_is_an_error_not_a_resample(cases):
    pairs = cases["pairs"]
    label_a = pairs[0][2]
    truth = _mask(range(5, 15))

    shifted = AFFINE.copy()
    shifted[:3, 3] += AFFINE[:3, 0]  # one voxel along i
    _relabel(label_a, shifted)
    with pytest.raises(GridMismatchError, match="shifted by 1 voxels"):
        evaluate_predictions(pairs)

    flipped = AFFINE.copy()
    flipped[:3, 0] *= -1  # flipped axis, origin kept: the label lies mirrored in world space
    _relabel(label_a, flipped)
    with pytest.raises(GridMismatchError, match="opposite way"):
        evaluate_predictions(pairs)

    half = AFFINE.copy()
    half[:3, 3] += 0.3
    _relabel(label_a, half)
    with pytest.raises(GridMismatchError, match="fraction of a voxel"):
        evaluate_predictions(pairs)

    _relabel(label_a, AFFINE, np.zeros((6, 5, 5), dtype=np.uint8))
    with pytest.raises(GridMismatchError, match="shape differs"):
        evaluate_predictions(pairs)

    # The same world grid stored in another axis order (flipped data AND header, as LAS vs LPS
    # labels are) is the same label: it is read in the prediction's order, not refused.
    reoriented = AFFINE.copy()
    reoriented[:3, 1] *= -1
    reoriented[:3, 3] = AFFINE[:3, :3] @ [0, SHAPE[1] - 1, 0] + AFFINE[:3, 3]
    _relabel(label_a, reoriented, np.ascontiguousarray(truth[:, ::-1, :]))
    assert evaluate_predictions(pairs).dsc["a"] == 0.5


def test_missing_files_and_duplicates_fail_before_any_reading(cases):
    pairs = list(cases["pairs"])
    pairs[1] = ("b", cases["preds"] / "nope.nii.gz", pairs[1][2])
    pairs[2] = ("c", pairs[2][1], cases["labels"] / "gone.nii.gz")
    with pytest.raises(ImageReadError) as error:
        evaluate_predictions(pairs)
    assert "nope.nii.gz" in str(error.value) and "gone.nii.gz" in str(error.value)
    with pytest.raises(DatasetError, match="twice"):
        evaluate_predictions([cases["pairs"][0], cases["pairs"][0]])
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        evaluate_predictions([])


def test_per_round_dsc_from_prediction_stats(cases, tmp_path):
    stats = {
        "a": {
            "stopped_round": 2,
            "rounds": [
                {"round": 0, "voxels": 9, "inter_round_dsc": None, "dsc": 0.2},
                {"round": 1, "voxels": 9, "inter_round_dsc": 0.8, "dsc": 0.4},
                {"round": 2, "voxels": 9, "inter_round_dsc": 1.0, "dsc": 0.5},
            ],
        },
        "b": {
            "stopped_round": 1,
            "rounds": [
                {"round": 0, "voxels": 4, "inter_round_dsc": None, "dsc": 0.6},
                {"round": 1, "voxels": 4, "inter_round_dsc": 1.0, "dsc": 1.0},
            ],
        },
    }
    (cases["preds"] / PREDICTION_STATS_FILE).write_text(json.dumps({"cases": stats}))
    report = run_evaluation(cases["preds"], cases["datalist"], output_dir=tmp_path / "r")
    table = {row["round"]: row for row in report.summary["per_round"]}
    assert table[0]["mean_dsc"] == pytest.approx(0.4) and table[0]["cases"] == 2
    assert table[1]["mean_dsc"] == pytest.approx(0.7) and table[1]["mean_inter_round_dsc"] == pytest.approx(0.9)
    # Round 2: only a ran it; b carries its round-1 DSC forward.
    assert table[2]["cases"] == 1 and table[2]["mean_dsc"] == pytest.approx(0.5)
    assert table[2]["mean_dsc_carried"] == pytest.approx(0.75)
    assert [r["stopped_round"] for r in report.per_case] == [2, 1, None]
    assert per_round_summary({"x": {"rounds": [{"round": 0, "voxels": 1}]}}) is None


def test_cli_evaluate_with_a_datalist_and_with_a_dataset(cases, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["evaluate", "--predictions", str(cases["preds"]), "--datalist", str(cases["datalist"]), "--out", str(out)]
    assert main(args) == 0
    assert "global DSC 0.5294" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["cases"] == 3

    dataset = tmp_path / "dataset.json"
    dataset.write_text(
        json.dumps(
            {
                "name": "hand",
                "labels": {"0": "background", "1": "pancreas", "2": "tumour"},
                "cases": [
                    {"id": i, "image": f"labels/{i}.nii.gz", "label": f"labels/{i}.nii.gz"} for i in ("a", "b", "c")
                ],
            }
        )
    )
    assert (
        main(
            [
                "evaluate",
                "--predictions",
                str(cases["preds"]),
                "--dataset",
                str(dataset),
                "--ids",
                "a",
                "b",
                "--out",
                str(tmp_path / "ds"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert summary["mean_dsc"] == pytest.approx(0.75)
    # pancreas and tumour voxels are one organ by default, and the report says so
    assert summary["organ_classes"] == {"1": "pancreas", "2": "tumour"}
    assert "scored as one organ: 1 pancreas + 2 tumour" in capsys.readouterr().out

    # Bad input: one line on stderr, exit status 2, nothing written.
    assert (
        main(
            [
                "evaluate",
                "--predictions",
                str(tmp_path / "none"),
                "--datalist",
                str(cases["datalist"]),
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["evaluate", "--predictions", str(cases["preds"]), "--dataset", str(dataset), "--ids", "zz"]) == 2
    assert "zz" in capsys.readouterr().err


def test_evaluate_bundle_runs_with_monai_bundle_run(cases, tmp_path):
    out = tmp_path / "bundle"
    command = bundle_argv("run", EVALUATE, predictions_dir=cases["preds"], datalist=cases["datalist"], output_dir=out)
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_dsc"] == pytest.approx(18 / 34) and summary["mean_dsc"] == pytest.approx(0.5)
    assert (out / "per_case.csv").read_text().splitlines()[1].startswith("a,0.5,")


def _dataset_json(tmp_path: Path, classes: dict[str, str]) -> Path:
    dataset = tmp_path / "dataset.json"
    dataset.write_text(
        json.dumps(
            {
                "name": "hand",
                "labels": classes,
                "cases": [
                    {"id": i, "image": f"labels/{i}.nii.gz", "label": f"labels/{i}.nii.gz"} for i in ("a", "b", "c")
                ],
            }
        )
    )
    return dataset


@pytest.mark.parametrize(
    "stored, message",
    [
        (np.where(_mask(range(5, 15)), 1.0, np.nan), r"case 'a': .*a\.nii\.gz: label has 110 NaN/inf voxels"),
        (_mask(range(5, 15)) * 0.5, r"case 'a': .*a\.nii\.gz: label has non-integer values: 0\.5 \(10 voxels\)"),
    ],
    ids=["nan", "halves"],
)
def test_labels_that_verify_refuses_are_refused_by_evaluate(cases, stored, message):
    """A perfect prediction used to score 0.02 against a NaN label and 1.0 against a label of 0.5s."""
    label_a = cases["pairs"][0][2]
    save_nifti(stored, AFFINE, label_a, dtype=np.float32)
    save_nifti(_mask(range(5, 15)), AFFINE, cases["pairs"][0][1], dtype=np.uint8)
    with pytest.raises(LabelValueError, match=message):
        evaluate_predictions(cases["pairs"])
    with pytest.raises(LabelValueError, match=message):
        run_evaluation(cases["preds"], cases["datalist"])


def test_undeclared_label_class_is_refused_against_the_dataset(cases, tmp_path, capsys):
    dataset = _dataset_json(tmp_path, {"0": "background", "1": "pancreas"})  # b's label holds tumour voxels (2)
    args = ["evaluate", "--predictions", str(cases["preds"]), "--dataset", str(dataset), "--out", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "case 'b'" in err and "b.nii.gz" in err
    assert "label values not among the declared classes {0, 1}: 2 (2 voxels)" in err
    assert not (tmp_path / "r" / "summary.json").exists()
    # Declared, class 2 is fine; a foreground value the dataset does not declare is a config error.
    dataset = _dataset_json(tmp_path, {"0": "background", "1": "pancreas", "2": "tumour"})
    assert run_evaluation(cases["preds"], dataset, tmp_path / "ok").dsc["b"] == 1.0
    with pytest.raises(ConfigError, match=r"foreground value\(s\) \[3\] are not declared classes"):
        run_evaluation(cases["preds"], dataset, tmp_path / "ok", foreground=[3])


def test_a_probability_map_is_refused_unless_a_threshold_is_given(cases, tmp_path, capsys):
    """A probability map used to count as organ wherever non-zero (DSC 0.002 for a good prediction)."""
    prediction_a = cases["pairs"][0][1]
    probability = np.full(SHAPE, 0.01, dtype=np.float32)
    probability.reshape(-1)[0:10] = 0.9  # the same organ as the mask: DSC 0.5 once thresholded
    save_nifti(probability, AFFINE, prediction_a, dtype=np.float32)
    with pytest.raises(
        LabelValueError, match=r"case 'a': .*a\.nii\.gz: prediction has non-integer values: .*probability map"
    ):
        evaluate_predictions(cases["pairs"])
    assert evaluate_predictions(cases["pairs"], threshold=0.5).dsc == {"a": 0.5, "b": 1.0, "c": 0.0}

    base = [
        "evaluate",
        "--predictions",
        str(cases["preds"]),
        "--datalist",
        str(cases["datalist"]),
        "--out",
        str(tmp_path / "t"),
    ]
    assert main(base) == 2
    assert "--threshold" in capsys.readouterr().err
    assert main([*base, "--threshold", "0.5"]) == 0
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["prediction_threshold"] == 0.5 and summary["mean_dsc"] == pytest.approx(0.5)
    # NaN in a thresholded map is still an error.
    probability.reshape(-1)[11] = np.nan
    save_nifti(probability, AFFINE, prediction_a, dtype=np.float32)
    with pytest.raises(LabelValueError, match="prediction has 1 NaN/inf voxels"):
        evaluate_predictions(cases["pairs"], threshold=0.5)


def test_the_report_never_replaces_an_input_or_a_foreign_file(cases, tmp_path):
    # A data list that happens to be called summary.json, in the output folder: refused, untouched.
    listing = cases["preds"] / "summary.json"
    listing.write_text(cases["datalist"].read_text())
    before = listing.read_bytes()
    with pytest.raises(ConfigError, match=r"summary.json is the data list / dataset"):
        run_evaluation(cases["preds"], listing)
    assert listing.read_bytes() == before
    # A foreign per_case.csv is refused; the evaluation's own earlier reports are replaced.
    out = tmp_path / "report"
    out.mkdir()
    (out / "per_case.csv").write_text("patient,notes\n1,keep me\n")
    with pytest.raises(ConfigError, match="is not a per-case table"):
        run_evaluation(cases["preds"], cases["datalist"], out)
    (out / "per_case.csv").unlink()
    run_evaluation(cases["preds"], cases["datalist"], out)
    assert run_evaluation(cases["preds"], cases["datalist"], out).summary["cases"] == 3
