"""No silent wrong answer: what every command refuses, before any work, with one line that names the input.

Issue 22's four wrong behaviours, each through the real path (the command line or the bundle run):
a label value that the data set does not declare, the same image under two case ids in two roles, a
misspelled ``--set`` key, and a finished training replaced without notice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from atso_med.cli.main import main
from atso_med.data.nifti import save_nifti


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def dataset(phantom_dataset, tmp_path) -> Path:
    """A copy of a 6-case phantom data set, free to change."""
    source = phantom_dataset(cases=6, seed=1)
    shutil.copytree(source.parent, tmp_path / "data")
    return tmp_path / "data" / source.name


def set_organ_value(dataset: Path, case_id: str, value: int) -> Path:
    case = next(c for c in json.loads(dataset.read_text())["cases"] if c["id"] == case_id)
    path = dataset.parent / case["label"]
    label = nib.load(str(path))
    values = np.asarray(label.dataobj).astype(np.uint8)
    values[values != 0] = value
    save_nifti(values, label.affine, path, dtype=np.uint8)
    return path


def write_splits(dataset: Path, out: Path, labeled: list[str], test: list[str]) -> Path:
    ids = [c["id"] for c in json.loads(dataset.read_text())["cases"]]
    reference = [i for i in ids if i not in labeled and i not in test]
    half = len(reference) // 2
    out.write_text(json.dumps({"labeled": labeled, "reference": [reference[:half], reference[half:]], "test": test}))
    return out


def test_train_refuses_a_label_value_that_verify_refuses(dataset, tmp_path, capsys):
    set_organ_value(dataset, "case_001", 2)
    splits = write_splits(dataset, tmp_path / "splits.json", ["case_000", "case_001"], ["case_005"])
    assert main(["verify", str(dataset)]) == 1
    capsys.readouterr()
    before = digests(dataset.parent)
    out = tmp_path / "run"
    command = ["train", str(dataset), "--splits", str(splits), "--out", str(out), "--iterations", "2"]
    assert main([*command, "--device", "cpu", "--workers", "0"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "case_001" in error[0] and "not among the declared classes {0, 1}: 2" in error[0]
    assert not (out / "model.pt").exists()
    assert digests(dataset.parent) == before


def test_a_data_list_declares_its_classes_and_one_without_them_is_binary(dataset, tmp_path):
    from atso_med.data import datalist_classes
    from atso_med.errors import AtsoMedError
    from atso_med.transforms import CTPreprocessingd

    label = set_organ_value(dataset, "case_001", 2)
    image = dataset.parent / json.loads(dataset.read_text())["cases"][1]["image"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"training": [{"image": str(image), "label": str(label)}]}))
    assert datalist_classes(bare) == {0: "background", 1: "organ"}
    assert set(datalist_classes(bare, foreground=[2])) == {0, 2}
    declared = tmp_path / "declared.json"
    declared.write_text(json.dumps({"labels": {"0": "background", "2": "pancreas"}, "training": []}))
    assert datalist_classes(declared) == {0: "background", 2: "pancreas"}
    item = {"image": str(image), "label": str(label)}
    with pytest.raises(AtsoMedError, match=r"not among the declared classes \{0, 1\}: 2"):
        CTPreprocessingd(classes=datalist_classes(bare))(item)
    organ = CTPreprocessingd(classes=datalist_classes(declared), foreground=[2])(item)["label"]
    assert organ.sum() > 0
    # an experiment's pseudo label is an organ mask (0/1), whatever the data set's foreground value
    mask = tmp_path / "pseudo.nii.gz"
    source = nib.load(str(label))
    save_nifti((np.asarray(source.dataobj) != 0).astype(np.uint8), source.affine, mask, dtype=np.uint8)
    pseudo = CTPreprocessingd(classes=datalist_classes(declared), foreground=[2])(
        {"image": str(image), "label": str(mask), "source": "pseudo"}
    )["label"]
    assert np.array_equal(pseudo, organ)


def add_copies(dataset: Path) -> None:
    """case_000_copy names case_000's file; case_001b is a byte-identical copy of case_001 under another name."""
    content = json.loads(dataset.read_text())
    cases = {c["id"]: c for c in content["cases"]}
    copy = dict(cases["case_001"], id="case_001b", image="imagesTr/case_001b.nii.gz")
    shutil.copyfile(dataset.parent / cases["case_001"]["image"], dataset.parent / copy["image"])
    content["cases"] += [dict(cases["case_000"], id="case_000_copy"), copy]
    dataset.write_text(json.dumps(content))


def test_copies_of_one_image_in_two_roles_are_refused_by_verify_and_train(dataset, tmp_path, capsys):
    add_copies(dataset)
    splits = write_splits(dataset, tmp_path / "splits.json", ["case_000_copy", "case_001"], ["case_000", "case_001b"])
    assert main(["verify", str(dataset)]) == 0  # copies in a data set are allowed, and named
    out = capsys.readouterr().out
    assert "same image file as case_000_copy" in out and "same voxels as case_001b" in out
    assert main(["verify", str(dataset), "--splits", str(splits)]) == 1
    out = capsys.readouterr().out
    assert "'case_000' (test" in out and "'case_000_copy' (labeled" in out and "the same image file" in out
    assert "'case_001' (labeled" in out and "'case_001b' (test" in out and "equal voxels" in out
    before = digests(dataset.parent)
    train = ["train", str(dataset), "--splits", str(splits), "--out", str(tmp_path / "run"), "--iterations", "2"]
    assert main(train) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "case_001b" in error[0] and "two roles" in error[0]
    assert not (tmp_path / "run").exists() and digests(dataset.parent) == before


@pytest.mark.parametrize("seed", range(6))
def test_split_keeps_copies_of_one_image_in_one_role(dataset, tmp_path, seed, capsys):
    add_copies(dataset)
    out = tmp_path / "splits.json"
    assert main(["split", str(dataset), "--labeled", "2", "--test", "2", "--seed", str(seed), "--out", str(out)]) == 0
    assert "copies of one image, kept in one role: case_000, case_000_copy" in capsys.readouterr().out
    from atso_med.data.splits import Splits

    roles = Splits.load(out).roles()
    assert roles["case_000"] == roles["case_000_copy"] and roles["case_001"] == roles["case_001b"]
    assert main(["verify", str(dataset), "--splits", str(out)]) == 0


def test_a_data_set_without_copies_is_split_as_before(phantom_dataset):
    from atso_med.data import Dataset
    from atso_med.data.split_protocols import make_splits

    dataset = Dataset.load(phantom_dataset(cases=12, seed=3))
    # the draw of seed 5 before copies were kept together (benchmarks stay comparable across versions)
    assert make_splits(dataset, 2, seed=5).to_dict() | {"meta": None} == {
        "labeled": ["case_002", "case_003"],
        "reference": [["case_000", "case_005", "case_007", "case_010"], ["case_004", "case_006", "case_008"]],
        "test": ["case_001", "case_009", "case_011"],
        "validation": [],
        "seed": 5,
        "protocol": "random",
        "meta": None,
    }


def test_a_misspelled_set_key_or_bundle_override_is_refused_before_any_work(dataset, tmp_path, capsys):
    from atso_med.engines.bundle_runner import config_files, run_workflow
    from atso_med.errors import ConfigError

    splits = write_splits(dataset, tmp_path / "splits.json", ["case_000", "case_001"], ["case_005"])
    out = tmp_path / "run"
    command = ["train", str(dataset), "--splits", str(splits), "--out", str(out), "--iterations", "2"]
    assert main([*command, "--set", "lr_fien=0.01"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "unknown bundle key 'lr_fien'" in error[0] and "did you mean 'lr_fine'" in error[0]
    assert not (out / "model.pt").exists() and not list(out.glob("checkpoint*"))
    with pytest.raises(ConfigError, match="unknown bundle key 'iteration' in the overrides"):
        run_workflow(config_files("train"), {"datalist": str(tmp_path / "x.json"), "iteration": 3})
    overlay = tmp_path / "settings.json"
    overlay.write_text(json.dumps({"plane": "Z", "margin_fixd": 4}))
    with pytest.raises(ConfigError, match=r"unknown bundle key 'margin_fixd' in settings\.json"):
        run_workflow([*config_files("train"), str(overlay)], {})


def test_a_finished_training_is_a_result_that_no_rerun_replaces_unasked(dataset, tmp_path, capsys):
    splits = write_splits(dataset, tmp_path / "splits.json", ["case_000", "case_001"], ["case_005"])
    out = tmp_path / "m0" / "plane_Z"
    base = ["train", str(dataset), "--splits", str(splits), "--out", str(out), "--iterations", "2", "--workers", "0"]
    base += ["--device", "cpu", "--preset", "unet_tiny"]
    assert main(["train", str(dataset), "--splits", str(splits), "--out", str(tmp_path / "new"), "--continue"]) == 2
    assert "nothing to continue in" in capsys.readouterr().err
    assert main(base) == 0
    capsys.readouterr()
    finished = digests(out.parent)
    assert main([*base, "--continue", "--preset", "unet_small"]) == 0
    assert "holds a finished training (model.pt); nothing to continue" in capsys.readouterr().out
    for rerun in (base, [*base, "--preset", "unet_small"]):
        assert main(rerun) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "holds a finished training" in error[0] and "--overwrite" in error[0]
    assert digests(out.parent) == finished
    assert main([*base, "--preset", "unet_small", "--overwrite"]) == 0
    assert digests(out.parent)["plane_Z/model.pt"] != finished["plane_Z/model.pt"]


def test_train_refuses_an_output_folder_inside_the_data_set_or_one_it_cannot_write(dataset, tmp_path, capsys):
    splits = write_splits(dataset, tmp_path / "splits.json", ["case_000", "case_001"], ["case_005"])
    before = digests(dataset.parent)
    for out in (dataset.parent, dataset.parent / "runs"):
        assert main(["train", str(dataset), "--splits", str(splits), "--out", str(out)]) == 2
        assert "is inside the data set folder" in capsys.readouterr().err
    assert digests(dataset.parent) == before and not (dataset.parent / "runs").exists()
    not_a_folder = tmp_path / "notes.txt"  # unwritable for every user, root included
    not_a_folder.write_text("notes")
    out = not_a_folder / "run"
    assert main(["train", str(dataset), "--splits", str(splits), "--out", str(out), "--iterations", "1"]) == 2
    assert "cannot be written" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# The general rule: every command, a corpus of bad inputs, a message first, unchanged inputs.


def huge_header(dataset: Path, case_id: str) -> Path:
    """A NIfTI whose header announces 5000^3 voxels that the file does not hold."""
    import struct

    case = next(c for c in json.loads(dataset.read_text())["cases"] if c["id"] == case_id)
    path = dataset.parent / case["image"]
    image = nib.load(str(path))
    raw = bytearray(image.header.binaryblock) + bytes(4) + np.asarray(image.dataobj).tobytes()
    struct.pack_into("<4h", raw, 40, 3, 5000, 5000, 5000)
    damaged = path.with_name("huge.nii")
    damaged.write_bytes(raw)
    content = json.loads(dataset.read_text())
    for entry in content["cases"]:
        if entry["id"] == case_id:
            entry["image"] = str(damaged.relative_to(dataset.parent))
    dataset.write_text(json.dumps(content))
    return damaged


def predicted_255(dataset: Path, folder: Path) -> Path:
    """A prediction folder whose mask of case_005 uses 255 for the organ (outside the classes {0, 1})."""
    case = next(c for c in json.loads(dataset.read_text())["cases"] if c["id"] == "case_005")
    label = nib.load(str(dataset.parent / case["label"]))
    folder.mkdir()
    values = (np.asarray(label.dataobj) != 0).astype(np.uint8) * 255
    save_nifti(values, label.affine, folder / "case_005.nii.gz", dtype=np.uint8)
    return folder


@pytest.fixture(scope="module")
def tiny_models(phantom_dataset, tmp_path_factory) -> Path:
    source = phantom_dataset(cases=6, seed=1)
    root = tmp_path_factory.mktemp("tiny_models")
    splits = write_splits(source, root / "splits.json", ["case_000", "case_001"], ["case_005"])
    out = root / "models" / "plane_Z"
    command = ["train", str(source), "--splits", str(splits), "--out", str(out), "--iterations", "1"]
    assert main([*command, "--preset", "unet_tiny", "--workers", "0", "--device", "cpu"]) == 0
    return out.parent


CORPUS = [
    # (what is wrong, setup(dataset, tmp) -> extra places, command, exit status, text of the one line)
    ("undeclared label value", "label2", ["verify", "{data}"], 1, "not among the declared classes {0, 1}: 2"),
    (
        "undeclared label value",
        "label2",
        ["evaluate", "--predictions", "{good}", "--dataset", "{data}"],
        2,
        "{0, 1}: 2",
    ),
    ("undeclared label value", "label2", ["run", "--config", "{experiment}"], 2, "not among the declared classes"),
    ("copies in two roles", "copies", ["verify", "{data}", "--splits", "{splits}"], 1, "in two roles"),
    ("copies in two roles", "copies", ["train", "{data}", "--splits", "{splits}", "--out", "{out}"], 2, "in two roles"),
    ("copies in two roles", "copies", ["run", "--config", "{experiment}"], 2, "in two roles"),
    ("implausible header", "huge", ["verify", "{data}"], 1, "announces 125,000,000,000 voxels"),
    (
        "implausible header",
        "huge",
        ["predict", "--models", "{models}", "--input", "{huge}", "--out", "{out}"],
        2,
        "announces",
    ),
    (
        "prediction outside the classes",
        "255",
        ["evaluate", "--predictions", "{bad}", "--dataset", "{data}", "--ids", "case_005"],
        2,
        "prediction values not among the declared classes {0, 1}: 255",
    ),
    (
        "output folder is a file",
        "",
        ["predict", "--models", "{models}", "--input", "{data}", "--out", "{file}/out"],
        2,
        "cannot be written",
    ),
    (
        "output inside the data set",
        "",
        ["train", "{data}", "--splits", "{splits}", "--out", "{inside}"],
        2,
        "inside the data set folder",
    ),
    (
        "output inside the data set",
        "",
        ["predict", "--models", "{models}", "--input", "{data}", "--out", "{inside}"],
        2,
        "inside the data set folder",
    ),
    ("output inside the data set", "", ["run", "--config", "{inside_experiment}"], 2, "inside the data set folder"),
    (
        "misspelled --set key",
        "",
        ["train", "{data}", "--splits", "{splits}", "--out", "{out}", "--set", "bach_size=2"],
        2,
        "did you mean 'batch_size'",
    ),
]


@pytest.mark.parametrize("what, setup, command, status, text", CORPUS, ids=[f"{c[0]}: {c[2][0]}" for c in CORPUS])
def test_every_command_refuses_bad_input_with_its_message_first_and_changes_no_input(
    dataset, tiny_models, tmp_path, capsys, what, setup, command, status, text
):
    places = {"data": str(dataset), "models": str(tiny_models), "out": str(tmp_path / "out")}
    places["inside"] = str(dataset.parent / "runs")
    places["file"] = str(tmp_path / "notes.txt")
    (tmp_path / "notes.txt").write_text("notes")
    labeled, test = ["case_000", "case_001"], ["case_005"]
    if setup == "label2":
        set_organ_value(dataset, "case_001", 2)
    elif setup == "copies":
        add_copies(dataset)
        labeled, test = ["case_000_copy", "case_001"], ["case_000", "case_005"]
    elif setup == "huge":
        places["huge"] = str(huge_header(dataset, "case_005"))
    elif setup == "255":
        places["bad"] = str(predicted_255(dataset, tmp_path / "bad"))
    splits = write_splits(dataset, tmp_path / "splits.json", labeled, test)
    places["splits"] = str(splits)
    good = tmp_path / "good"
    good.mkdir()
    for case in json.loads(dataset.read_text())["cases"]:
        if case.get("label"):
            shutil.copyfile(dataset.parent / case["label"], good / f"{case['id']}.nii.gz")
    places["good"] = str(good)
    experiment = {
        "output_dir": str(tmp_path / "experiment"),
        "dataset": str(dataset),
        "splits": str(splits),
        "generations": 1,
        "planes": ["Z"],
        "training": {"preset": "unet_tiny", "iterations": 1, "num_workers": 0},
    }
    (tmp_path / "experiment.yaml").write_text(json.dumps(experiment))
    places["experiment"] = str(tmp_path / "experiment.yaml")
    (tmp_path / "inside.yaml").write_text(json.dumps({**experiment, "output_dir": places["inside"]}))
    places["inside_experiment"] = str(tmp_path / "inside.yaml")
    before = digests(dataset.parent)

    assert main([part.format(**places) for part in command]) == status
    captured = capsys.readouterr()
    if status == 2:  # the first line says which command refused; a list of problems may follow, one per line
        lines = captured.err.strip().splitlines()
        assert lines[0].startswith(f"atso-med {command[0]}: error: ") and text in captured.err, captured.err
    else:
        assert text in captured.out + captured.err
    assert "Traceback" not in captured.err
    assert digests(dataset.parent) == before
    assert not list((tmp_path / "out").glob("*.nii.gz")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("problem", ["missing data list", "undeclared label value", "misspelled key"])
def test_through_monai_bundle_run_the_first_line_is_our_message(dataset, tmp_path, problem):
    import subprocess

    from bundle_files import TRAIN, bundle_argv

    datalist = tmp_path / "datalist.json"
    if problem == "undeclared label value":
        label = set_organ_value(dataset, "case_001", 2)
        image = dataset.parent / json.loads(dataset.read_text())["cases"][1]["image"]
        datalist.write_text(json.dumps({"training": [{"image": str(image), "label": str(label)}]}))
    overrides = {"datalist": str(datalist), "output_dir": str(tmp_path / "run"), "iterations": 1, "num_workers": 0}
    if problem == "misspelled key":
        overrides["lr_fien"] = 0.1
    result = subprocess.run(
        bundle_argv("run", TRAIN, **overrides),
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    ours = [line for line in lines if line.startswith("atso-med: error:")]
    assert len(ours) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    expected = {"missing data list": "does not exist", "undeclared label value": "{0, 1}: 2"}
    assert expected.get(problem, "unknown bundle key 'lr_fien'") in ours[0]


def test_a_device_this_machine_lacks_is_refused_before_any_work(dataset, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    splits = write_splits(dataset, tmp_path / "splits.json", ["case_000", "case_001"], ["case_005"])
    out = tmp_path / "run"
    for device, message in (
        ("cuda:1", "has no CUDA device; use cpu"),
        ("tpu", "unknown device 'tpu'"),
        ("mps", "only cpu and cuda devices"),
    ):
        assert main(["train", str(dataset), "--splits", str(splits), "--out", str(out), "--device", device]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0]
        assert not out.exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert (
        main(["predict", "--models", str(tmp_path), "--input", str(dataset), "--out", str(out), "--device", "cuda:1"])
        == 2
    )
    assert "this machine has only cuda:0" in capsys.readouterr().err


def test_run_refuses_an_output_folder_inside_a_data_set_given_as_its_folder(dataset, tmp_path, capsys):
    experiment = {"output_dir": str(dataset.parent / "runs"), "dataset": str(dataset.parent), "generations": 1}
    (tmp_path / "experiment.yaml").write_text(json.dumps(experiment))
    before = digests(dataset.parent)
    assert main(["run", "--config", str(tmp_path / "experiment.yaml")]) == 2
    assert "inside the data set folder" in capsys.readouterr().err
    assert digests(dataset.parent) == before
