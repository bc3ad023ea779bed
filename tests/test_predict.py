"""Whole-volume prediction: model loading, ensemble vote, resumable runs, CLI and bundle, bad input.

Everything runs the real code path on a tiny phantom with tiny random RSTNs (mostly one plane and
round 0, to stay fast on a shared CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_files import INFERENCE, META, bundle_argv
from monai.bundle import ConfigWorkflow
from synthetic_dicom import axial, write_series

from atso_med.cli.main import main
from atso_med.data.dataset import Dataset
from atso_med.data.inputs import resolve_inputs
from atso_med.data.nifti import save_nifti
from atso_med.errors import CaseFailuresError, ConfigError, DatasetError, ImageReadError
from atso_med.inferers.coarse_to_fine import InferenceConfig
from atso_med.inferers.fusion import ensemble_vote
from atso_med.metrics.prediction_stats import PREDICTION_STATS_FILE
from atso_med.networks import build_rstn
from atso_med.networks.plane_models import load_model_sets, load_plane_models
from atso_med.prediction import predict_case, predict_datalist

FAST = InferenceConfig(rounds=0, batch_size=32)


def save_model(path: Path, plane: str, preset: str = "tiny", seed: int = 0, stored_preset: str | None = None) -> Path:
    """A model.pt as the train bundle exports it: random weights of ``preset``, config naming ``stored_preset``."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "network": build_rstn(preset).state_dict(),
        "config": {"plane": plane, "preset": stored_preset or preset},
    }
    torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    save_model(root / "set_a" / "plane_Z" / "model.pt", "Z", seed=1)
    save_model(root / "set_b" / "plane_Z" / "model.pt", "Z", seed=2)
    for plane in "XY":
        save_model(root / "set_xyz" / f"plane_{plane}" / "model.pt", plane, seed=3)
    save_model(root / "set_xyz" / "plane_z" / "model.pt", "Z", seed=3)  # lower-case folder works too
    return {name: root / name for name in ("set_a", "set_b", "set_xyz")} | {"root": root}


@pytest.fixture(scope="module")
def phantom(phantom_dataset) -> Dataset:
    return Dataset.load(phantom_dataset(cases=2))


def _voxels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


# ---------------------------------------------------------------------------------------------
# model loading
# ---------------------------------------------------------------------------------------------


def test_load_plane_models_from_a_folder_a_mapping_and_a_run_folder(models, tmp_path):
    loaded = load_plane_models(models["set_xyz"], "cpu")
    assert list(loaded) == ["X", "Y", "Z"]
    assert all(not m.training for m in loaded.values())
    # The weights are the file's, not a fresh initialisation.
    stored = torch.load(models["set_xyz"] / "plane_X" / "model.pt", weights_only=True)["network"]
    torch.testing.assert_close(loaded["X"].state_dict()["coarse.conv1_1.weight"], stored["coarse.conv1_1.weight"])

    only_z = load_plane_models({"z": models["set_a"] / "plane_Z" / "model.pt"})
    assert list(only_z) == ["Z"]
    # The output folder of one training run (model.pt at its top): the plane comes from the file.
    run = tmp_path / "run"
    save_model(run / "model.pt", "Y")
    assert list(load_plane_models(run)) == ["Y"]
    assert len(load_model_sets([models["set_a"], {"Z": models["set_b"] / "plane_Z"}])) == 2


def test_bad_model_files_are_refused_with_what_is_wrong(models, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_plane_models(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"holds no plane model.*plane_X/model.pt"):
        load_plane_models(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"plane Y: .*missing\.pt"):
        load_plane_models({"Z": models["set_a"] / "plane_Z" / "model.pt", "Y": tmp_path / "missing.pt"})
    with pytest.raises(ConfigError, match="unknown plane"):
        load_plane_models({"W": models["set_a"] / "plane_Z" / "model.pt"})

    # Weights of another width: the file says "tiny" but holds "small" weights.
    save_model(tmp_path / "wide" / "plane_Z" / "model.pt", "Z", preset="small", stored_preset="tiny")
    with pytest.raises(ConfigError, match=r"wide/plane_Z/model.pt does not fit the network: .*shape.*another width"):
        load_plane_models(tmp_path / "wide")
    # A file whose stored plane disagrees with the plane it is given for.
    with pytest.raises(ConfigError, match="holds the model of plane Z but is given for plane X"):
        load_plane_models({"X": models["set_a"] / "plane_Z" / "model.pt"})
    # Not a model file at all (and never unpickled as code: weights_only).
    junk = tmp_path / "junk" / "plane_Z" / "model.pt"
    junk.parent.mkdir(parents=True)
    torch.save({"weights": [1, 2, 3]}, junk)
    with pytest.raises(ConfigError, match="no 'network' weights"):
        load_plane_models(tmp_path / "junk")
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_plane_models(tmp_path / "junk")


# ---------------------------------------------------------------------------------------------
# ensemble rule
# ---------------------------------------------------------------------------------------------


def test_ensemble_vote_is_a_majority_with_ties_broken_by_mean_probability():
    m = lambda *v: np.array(v, dtype=np.uint8)  # noqa: E731
    p = lambda *v: np.array(v, dtype=np.float32)  # noqa: E731
    # Three sets: 2 of 3 wins whatever the probabilities.
    mask, mean = ensemble_vote([m(1, 1, 0, 0), m(1, 0, 0, 1), m(0, 1, 0, 0)], [p(0.9, 0.1, 0.9, 0.9)] * 3)
    np.testing.assert_array_equal(mask, m(1, 1, 0, 0))
    np.testing.assert_allclose(mean, p(0.9, 0.1, 0.9, 0.9))
    # Two sets: both agree -> that; one each -> organ when the mean probability >= 0.5.
    mask, mean = ensemble_vote(
        [m(1, 0, 1, 1, 0), m(1, 0, 0, 0, 1)],
        [p(0.2, 0.9, 0.7, 0.6, 0.1), p(0.2, 0.9, 0.3, 0.2, 0.8)],
    )
    np.testing.assert_array_equal(mask, m(1, 0, 1, 0, 0))  # ties: mean 0.5 -> organ, 0.4 -> not, 0.45 -> not
    np.testing.assert_allclose(mean, p(0.2, 0.9, 0.5, 0.4, 0.45))
    # Four sets: 3 of 4 wins, 2 of 4 is a tie.
    mask, _ = ensemble_vote([m(1, 1), m(1, 1), m(1, 0), m(0, 0)], [p(0.0, 0.6)] * 4)
    np.testing.assert_array_equal(mask, m(1, 1))
    mask, _ = ensemble_vote([m(1, 1), m(1, 0), m(0, 1), m(0, 0)], [p(0.49, 0.5)] * 4)
    np.testing.assert_array_equal(mask, m(0, 1))
    # One set: itself.
    mask, _ = ensemble_vote([m(0, 1)], [p(0.9, 0.1)])
    np.testing.assert_array_equal(mask, m(0, 1))


def test_ensemble_prediction_is_the_vote_of_the_single_set_predictions(phantom, models, tmp_path):
    image = phantom.cases[0].image
    single = {}
    for name in ("set_a", "set_b"):
        probability = tmp_path / f"{name}_p.nii.gz"
        predict_case(image, models[name], tmp_path / f"{name}.nii.gz", FAST, "cpu", probability_path=probability)
        single[name] = (_voxels(tmp_path / f"{name}.nii.gz"), _voxels(tmp_path / f"{name}_p.nii.gz"))
    stats = predict_case(image, [models["set_a"], models["set_b"]], tmp_path / "both.nii.gz", FAST, "cpu")
    expected, _ = ensemble_vote([single[n][0] for n in single], [single[n][1] for n in single])
    np.testing.assert_array_equal(_voxels(tmp_path / "both.nii.gz"), expected)
    assert stats["model_sets"] == 2 and len(stats["sets"]) == 2
    # The two random sets disagree somewhere, so the tie rule was actually exercised.
    assert np.any(single["set_a"][0] != single["set_b"][0])


def test_prediction_windows_the_ct_as_the_models_were_trained_and_refuses_another_window(phantom, tmp_path):
    image = phantom.cases[0].image
    trained = save_model(tmp_path / "trained" / "plane_Z" / "model.pt", "Z", seed=4)
    content = torch.load(trained, weights_only=True)
    content["config"]["hu_window"] = [-160, 240]
    torch.save(content, trained)
    unstated = save_model(tmp_path / "unstated" / "plane_Z" / "model.pt", "Z", seed=4)  # same weights, no window

    def probability(model: Path, name: str, **window) -> np.ndarray:
        out = tmp_path / f"{name}_p.nii.gz"
        predict_case(
            image, model.parent.parent, tmp_path / f"{name}.nii.gz", FAST, "cpu", probability_path=out, **window
        )
        return _voxels(out)

    from_file = probability(trained, "from_file")
    np.testing.assert_array_equal(from_file, probability(unstated, "given", hu_window=(-160, 240)))
    assert np.any(from_file != probability(unstated, "default"))  # the window read from the file mattered
    with pytest.raises(ConfigError, match=r"differs from the window the models were trained with, \[-160.0, 240.0\]"):
        predict_case(image, trained.parent.parent, tmp_path / "x.nii.gz", FAST, "cpu", hu_window=(-100, 240))
    other = save_model(tmp_path / "other" / "plane_Z" / "model.pt", "Z", seed=4)
    content["config"]["hu_window"] = [-100, 240]
    torch.save(content, other)
    with pytest.raises(ConfigError, match="trained with different HU windows"):
        predict_datalist(
            [{"id": "a", "image": str(image)}], [trained.parent.parent, other.parent.parent], tmp_path / "o"
        )
    assert not (tmp_path / "x.nii.gz").exists() and not (tmp_path / "o").exists()


def test_prediction_resamples_the_long_axis_as_the_models_were_trained_and_refuses_another_spacing(phantom, tmp_path):
    image = phantom.cases[0].image
    trained = save_model(tmp_path / "trained" / "plane_Z" / "model.pt", "Z", seed=4)
    content = torch.load(trained, weights_only=True)
    content["config"]["long_axis_spacing"] = 4.0
    torch.save(content, trained)
    unstated = save_model(tmp_path / "unstated" / "plane_Z" / "model.pt", "Z", seed=4)  # same weights, no spacing

    def probability(model: Path, name: str, **spacing) -> np.ndarray:
        out = tmp_path / f"{name}_p.nii.gz"
        stats = predict_case(
            image, model.parent.parent, tmp_path / f"{name}.nii.gz", FAST, "cpu", probability_path=out, **spacing
        )
        return _voxels(out), stats["long_axis_spacing"]

    from_file, record = probability(trained, "from_file")
    assert record is not None and record["target_mm"] == 4.0  # resampled as trained, without being asked
    given, _ = probability(unstated, "given", long_axis_spacing=4.0)
    np.testing.assert_array_equal(from_file, given)
    with pytest.raises(ConfigError, match=r"long_axis_spacing 2 mm differs from the models', trained at 4 mm"):
        predict_case(image, trained.parent.parent, tmp_path / "x.nii.gz", FAST, "cpu", long_axis_spacing=2.0)
    content["config"]["long_axis_spacing"] = None  # a training without resampling
    torch.save(content, trained)
    with pytest.raises(ConfigError, match="trained without resampling"):
        predict_case(image, trained.parent.parent, tmp_path / "x.nii.gz", FAST, "cpu", long_axis_spacing=2.0)
    assert not (tmp_path / "x.nii.gz").exists()


# ---------------------------------------------------------------------------------------------
# data lists, resuming
# ---------------------------------------------------------------------------------------------


def test_predict_datalist_is_resumable_and_overwrites_only_when_asked(phantom, models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # case_000 "already done": a marker file that a re-prediction would replace.
    save_nifti(np.full((2, 2, 2), 7, np.uint8), np.eye(4), out / "case_000.nii.gz")
    results = predict_datalist(phantom.path, models["set_a"], out, FAST, "cpu")
    assert [r["status"] for r in results] == ["skipped", "predicted"]
    assert _voxels(out / "case_000.nii.gz").shape == (2, 2, 2)
    assert (out / "case_001.nii.gz").is_file()
    stats = json.loads((out / PREDICTION_STATS_FILE).read_text())["cases"]
    assert list(stats) == ["case_001"] and stats["case_001"]["rounds"][0]["round"] == 0
    before = (out / "case_001.nii.gz").stat().st_mtime_ns

    again = predict_datalist(phantom.path, models["set_a"], out, FAST, "cpu")
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    assert (out / "case_001.nii.gz").stat().st_mtime_ns == before
    # Asking for a file a case lacks predicts that case again.
    more = predict_datalist(phantom.path, models["set_a"], out, FAST, "cpu", save_probability=True, ids=["case_001"])
    assert [r["status"] for r in more] == ["predicted"]
    assert (out / "case_001_probability.nii.gz").is_file()

    redo = predict_datalist(phantom.path, models["set_a"], out, FAST, "cpu", overwrite=True, ids=["case_000"])
    assert [r["status"] for r in redo] == ["predicted"]
    assert _voxels(out / "case_000.nii.gz").shape == nib.load(str(phantom.cases[0].image)).shape
    assert sorted(json.loads((out / PREDICTION_STATS_FILE).read_text())["cases"]) == ["case_000", "case_001"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_resolve_inputs_understands_files_folders_and_lists(phantom, tmp_path):
    images = [str(c.image) for c in phantom.cases]
    assert [i["id"] for i in resolve_inputs(phantom.path)] == ["case_000", "case_001"]
    assert resolve_inputs(phantom.path)[0]["label"] == str(phantom.cases[0].label)
    assert resolve_inputs(images[0]) == [{"id": "case_000", "image": images[0]}]
    assert [i["id"] for i in resolve_inputs(Path(images[0]).parent)] == ["case_000", "case_001"]
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"testing": [{"image": images[1]}], "training": [{"image": images[0]}]}))
    assert [i["id"] for i in resolve_inputs(datalist)] == ["case_001"]
    assert [i["id"] for i in resolve_inputs(datalist, datalist_key="training")] == ["case_000"]
    with pytest.raises(DatasetError, match="twice"):
        resolve_inputs([{"image": images[0]}, {"image": images[0]}])
    with pytest.raises(DatasetError, match="nope"):
        resolve_inputs(phantom.path, ids=["nope"])


# ---------------------------------------------------------------------------------------------
# bad input: clear errors before any work
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def bad_images(tmp_path) -> dict[str, Path]:
    corrupt = tmp_path / "in" / "corrupt.nii.gz"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\x1f\x8b this is no gzip stream")
    flat = save_nifti(np.zeros((32, 32), np.int16), np.eye(4), tmp_path / "in" / "flat.nii.gz")
    return {"corrupt": corrupt, "2d": flat, "missing": tmp_path / "in" / "missing.nii.gz"}


def test_predict_case_refuses_bad_input_before_any_work(phantom, models, bad_images, tmp_path):
    image = phantom.cases[0].image
    out = tmp_path / "out"
    with pytest.raises(ImageReadError, match="does not exist"):
        predict_case(bad_images["missing"], models["set_a"], out / "m.nii.gz", FAST, "cpu")
    with pytest.raises(ImageReadError, match=r"not valid gzip|corrupt|truncated"):
        predict_case(bad_images["corrupt"], models["set_a"], out / "m.nii.gz", FAST, "cpu")
    with pytest.raises(ImageReadError, match="2D"):
        predict_case(bad_images["2d"], models["set_a"], out / "m.nii.gz", FAST, "cpu")
    with pytest.raises(ConfigError, match="does not exist"):
        predict_case(image, tmp_path / "no_models", out / "m.nii.gz", FAST, "cpu")
    with pytest.raises(ConfigError, match="is the input file of case"):
        predict_case(image, models["set_a"], image, FAST, "cpu")
    with pytest.raises(ConfigError, match=r"\.nii"):
        predict_case(image, models["set_a"], out / "mask.png", FAST, "cpu")
    with pytest.raises(ConfigError, match="output path"):
        predict_case(image, models["set_a"], out / "m.nii.gz", FAST, "cpu", probability_path=out / "m.nii.gz")
    assert not out.exists()
    # The input was never touched.
    assert nib.load(str(image)).get_data_dtype() == np.int16


def test_predict_datalist_refuses_an_input_folder_as_output(phantom, models, bad_images, tmp_path):
    with pytest.raises(ConfigError, match="input folder"):
        predict_datalist(phantom.path, models["set_a"], phantom.cases[0].image.parent, FAST, "cpu")
    with pytest.raises(ConfigError, match="input folder"):
        predict_datalist(phantom.path, models["set_a"], phantom.cases[0].label.parent, FAST, "cpu", round_dsc=True)
    listing = tmp_path / "list.json"
    items = [{"image": str(phantom.cases[0].image)}, {"image": str(bad_images["2d"])}]
    listing.write_text(json.dumps({"testing": items}))
    with pytest.raises(ImageReadError, match="2D"):
        predict_datalist(listing, models["set_a"], tmp_path / "out", FAST, "cpu")
    assert not (tmp_path / "out").exists()  # the good first case was not predicted either


def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(phantom, models, bad_images, tmp_path, capsys):
    wide = save_model(tmp_path / "wide" / "plane_Z" / "model.pt", "Z", preset="small", stored_preset="tiny")
    image = str(phantom.cases[0].image)
    out = tmp_path / "out"
    cases = [
        (["--models", str(tmp_path / "nowhere"), "--input", image], "does not exist"),
        (["--model", f"Z={tmp_path / 'gone.pt'}", "--input", image], "gone.pt"),
        (["--models", str(wide.parents[1]), "--input", image], "does not fit the network"),
        (["--input", image], "no plane model given"),
        (["--models", str(models["set_a"]), "--input", str(bad_images["corrupt"])], "corrupt.nii.gz"),
        (["--models", str(models["set_a"]), "--input", str(bad_images["2d"])], "2D"),
        (["--models", str(models["set_a"]), "--input", str(bad_images["missing"])], "does not exist"),
    ]
    for args, message in cases:
        assert main(["predict", *args, "--out", str(out), "--device", "cpu"]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.startswith("atso-med predict: error:"), (args, err)
    assert main(["predict", "--models", str(models["set_a"]), "--input", image, "--out", str(Path(image).parent)]) == 2
    assert "input folder" in capsys.readouterr().err
    assert not out.exists()


def _list_with_a_bad_dicom_case(phantom, tmp_path) -> Path:
    """good NIfTI case, a DICOM series with a missing slice (uneven spacing), another good case."""
    uneven = tmp_path / "dicom" / "uneven"
    write_series(uneven, axial([0.0, 2.0, 4.0, 8.0, 10.0]))
    items = [
        {"id": "first", "image": str(phantom.cases[0].image)},
        {"id": "gapped", "image": str(uneven)},
        {"id": "last", "image": str(phantom.cases[1].image)},
    ]
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"testing": items}))
    return listing


def test_a_bad_case_names_itself_and_the_others_are_still_predicted(phantom, models, tmp_path, capsys):
    listing = _list_with_a_bad_dicom_case(phantom, tmp_path)
    uneven = tmp_path / "dicom" / "uneven"
    out = tmp_path / "out"
    with pytest.raises(CaseFailuresError) as error:
        predict_datalist(listing, models["set_a"], out, FAST, "cpu")
    assert error.value.failures[0][0] == "gapped" and len(error.value.failures) == 1
    message = str(error.value)
    assert (
        message.startswith("1 of 3 case(s) failed")
        and f"gapped: {uneven}" in message
        and "uneven slice spacing" in message
    )
    assert [r["status"] for r in error.value.results] == ["predicted", "failed", "predicted"]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["first.nii.gz", "last.nii.gz"]

    # The command line: the good cases are printed, the failure names the case and folder, exit 1.
    predict = ["predict", "--models", str(models["set_a"]), "--input", str(listing), "--rounds", "0", "--device", "cpu"]
    code = main([*predict, "--out", str(tmp_path / "cli")])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "2 case(s) predicted, 0 skipped (output exists), 1 failed" in captured.out
    assert f"case 'gapped' failed: {uneven}" in captured.err and "uneven slice spacing" in captured.err

    # --fail-fast stops at the bad case: the last one is never predicted.
    code = main([*predict, "--out", str(tmp_path / "ff"), "--fail-fast"])
    assert code == 2
    assert f"error: case 'gapped': {uneven}" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "ff").glob("*.nii.gz")) == ["first.nii.gz"]


def test_every_unusable_input_is_listed_with_its_case_before_any_work(phantom, models, bad_images, tmp_path):
    listing = tmp_path / "list.json"
    items = [
        {"id": "good", "image": str(phantom.cases[0].image)},
        {"id": "flat", "image": str(bad_images["2d"])},
        {"id": "gone", "image": str(bad_images["missing"])},
    ]
    listing.write_text(json.dumps({"testing": items}))
    with pytest.raises(ImageReadError, match="2 input") as error:
        predict_datalist(listing, models["set_a"], tmp_path / "out", FAST, "cpu")
    assert "flat: " in str(error.value) and "gone: " in str(error.value) and "good" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_an_image_whose_qform_and_sform_disagree_is_flagged_and_its_prediction_keeps_both(phantom, models, tmp_path):
    from atso_med.data import verify_dataset

    source = nib.load(str(phantom.cases[0].image))
    qform = source.affine.copy()
    qform[:3, 3] += [20.0, 0.0, 0.0]  # 20 mm to the side
    image = nib.Nifti1Image(np.asarray(source.dataobj), source.affine)
    image.set_sform(source.affine, code=1)
    image.set_qform(qform, code=1)
    path = tmp_path / "in" / "both.nii.gz"
    path.parent.mkdir()
    nib.save(image, str(path))
    (tmp_path / "in" / "dataset.json").write_text(
        json.dumps(
            {
                "name": "q",
                "labels": {"0": "background", "1": "pancreas"},
                "cases": [{"id": "both", "image": "both.nii.gz"}],
            }
        )
    )
    row = verify_dataset(tmp_path / "in").rows[0]
    assert row.ok and any(
        "qform and sform disagree (corners up to 20.0 mm apart" in w and "the sform is used" in w for w in row.warnings
    )

    out = tmp_path / "out" / "both.nii.gz"
    predict_case(path, models["set_a"], out, FAST, "cpu")
    header = nib.load(str(out)).header
    assert np.allclose(header.get_sform(), source.affine) and np.allclose(header.get_qform(), qform)
    # An ordinary input's prediction has qform = sform.
    predict_case(phantom.cases[0].image, models["set_a"], tmp_path / "out" / "plain.nii.gz", FAST, "cpu")
    plain = nib.load(str(tmp_path / "out" / "plain.nii.gz")).header
    assert np.allclose(plain.get_qform(), plain.get_sform())


# ---------------------------------------------------------------------------------------------
# entry points: CLI, ConfigWorkflow, python -m monai.bundle run
# ---------------------------------------------------------------------------------------------


def test_cli_predict_writes_masks_and_evaluate_reads_them(phantom, models, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "predict",
            "--models",
            str(models["set_a"]),
            "--input",
            str(phantom.path),
            "--ids",
            "case_001",
            "--out",
            str(out),
            "--rounds",
            "1",
            "--batch-size",
            "32",
            "--probability",
            "--seg-nrrd",
            "--round-dsc",
            "--device",
            "cpu",
            "--no-amp",
        ]
    )
    assert code == 0
    assert "1 case(s) predicted, 0 skipped" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {
        "case_001.nii.gz",
        "case_001_probability.nii.gz",
        "case_001.seg.nrrd",
        PREDICTION_STATS_FILE,
    }
    stats = json.loads((out / PREDICTION_STATS_FILE).read_text())["cases"]["case_001"]
    assert "dsc" in stats["rounds"][0] and stats["planes"] == ["Z"]
    assert main(["evaluate", "--predictions", str(out), "--dataset", str(phantom.path), "--ids", "case_001"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_case"][0]["dsc"] == pytest.approx(stats["dsc"])
    assert summary["per_round"][0]["mean_dsc"] == pytest.approx(stats["rounds"][0]["dsc"])


def test_inference_bundle_has_every_infer_property_and_reads_string_flags(phantom, models, tmp_path):
    workflow = ConfigWorkflow(
        config_file=INFERENCE,
        meta_file=META,
        logging_file=False,
        workflow_type="infer",
        input=str(phantom.path),
        model_dir=str(models["set_xyz"]),
        output_dir=str(tmp_path / "out"),
        amp="false",
        save_probability="no",
        device="cpu",
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    config = workflow.parser.get_parsed_content("inference_config")
    assert config.amp is False
    assert workflow.evaluator.save_probability is False
    assert workflow.network_def.width == build_rstn("tiny").width  # the models' preset, on the meta device
    assert sorted(workflow.evaluator.inferer.model_sets[0]) == ["X", "Y", "Z"]
    assert not (tmp_path / "out").exists()  # checking the bundle predicts nothing


def test_inference_bundle_runs_with_monai_bundle_run(phantom, models, tmp_path):
    out = tmp_path / "bundle"
    command = bundle_argv(
        "run",
        INFERENCE,
        input=phantom.cases[0].image,
        model_dir=models["set_a"],
        output_dir=out,
        rounds=0,
        batch_size=32,
        amp=False,
        device="cpu",
        save_probability=True,
        long_axis_spacing=1.5,
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    mask = nib.load(str(out / "case_000.nii.gz"))
    source = nib.load(str(phantom.cases[0].image))
    assert mask.shape == source.shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-6)
    stats = json.loads((out / PREDICTION_STATS_FILE).read_text())["cases"]["case_000"]
    assert stats["long_axis_spacing"]["target_mm"] == 1.5
    assert (out / "case_000_probability.nii.gz").is_file()
