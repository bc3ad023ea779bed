"""Every subcommand answers a bad option value with a usage-style message and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from atso_med.cli.main import main

# {file}: an existing file that is not what the option wants; {dir}: an existing folder;
# {missing}: a path that does not exist.
BAD = {
    "phantom": [
        ["{new}", "--cases", "0"],
        ["{new}", "--cases", "ten"],
        ["{new}", "--seed", "-5"],
        ["{new}", "--shape", "64", "64", "0"],
        ["{new}", "--spacing", "1", "1", "-1"],
        ["{new}", "--spacing", "1", "1", "nan"],
        ["{new}", "--labels", "kidneys"],
        ["{file}"],
    ],
    "split": [
        ["{missing}", "--labeled", "1"],
        ["{dir}", "--labeled", "1", "--seed", "-5"],
        ["{dir}", "--labeled", "1", "--folds", "0"],
        ["{dir}", "--labeled", "1", "--folds", "two"],
        ["{dir}", "--labeled", "1", "--protocol", "nih4fold", "--test-fold", "4"],
        ["{dir}", "--labeled", "abc"],
        ["{dir}", "--labeled", "-1"],
        ["{dir}"],
    ],
    "verify": [["{missing}"], ["{dir}", "--splits", "{missing}"], ["{dir}", "--splits", "{dir}"]],
    "predict": [
        ["--input", "{missing}", "--out", "{new}", "--models", "{dir}"],
        ["--input", "{file}", "--out", "{new}", "--models", "{dir}", "--rounds", "-1"],
        ["--input", "{file}", "--out", "{new}", "--models", "{dir}", "--margin", "-2"],
        ["--input", "{file}", "--out", "{new}", "--models", "{dir}", "--batch-size", "0"],
        ["--input", "{file}", "--out", "{new}", "--models", "{dir}", "--stop-dsc", "1.5"],
        ["--input", "{file}", "--out", "{new}", "--models", "{dir}", "--long-axis-spacing", "0"],
        ["--input", "{file}", "--out", "{new}", "--models", "{missing}"],
        ["--input", "{file}", "--out", "{new}", "--model", "Q=model.pt"],
        ["--input", "{file}", "--out", "{new}"],
    ],
    "evaluate": [
        ["--predictions", "{missing}", "--dataset", "{dir}"],
        ["--predictions", "{file}", "--dataset", "{dir}"],
        ["--predictions", "{dir}", "--datalist", "{dir}"],
        ["--predictions", "{dir}", "--dataset", "{missing}"],
        ["--predictions", "{dir}", "--dataset", "{dir}", "--foreground", "x"],
        ["--predictions", "{dir}", "--dataset", "{dir}", "--stats", "{missing}"],
    ],
    "train": [
        ["{dir}", "--splits", "{file}", "--out", "{new}", "--iterations", "0"],
        ["{dir}", "--splits", "{file}", "--out", "{new}", "--batch-size", "-1"],
        ["{dir}", "--splits", "{file}", "--out", "{new}", "--workers", "-1"],
        ["{dir}", "--splits", "{file}", "--out", "{new}", "--seed", "x"],
        ["{dir}", "--splits", "{file}", "--out", "{new}", "--val-interval", "0"],
        ["{dir}", "--splits", "{file}", "--out", "{new}", "--init-weights", "{missing}"],
        ["{dir}", "--splits", "{file}", "--out", "{new}", "--class-activation", "tanh"],
        ["{dir}", "--splits", "{missing}", "--out", "{new}"],
        ["{missing}", "--splits", "{file}", "--out", "{new}"],
    ],
    "run": [["--config", "{missing}"], ["--config", "{dir}"], ["--config", "{file}", "--stop-after", "0"]],
}
CASES = [(command, args) for command, variants in BAD.items() for args in variants]


def exit_status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's own errors
        return stop.code


@pytest.mark.parametrize("command, args", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_bad_value_gives_a_message_and_exit_status_2(command, args, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("not what any option wants\n")
    (tmp_path / "folder").mkdir()
    places = {
        "file": str(tmp_path / "a.txt"),
        "dir": str(tmp_path / "folder"),
        "missing": str(tmp_path / "missing"),
        "new": str(tmp_path / "new"),
    }
    assert exit_status([command, *(a.format(**places) for a in args)]) == 2
    error = capsys.readouterr().err
    assert f"atso-med {command}: error:" in error or "error:" in error.splitlines()[-1]
    assert "Traceback" not in error
    assert not (tmp_path / "new").exists()  # refused before any work


def test_the_installed_command_prints_usage_for_a_negative_seed(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "atso_med", "split", str(tmp_path), "--labeled", "1", "--seed", "-5"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "usage: atso-med split" in done.stderr and "--seed: must be at least 0, got -5" in done.stderr
    assert "Traceback" not in done.stderr
