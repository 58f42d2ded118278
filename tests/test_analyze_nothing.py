"""An analysis that finds no weight matrix is an error, not an empty table with exit code 0.

Truth: checkpoints written here whose tensors are all skipped for known reasons (1-D norm
scales and biases, an integer buffer, a matrix below min_size), and filters that match none of
a checkpoint's known matrices. The library raises (``NoWeightMatricesError``, a ValueError, for
the first; ``SpectraError`` naming include/exclude for the second); the CLI prints one line and
exits 2; ``track`` passes such a checkpoint over with its reason.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

import spectracli
from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.cli.app import app
from spectracli.errors import NoWeightMatricesError, SpectraError
from spectracli.track import TrackConfig, track_run

FAST = {"farms": False, "ci_resamples": 0, "threads": 1}


def _norms(path):
    save_file({"ln.weight": np.ones(8, np.float32), "ln.bias": np.zeros(8, np.float32),
               "norm.weight": np.ones(8, np.float32)}, str(path))
    return path


def _mixed(path):
    save_file({"tiny.weight": np.ones((4, 6), np.float32), "ln.weight": np.ones(8, np.float32),
               "step": np.array([3], np.int64)}, str(path))
    return path


def test_a_checkpoint_of_only_norm_vectors_raises_and_counts_them(tmp_path):
    path = _norms(tmp_path / "norms.safetensors")
    with pytest.raises(NoWeightMatricesError) as info:
        analyze_checkpoint(path, AnalyzeConfig(**FAST))
    assert isinstance(info.value, ValueError)
    assert str(info.value) == (f"no weight matrices in {path}: 3 tensors, all skipped: "
                               "1-D tensor (bias, norm scale or buffer) (x3)")
    with pytest.raises(NoWeightMatricesError):
        spectracli.analyze(path, farms=False)
    res = CliRunner().invoke(app, ["analyze", str(path), "-f", "json", "-o",
                                   str(tmp_path / "r.json")])
    assert res.exit_code == 2 and not (tmp_path / "r.json").exists()
    assert res.stderr.strip().splitlines() == [f"spectracli: error: {info.value}"]


def test_every_reason_is_named_and_min_size_is_said_as_the_flag(tmp_path):
    path = _mixed(tmp_path / "mixed.safetensors")
    with pytest.raises(NoWeightMatricesError) as info:
        analyze_checkpoint(path, AnalyzeConfig(**FAST))
    message = str(info.value)
    for reason in ("non-float dtype int64", "1-D tensor", "matrix 4x6 has fewer than "
                   "min_size=10", "a smaller min_size"):
        assert reason in message, message
    res = CliRunner().invoke(app, ["analyze", str(path)])
    assert res.exit_code == 2 and "--min-size=10" in res.stderr
    # what the message suggests works: the 4x6 matrix is analysed with a smaller min_size
    report = analyze_checkpoint(path, AnalyzeConfig(**FAST, min_size=2))
    assert [la.name for la in report.layers] == ["tiny.weight"]


def test_a_filter_that_matches_none_of_the_matrices_says_how_many_there_are(tmp_path):
    path = tmp_path / "m.safetensors"
    rng = np.random.default_rng(0)
    save_file({f"l{i}.weight": rng.standard_normal((20, 12)).astype(np.float32)
               for i in range(4)} | {"l0.bias": np.zeros(20, np.float32)}, str(path))
    with pytest.raises(SpectraError) as info:
        analyze_checkpoint(path, AnalyzeConfig(**FAST, include=("*attn*",)))
    assert not isinstance(info.value, NoWeightMatricesError)
    assert "include ['*attn*'] / exclude []" in str(info.value)
    assert "match none of its 4 weight matrices (l0.weight, l1.weight, l2.weight, ...)" in \
        str(info.value)
    res = CliRunner().invoke(app, ["analyze", str(path), "--exclude", "l*"])
    assert res.exit_code == 2 and "--exclude ['l*']" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    # a filter on a checkpoint without matrices says the checkpoint has none
    with pytest.raises(NoWeightMatricesError, match="3 tensors, all skipped: 1-D"):
        analyze_checkpoint(_norms(tmp_path / "n.safetensors"),
                           AnalyzeConfig(**FAST, include=("ln*",)))


def test_gate_on_a_checkpoint_without_matrices_is_a_load_error(tmp_path):
    path = _norms(tmp_path / "norms.safetensors")
    res = CliRunner().invoke(app, ["gate", str(path), "--max", "sigma_max=1", "--no-config"])
    assert res.exit_code == 2 and "no weight matrices in" in res.stderr, res.output


def test_track_passes_over_a_checkpoint_without_matrices(tmp_path):
    run = tmp_path / "run"
    rng = np.random.default_rng(1)
    for step in (1, 3):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        save_file({"fc.weight": rng.standard_normal((30, 20)).astype(np.float32)},
                  str(run / f"checkpoint-{step}" / "model.safetensors"))
    (run / "checkpoint-2").mkdir()
    _norms(run / "checkpoint-2" / "model.safetensors")
    report = track_run(run, TrackConfig(analyze=AnalyzeConfig(**FAST), cache=False)).to_dict()
    assert [s["step"] for s in report["steps"]] == [1, 3]
    (note,) = report["ignored"]
    assert "not read: no weight matrices in" in note["reason"]
    shutil.rmtree(run / "checkpoint-1")
    shutil.rmtree(run / "checkpoint-3")
    with pytest.raises(NoWeightMatricesError):
        track_run(run, TrackConfig(analyze=AnalyzeConfig(**FAST), cache=False))
