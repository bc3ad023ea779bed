"""Files: JSON inputs refused with the package's error naming the file; atomic writes with the permissions a plain ``open()`` would give."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from atso_med.atso.analysis import ExperimentResults
from atso_med.atso.journal import Journal
from atso_med.atso.layout import CONFIG_FILE, JOURNAL_FILE, REPORT_FILE, REPORTS_DIR
from atso_med.data import Dataset
from atso_med.data.datalist import datalist_items, read_datalist
from atso_med.data.splits import Splits
from atso_med.errors import AtsoMedError, ConfigError, DatasetError, SplitError
from atso_med.files import atomic_write, read_json, read_json_or_none, write_text_atomic
from atso_med.metrics.prediction_stats import read_prediction_stats


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_written_file_takes_the_umask_mode_not_mkstemps_0600(tmp_path, umask_027):
    path = write_text_atomic("x\n", tmp_path / "sub" / "report.json")
    assert path.read_text() == "x\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert os.listdir(path.parent) == ["report.json"]


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "case.nii.gz"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz") and tmp != target
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["case.nii.gz"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b'{"training": [', "is not valid JSON"), (b"\xff\xfe{}", "is not valid JSON"), (None, "does not exist")],
    ids=["truncated", "not-utf8", "missing"],
)
def test_read_json_raises_the_given_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "input.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SplitError, match="^" + re.escape(f"splits file {path} {problem}")):
        read_json(path, "splits file", SplitError)
    assert read_json_or_none(path) is None


def test_read_json_says_an_unreadable_file_cannot_be_read(tmp_path, monkeypatch):
    path = tmp_path / "splits.json"
    path.write_text("{}")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(SplitError, match=re.escape(f"splits file {path} cannot be read: [Errno 13] Permission denied")):
        read_json(path, "splits file", SplitError)


@pytest.mark.parametrize(
    ("read", "error"),
    [
        (read_datalist, ConfigError),
        (datalist_items, ConfigError),
        (Dataset.load, DatasetError),
        (Splits.load, SplitError),
        (read_prediction_stats, ConfigError),
    ],
    ids=["datalist", "datalist-items", "dataset", "splits", "prediction-stats"],
)
def test_every_json_input_refuses_a_truncated_file_with_its_own_error(tmp_path, read, error):
    path = tmp_path / "truncated.json"
    path.write_text('{"cases": [')
    with pytest.raises(error, match=re.escape(f"{path} is not valid JSON")) as info:
        read(path)
    assert isinstance(info.value, AtsoMedError)


def test_a_corrupt_journal_or_report_is_refused_naming_it(tmp_path):
    journal = tmp_path / JOURNAL_FILE
    journal.write_text("{")
    with pytest.raises(ConfigError, match=re.escape(f"journal {journal} is not valid JSON")):
        Journal(journal, plan_digest="x")
    report = tmp_path / REPORTS_DIR / REPORT_FILE
    report.parent.mkdir()
    report.write_text("{")
    (tmp_path / CONFIG_FILE).write_text("output_dir: .\n")
    with pytest.raises(ConfigError, match=re.escape(f"experiment report {report} is not valid JSON")):
        ExperimentResults(tmp_path)


@pytest.mark.parametrize("training", ['"case.nii.gz"', '["case.nii.gz"]', '{"image": "case.nii.gz"}'])
def test_a_data_list_whose_cases_are_not_objects_is_refused(tmp_path, training):
    path = tmp_path / "datalist.json"
    path.write_text(f'{{"training": {training}}}')
    for read in (read_datalist, lambda p: datalist_items(p, "training")):
        with pytest.raises(ConfigError, match=re.escape(f"data list {path}: 'training' must be a list of cases")):
            read(path)
