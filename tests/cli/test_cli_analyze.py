"""The analyze command through typer's CliRunner: formats, files, and bad input."""

import csv
import io
import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from spectracli.cli.app import app

SAMPLE = "sample_models/digits_mlp.safetensors"
runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_plain_table_on_the_sample_model():
    res = run("analyze", SAMPLE)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    # The summary first, then the table; skipped tensors counted by reason (-v lists them).
    assert "3 layers analysed, 3 tensors skipped" in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    assert lines[header].split()[:3] == ["layer", "kind", "shape"]
    assert any(line.startswith("fc1.weight") for line in lines[header:])
    assert "fc1.bias" not in res.stdout and "3  1-D tensor" in res.stdout
    assert "fc1.bias: 1-D tensor" in run("analyze", SAMPLE, "-v").stdout


def test_json_to_file_and_csv_to_stdout(tmp_path):
    out = tmp_path / "r.json"
    res = run("analyze", SAMPLE, "--format", "json", "--output", str(out), "--fit", "median")
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["settings"]["fit"] == "median"
    assert [layer["name"] for layer in data["layers"]] == ["fc1.weight", "fc2.weight",
                                                            "head.weight"]
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind
    res = run("analyze", SAMPLE, "--format", "csv", "--no-farms", "--include", "fc*")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["name"] for r in rows] == ["fc1.weight", "fc2.weight"]
    assert rows[0]["farms_alpha"] == ""
    assert float(rows[0]["sigma_max"]) == pytest.approx(data["layers"][0]["sigma_max"])


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


def _dir(path):
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.safetensors", "missing.safetensors"),
        (lambda p: _file(p / "notes.txt", b"hello"), "notes.txt"),
        (lambda p: _file(p / "empty.safetensors", b""), "empty.safetensors"),
        (lambda p: _file(p / "cut.safetensors", b"\xff" * 8 + b"{"), "cut.safetensors"),
        (lambda p: _dir(p / "weights_dir"), "weights_dir"),
    ],
)
def test_bad_checkpoints_give_one_line_and_exit_2_with_no_output_file(tmp_path, make, message):
    target = make(tmp_path)
    out = tmp_path / "out.json"
    res = run("analyze", str(target), "--format", "json", "--output", str(out))
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("spectracli: error:")
    assert message in err
    assert "Traceback" not in res.output
    assert not out.exists()


def test_bad_options_exit_2():
    assert run("analyze", SAMPLE, "--fit", "best").exit_code == 2
    assert run("analyze", SAMPLE, "--format", "yaml").exit_code == 2
    assert run("analyze", SAMPLE, "--device", "cuda:7").exit_code == 2 or torch.cuda.is_available()


def test_nan_layer_is_reported_and_the_rest_analysed(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"good": torch.randn(30, 20), "bad": torch.full((30, 20), float("inf"))}, str(path))
    res = run("analyze", str(path), "--format", "json")
    assert res.exit_code == 0, res.output
    layers = {layer["name"]: layer for layer in json.loads(res.stdout)["layers"]}
    assert layers["bad"]["status"] == "nonfinite" and layers["good"]["status"] == "ok"


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "spectracli", "--version"], capture_output=True,
                         text=True, check=True)
    assert res.stdout.startswith("spectracli ")


class Unsafe:  # a class the safe unpickler must refuse
    def __reduce__(self):
        return (print, ("this would run",))


def test_tied_pt_sharded_dir_and_npz_analyse_alike(tmp_path):
    import numpy as np
    from safetensors.torch import save_file as save

    g = torch.Generator().manual_seed(0)
    emb = torch.randn(50, 16, generator=g)
    fc = torch.randn(16, 12, generator=g)
    torch.save({"state_dict": {"module.emb.weight": emb, "module.head.weight": emb,
                               "module.fc.weight": fc}, "epoch": 3}, tmp_path / "m.pt")
    shard_dir = tmp_path / "hf"
    shard_dir.mkdir()
    save({"emb.weight": emb}, str(shard_dir / "model-00001-of-00002.safetensors"))
    save({"fc.weight": fc}, str(shard_dir / "model-00002-of-00002.safetensors"))
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "emb.weight": "model-00001-of-00002.safetensors",
        "fc.weight": "model-00002-of-00002.safetensors"}}))
    np.savez(tmp_path / "m.npz", **{"emb.weight": emb.numpy(), "fc.weight": fc.numpy()})
    sigma = {}
    for target in ("m.pt", "hf", "m.npz"):
        res = run("analyze", str(tmp_path / target), "--format", "json", "--min-size", "5")
        assert res.exit_code == 0, res.output
        layers = {layer["name"]: layer for layer in json.loads(res.stdout)["layers"]}
        sigma[target] = {k: v["sigma_max"] for k, v in layers.items()}
        if target == "m.pt":  # tied: analysed once, reported with its alias; prefix stripped
            assert len(layers) == 2
            tied = layers.get("emb.weight") or layers["head.weight"]
            assert set(tied["aliases"]) | {tied["name"]} == {"emb.weight", "head.weight"}
    ref = torch.linalg.matrix_norm(emb.double(), ord=2).item()
    for target, values in sigma.items():
        key = "emb.weight" if "emb.weight" in values else "head.weight"
        assert values[key] == pytest.approx(ref, rel=1e-10), target


def test_unsafe_pickle_is_refused_naming_the_flag(tmp_path):
    torch.save({"w": torch.randn(20, 20), "x": Unsafe()}, tmp_path / "evil.pt")
    out = tmp_path / "r.json"
    res = run("analyze", str(tmp_path / "evil.pt"), "-f", "json", "-o", str(out))
    assert res.exit_code == 2
    assert "--trust-pickle" in res.stderr and "this would run" not in res.output
    assert not out.exists()


@pytest.mark.parametrize(
    "given, expected", [(None, "PASSIVE"), ("", "PASSIVE"), ("ACTIVE", "ACTIVE")]
)
def test_console_script_sets_a_passive_openmp_wait_policy_unless_the_user_did(given, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = ("import os, sys; sys.argv = ['spectracli', '--version']\n"
            "from spectracli.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-2:] == [expected, "False"]  # set before torch was ever imported
