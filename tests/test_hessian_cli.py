"""``spectracli hessian`` end to end on the shipped digits sample (CliRunner)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from spectracli.cli.app import app

# Tiny products: one thread (tests/conftest.py) avoids OpenMP spin-waits on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")

MLP = ["--model", "sample_models/digits.py:build_mlp",
       "--weights", "sample_models/digits_mlp.safetensors", "--data", "sample_models/digits.npz"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def test_json_report_on_the_sample(runner, tmp_path):
    out = tmp_path / "h.json"
    res = runner.invoke(app, ["hessian", *MLP, "--top-k", "3", "--max-samples", "300",
                              "--format", "json", "-o", str(out), "--lr", "0.1"])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["kind"] == "hessian" and d["n_samples"] == 300 and d["n_params"] == 50826
    assert d["source"]["weights"].endswith("digits_mlp.safetensors")
    assert all(d["converged"]) and d["eigenvalues"] == sorted(d["eigenvalues"], reverse=True)
    assert d["settings"]["model_mode"] == "eval" and d["settings"]["dtype"] == "float32"
    assert d["edge_of_stability"] == pytest.approx(0.1 * d["eigenvalues"][0] / 2)
    # A trained model at a minimum: the top eigenvalue is positive and dominates the gradient.
    assert d["eigenvalues"][0] > 0


def test_table_output_with_trace_and_density(runner):
    res = runner.invoke(app, ["hessian", *MLP, "--top-k", "2", "--max-samples", "200",
                              "--trace", "--trace-hvps", "12", "--density",
                              "--density-probes", "2", "--density-steps", "8"])
    assert res.exit_code == 0, res.output
    assert "trace" in res.output and "bulk edge" in res.output and "eigenvalue" in res.output


def test_cnn_sample_with_batchnorm(runner):
    res = runner.invoke(app, ["hessian", "--model", "sample_models/digits.py:build_cnn",
                              "--weights", "sample_models/digits_cnn.safetensors",
                              "--data", "sample_models/digits.npz", "--top-k", "1",
                              "--max-samples", "100", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["eigenvalues"][0] > 0


def test_data_callable_and_mse(runner, tmp_path):
    mod = tmp_path / "reg.py"
    mod.write_text(
        "import torch\n"
        "def model():\n    torch.manual_seed(0)\n    return torch.nn.Linear(3, 1, bias=False)\n"
        "X = torch.arange(12.0).reshape(4, 3) / 10\n"
        "def data():\n    return X, torch.zeros(4)\n"
    )
    res = runner.invoke(app, ["hessian", "--model", f"{mod}:model", "--data", f"{mod}:data",
                              "--loss", "mse", "--top-k", "1", "--which", "both",
                              "--dtype", "float64", "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    x = (torch.arange(12.0).reshape(4, 3) / 10).double()  # the float32 data, widened
    ev = torch.linalg.eigvalsh(x.T @ x / 4)
    assert d["eigenvalues"][0] == pytest.approx(float(ev[-1]), rel=1e-8)
    assert d["eigenvalues"][-1] == pytest.approx(float(ev[0]), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "sample_models/nope.py:build_mlp"], "nope.py does not exist"),
        (["--model", "sample_models/digits.py:build_rnn"], "no attribute 'build_rnn'"),
        (["--model", "sample_models/digits.py:load_digits"], "must return a torch.nn.Module"),
        (["--weights", "sample_models/digits_cnn.safetensors"], "do not match the model"),
        (["--loss", "hinge"], "--loss must be"),
        (["--which", "middle"], "--which must be"),
        (["--y-key", "labels"], "has no tensor 'labels'"),
        (["--threads", "zero"], "--threads must be"),
        (["--hvp-mode", "sideways"], "--hvp-mode must be"),
        (["--data", "sample_models/digits.py:build_mlp"], "must give a Dataset"),
    ],
)
def test_bad_input_exit_2_one_line(runner, tmp_path, args, message):
    base = dict(zip(MLP[::2], MLP[1::2], strict=True))
    extra = dict(zip(args[::2], args[1::2], strict=True))
    merged = [t for kv in {**base, **extra}.items() for t in kv]
    out = tmp_path / "never.json"
    res = runner.invoke(app, ["hessian", *merged, "--format", "json", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
