"""``spectracli hessian`` end to end on the shipped digits sample (CliRunner)."""

from __future__ import annotations

import json

import pytest
import torch
from dense_truths import linear_mse_hessian
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
                              "--density-probes", "2", "--density-steps", "8", "--lr", "1e-9"])
    assert res.exit_code == 0, res.output
    assert "trace" in res.output and "bulk edge" in res.output and "eigenvalue" in res.output
    # lr * lambda_max / 2 far below 1: the verdict follows the value.
    assert "within the GD stability limit 1" in res.output


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
    ev = torch.linalg.eigvalsh(linear_mse_hessian(x))
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


HF_MODEL = '''
import torch
from torch import nn
from tinyparts import Output  # a sibling module: the model file's folder must be on sys.path


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5)

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits = self.head(torch.cumsum(torch.tanh(self.emb(input_ids)), dim=1))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, 5), labels[:, 1:].reshape(-1), ignore_index=-100)
        return Output(loss, logits)


def build():
    import lazypart  # noqa: F401 - a sibling imported only when the factory runs

    return LM()


class Rows(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 5, (10, 4), generator=g)

    def __len__(self):
        return 10

    def __getitem__(self, i):
        labels = self.ids[i].clone()
        labels[3 - i % 3:] = -100
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(4, dtype=torch.long),
                "labels": labels}


def rows():
    return Rows()
'''


def _hf_files(tmp_path):
    (tmp_path / "tinyparts.py").write_text(
        "from dataclasses import dataclass\nimport torch\n\n@dataclass\nclass Output:\n"
        "    loss: object\n    logits: torch.Tensor\n")
    (tmp_path / "lazypart.py").write_text("VALUE = 1\n")
    (tmp_path / "hfmodel.py").write_text(HF_MODEL)
    return tmp_path / "hfmodel.py"


def test_dataset_of_dicts_model_loss_blocks_and_vectors(runner, tmp_path):
    # Today: the sibling import fails, and a Dataset of dicts gives exit 3 "KeyError: 0".
    import sys

    mod = _hf_files(tmp_path)
    path_before = list(sys.path)
    vec = tmp_path / "vec.safetensors"
    plot = tmp_path / "blocks.png"
    out = tmp_path / "h.json"
    res = runner.invoke(app, ["hessian", "--model", f"{mod}:build", "--data", f"{mod}:rows",
                              "--loss", "model", "--top-k", "2", "--dtype", "float64",
                              "--blocks", "module", "--blocks-plot", str(plot),
                              "--save-eigenvectors", str(vec), "--batch-size", "3",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert sys.path == path_before
    assert "diagonal blocks" in res.output and "head" in res.output
    d = json.loads(out.read_text())
    assert [b["name"] for b in d["blocks"]] == ["emb", "head"]
    assert d["loss_weighting"].startswith("labels[..., 1:]") and d["n_samples"] == 10
    assert plot.stat().st_size > 1000
    from safetensors.torch import load_file

    vectors = load_file(str(vec))
    assert vectors["emb.weight"].shape == (2, 5, 3) and vectors["head.bias"].shape == (2, 5)
    flat = torch.cat([vectors[k].reshape(2, -1) for k in ("emb.weight", "head.weight",
                                                          "head.bias")], dim=1)
    assert torch.allclose(flat @ flat.T, torch.eye(2, dtype=torch.float64), atol=1e-8)


def test_params_glob_and_package_module_from_the_current_directory(runner, tmp_path,
                                                                   monkeypatch):
    _hf_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["hessian", "--model", "hfmodel:build", "--data", "hfmodel:rows",
                              "--loss", "model", "--top-k", "1", "--params", "head.*",
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["n_params"] == 20 and d["n_frozen"] == 15 and d["frozen_params"] == ["emb.weight"]


def test_an_error_in_a_later_batch_is_one_line_exit_2(runner, tmp_path):
    data = tmp_path / "d.py"
    data.write_text("import torch\ndef pairs():\n    x = torch.randn(40, 64)\n"
                    "    y = torch.arange(40) % 10\n    y[33] = 12\n    return x, y\n")
    res = runner.invoke(app, ["hessian", "--model", "sample_models/digits.py:build_mlp",
                              "--data", f"{data}:pairs", "--batch-size", "16", "--top-k", "1"])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().startswith("spectracli: error: batch 2: labels out of range")
    assert len(res.stderr.strip().splitlines()) == 1
