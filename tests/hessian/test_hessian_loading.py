"""Model/data/loss references, strict weight loading, and the runnable docstring examples."""

from __future__ import annotations

import pytest
import torch

from spectracli.errors import SpectraError
from spectracli.hessian.loading import (
    apply_state_dict,
    build_model,
    call_data,
    make_batches,
    resolve_loss,
)


def test_data_callables_dataset_loader_and_pair(tmp_path):
    mod = tmp_path / "dd.py"
    mod.write_text(
        "import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n"
        "X = torch.arange(12.0).reshape(6, 2)\nY = torch.arange(6)\n"
        "def pair():\n    return X, Y\n"
        "def dataset():\n    return TensorDataset(X, Y)\n"
        "def loader():\n    return DataLoader(TensorDataset(X, Y), batch_size=4)\n"
    )
    from spectracli.hessian.inputs import collect_batches

    for name in ("pair", "dataset", "loader"):
        batches = collect_batches(call_data(f"{mod}:{name}"), batch_size=4)
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        assert torch.equal(x, torch.arange(12.0).reshape(6, 2)) and torch.equal(y, torch.arange(6))


def test_batches_uneven_and_seeded_subset():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = make_batches(x, y, 4)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    sub = make_batches(x, y, 100, max_samples=5, seed=1)
    again = make_batches(x, y, 100, max_samples=5, seed=1)
    assert torch.equal(sub[0][1], again[0][1]) and sub[0][1].tolist() == sorted(sub[0][1].tolist())


def test_strict_weights_name_missing_and_unexpected():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(SpectraError, match=r"missing 1: bias; unexpected 1: extra"):
        apply_state_dict(model, {"weight": torch.zeros(2, 2), "extra": torch.zeros(1)}, "w")
    with pytest.raises(SpectraError, match=r"shape weight \(3, 2\) vs model \(2, 2\)"):
        apply_state_dict(model, {"weight": torch.zeros(3, 2), "bias": torch.zeros(2)}, "w")


def test_references_that_fail_are_named(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise ImportError('no such thing')\n")
    with pytest.raises(SpectraError, match=r"bad.py failed to import: ImportError"):
        build_model(f"{bad}:build")
    with pytest.raises(SpectraError, match="module 'not_a_module_xyz' failed to import"):
        build_model("not_a_module_xyz:build")
    with pytest.raises(SpectraError, match="must be 'path/to/file.py:callable'"):
        build_model("sample_models/digits.py")
    fn, name = resolve_loss("mse")
    assert name == "mse" and float(fn(torch.ones(2, 1), torch.zeros(2))) == 0.5
