"""Every command checks its output paths before the work starts (cli.common.check_outputs).

An ``-o`` in a missing directory, an ``-o`` that is a directory, or an unwritable directory
used to fail only at the end, after the whole analysis. Truth: the command exits 2 with one line
naming the flag, the library's work function is never called, and no file is left behind.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import spectracli.analyze as analyze_module
import spectracli.track as track_module
from spectracli.cli.app import app
from spectracli.errors import SpectraError
from spectracli.fileio import check_writable, check_writable_dir

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "sample_models" / "digits_mlp.safetensors")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A real saved analyze report of the shipped MLP (FARMS and bootstrap off: fast)."""
    path = tmp_path_factory.mktemp("saved") / "report.json"
    res = CliRunner().invoke(app, ["analyze", MLP, "--no-farms", "--ci-resamples", "0",
                                   "-f", "json", "-o", str(path)])
    assert res.exit_code == 0, res.output
    return path


def _commands(saved: Path, bad: str) -> list[list[str]]:
    digits = ROOT / "sample_models"
    return [
        ["analyze", MLP, "-f", "json", "-o", bad],
        ["report", str(saved), "-f", "json", "-o", bad],
        ["compare", str(saved), str(saved), "-f", "json", "-o", bad],
        ["gate", str(saved), "--max", "sigma_max=1e9", "--no-config", "-o", bad],
        ["gate", str(saved), "--max", "sigma_max=1e9", "--no-config", "--junit", bad],
        ["gate", str(saved), "--max", "sigma_max=1e9", "--no-config", "--sarif", bad],
        ["baseline", str(saved), "--no-config", "-o", bad],
        ["track", MLP, MLP, "--no-cache", "-f", "json", "-o", bad],
        ["hessian", "--model", f"{digits / 'digits.py'}:build_mlp", "--data",
         str(digits / "digits.npz"), "--top-k", "1", "-f", "json", "-o", bad],
        ["hessian", "--model", f"{digits / 'digits.py'}:build_mlp", "--data",
         str(digits / "digits.npz"), "--top-k", "1", "--save-eigenvectors",
         bad.replace(".json", ".safetensors")],
    ]


@pytest.fixture
def no_work(monkeypatch):
    """The work functions of analyze and track fail the test if they are ever reached."""
    def refuse(*_a, **_k):
        raise AssertionError("the analysis ran before the output path was checked")

    monkeypatch.setattr(analyze_module, "analyze_checkpoint", refuse)
    monkeypatch.setattr(track_module, "track_run", refuse)


@pytest.mark.parametrize("case", ["missing_dir", "is_dir"])
def test_every_output_flag_is_checked_before_the_work(tmp_path, saved, no_work, case):
    (tmp_path / "adir.json").mkdir()
    bad = {"missing_dir": str(tmp_path / "nowhere" / "out.json"),
           "is_dir": str(tmp_path / "adir.json")}[case]
    for argv in _commands(saved, bad):
        if case == "is_dir" and "--save-eigenvectors" in argv:
            continue  # its name must end in .safetensors: the directory case is the same code
        before = sorted(p.name for p in tmp_path.iterdir())
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 2, (argv, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.output, (argv, res.output)
        flag = next(a for a in argv if a in ("-o", "--junit", "--sarif", "--save-eigenvectors"))
        flag = "--output" if flag == "-o" else flag
        assert lines[0].startswith(f"spectracli: error: {flag}: cannot write"), lines[0]
        assert ("does not exist" if case == "missing_dir" else "is a directory") in lines[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing left behind


def test_plot_directories_are_checked_before_the_work(tmp_path, saved, no_work):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (["analyze", MLP, "--plots", str(afile / "plots")],
                 ["plot", str(saved), "--out", str(afile)]):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 2, res.output
        assert "exists and is not a directory" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0,
                    reason="root (and Windows) writes into a read-only directory anyway")
def test_an_unwritable_directory_is_refused_before_the_work(tmp_path, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = CliRunner().invoke(app, ["analyze", MLP, "-f", "json", "-o", str(ro / "r.json")])
    finally:
        ro.chmod(0o755)
    assert res.exit_code == 2 and "--output: cannot write" in res.stderr, res.output
    assert list(ro.iterdir()) == []


def test_check_writable_sees_what_the_os_refuses_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    check_writable(target)
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    target.write_text("old")
    check_writable(target)
    assert target.read_text() == "old"  # an existing output is untouched until the real write
    check_writable("bare-name.json")  # the working directory

    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(SpectraError, match="cannot write .*out.json: Permission denied"):
        check_writable(target)
    check_writable_dir(tmp_path / "new" / "deeper")  # created later, in a writable ancestor
    with pytest.raises(SpectraError, match="exists and is not a directory"):
        check_writable_dir(target / "sub")
