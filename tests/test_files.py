"""Atomic writes: all or nothing, and the permissions a plain ``open()`` would give."""

from __future__ import annotations

import os

import pytest

from atso_med.files import atomic_write, write_text_atomic


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
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz") and tmp != target
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["case.nii.gz"]
