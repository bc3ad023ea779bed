"""No command writes over its inputs: outputs that are an input, a folder or another kind of file are refused.

Every refusal happens before any work, names the output and the input, exits with status 2 and
leaves every file of the dataset byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from atso_med.cli.main import main


@pytest.fixture(scope="module")
def dataset(phantom_dataset) -> Path:
    return phantom_dataset(cases=6, seed=1)


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def first_image(dataset: Path) -> Path:
    entry = json.loads(dataset.read_text())["cases"][0]
    return dataset.parent / entry["image"]


@pytest.mark.parametrize(
    "command, message",
    [
        (["verify", "{data}", "--json", "{data}"], "is the dataset file"),
        (["verify", "{data}", "--json", "{image}"], "is the image of case"),
        (["verify", "{data}", "--json", "{folder}"], "is a folder"),
        (["split", "{data}", "--labeled", "1", "--out", "{data}", "--force"], "is the dataset file"),
        (["split", "{data}", "--labeled", "1", "--out", "{image}", "--force"], "is the image of case"),
        (["split", "{data}", "--labeled", "1", "--out", "{folder}", "--force"], "is a folder"),
    ],
)
def test_an_output_that_is_an_input_or_a_folder_is_refused_and_nothing_changes(
    dataset, tmp_path, capsys, command, message
):
    before = digests(dataset.parent)
    places = {"data": str(dataset), "image": str(first_image(dataset)), "folder": str(tmp_path)}
    assert main([part.format(**places) for part in command]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert digests(dataset.parent) == before
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_a_previous_report_but_never_another_file(dataset, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(["verify", str(dataset), "--json", str(report)]) == 0
    assert main(["verify", str(dataset), "--json", str(report)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["verify", str(dataset), "--json", str(report), "--force"]) == 0

    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}\n')
    for command in (
        ["verify", str(dataset), "--json", str(notes), "--force"],
        ["split", str(dataset), "--labeled", "1", "--out", str(notes), "--force"],
    ):
        assert main(command) == 2
        assert "--force overwrites only a previous" in capsys.readouterr().err
    assert notes.read_text() == '{"my": "notes"}\n'
    splits = tmp_path / "splits.json"
    assert main(["split", str(dataset), "--labeled", "1", "--test", "1", "--out", str(splits)]) == 0
    assert main(["split", str(dataset), "--labeled", "2", "--test", "1", "--out", str(splits), "--force"]) == 0
    assert len(json.loads(splits.read_text())["labeled"]) == 2


def test_train_never_replaces_its_splits_or_init_weights_with_its_own_outputs(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    splits = out / "datalist.json"  # a splits file that happens to carry the run's data-list name
    assert main(["split", str(dataset), "--labeled", "2", "--test", "1", "--out", str(splits)]) == 0
    weights = out / "model.pt"
    weights.write_bytes(b"the user's weights")
    before = digests(out)
    base = ["train", str(dataset), "--out", str(out), "--iterations", "1", "--device", "cpu", "--workers", "0"]
    assert main([*base, "--splits", str(splits)]) == 2
    assert "datalist.json is the splits file" in capsys.readouterr().err
    other = tmp_path / "splits.json"
    other.write_bytes(splits.read_bytes())
    assert main([*base, "--splits", str(other)]) == 2  # now a foreign file: still never replaced
    assert (
        "datalist.json exists and is not a training data list; it replaces only a previous" in capsys.readouterr().err
    )
    assert digests(out) == before
    splits.unlink()
    assert main([*base, "--splits", str(other), "--init-weights", str(weights)]) == 2
    assert "model.pt is the init weights" in capsys.readouterr().err
    assert weights.read_bytes() == b"the user's weights" and sorted(p.name for p in out.iterdir()) == ["model.pt"]
