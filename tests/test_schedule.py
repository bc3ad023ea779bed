"""RSTN's stage schedule and the small config helpers of the training workflow."""

import json

import pytest

from atso_med.data import read_datalist
from atso_med.engines import StageSchedule
from atso_med.errors import ConfigError
from atso_med.flags import as_bool


def test_reference_schedule_stage_boundaries_and_halvings():
    schedule = StageSchedule(80000)
    assert schedule.boundaries == (10000, 40000)
    assert [schedule.mode_at(i) for i in (0, 9999, 10000, 39999, 40000, 79999)] == ["S", "S", "I", "I", "J", "J"]
    # the reference halves the learning rate at 50K, 60K and 70K
    assert [schedule.lr_factor_at(i) for i in (0, 39999, 40000, 49999, 50000, 60000, 70000, 79999)] == [
        1.0,
        1.0,
        1.0,
        1.0,
        0.5,
        0.25,
        0.125,
        0.125,
    ]


def test_custom_fractions_and_no_halving():
    schedule = StageSchedule(10, fractions=(0.0, 0.0, 1.0), j_halvings=0)
    assert {schedule.mode_at(i) for i in range(10)} == {"J"}
    assert {schedule.lr_factor_at(i) for i in range(10)} == {1.0}


@pytest.mark.parametrize(
    "kwargs",
    [{"iterations": 0}, {"iterations": 8, "fractions": (0.5, 0.5, 0.5)}, {"iterations": 8, "fractions": (1.0, 0.0)}],
)
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ConfigError):
        StageSchedule(**kwargs)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        (False, False),
        ("true", True),
        ("1", True),
        (True, True),
        (1, True),
    ],
)
def test_as_bool_reads_command_line_strings(value, expected):
    assert as_bool(value) is expected


def test_as_bool_refuses_garbage():
    with pytest.raises(ConfigError, match="true/false"):
        as_bool("maybe")


def test_read_datalist_resolves_paths_against_its_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "datalist.json"
    path.write_text(json.dumps({"training": [{"id": "a", "image": "img/a.nii.gz", "label": "lbl/a.nii.gz"}]}))
    (item,) = read_datalist(path)
    assert item["image"] == str(tmp_path / "sub" / "img" / "a.nii.gz")
    assert read_datalist(path, "validation", required=False) == []
    with pytest.raises(ConfigError, match="no 'validation' cases"):
        read_datalist(path, "validation")
    with pytest.raises(ConfigError, match="does not exist"):
        read_datalist(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="no data list given"):
        read_datalist("")
