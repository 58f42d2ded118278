"""Atomic writes: nothing under the target name on failure, normal permissions on success."""

import os
import stat

import pytest

from spectracli.errors import SpectraError
from spectracli.fileio import atomic_open, write_text_atomic


def test_failure_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_atomically_with_umask_mode(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert list(tmp_path.iterdir()) == [target]


def test_missing_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(SpectraError, match="does not exist"):
        write_text_atomic(tmp_path / "nope" / "x.txt", "x")


def test_a_directory_as_target_is_a_one_line_error_and_leaves_no_temp(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(SpectraError, match=r"cannot write .*out: it is a directory"):
        write_text_atomic(tmp_path / "out", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
