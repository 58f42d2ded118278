"""Pickles with foreign objects (Lightning-style checkpoints) read without running them.

Truth: the same state dict saved as safetensors and analysed the same way; the payload of a
malicious reduce must never run and its module never be imported.
"""

from __future__ import annotations

import json
import sys
import types
import typing

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.cli.app import app
from spectracli.errors import CheckpointError
from spectracli.io import open_checkpoint
from spectracli.io.stub_pickle import ForeignTensorError

PKG = "spectracli_test_foreign_pkg"


def _touch(path: str) -> None:  # the payload: creates a file when called
    open(path, "w").close()


class _Payload:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (_touch, (self.target,))


class _AttributeDict(dict):  # like lightning's AttributeDict, from a package we will remove
    pass


def _make_tensor(w: torch.Tensor) -> torch.Tensor:
    return w * 2


class _TensorMaker:
    def __init__(self, w: torch.Tensor):
        self.w = w

    def __reduce__(self):
        return (_make_tensor, (self.w,))


class _TorchCall:
    def __reduce__(self):
        return (torch.mul, (torch.ones(2), 2.0))  # torch.mul is outside the safe set too


@pytest.fixture
def foreign_pkg():
    """A module that exists while saving and is gone (and must stay gone) while loading."""
    mod = types.ModuleType(PKG)
    for obj in (_touch, _Payload, _AttributeDict, _make_tensor):
        obj.__module__ = PKG
        setattr(mod, obj.__name__, obj)
    sys.modules[PKG] = mod
    yield mod
    sys.modules.pop(PKG, None)
    for obj in (_touch, _Payload, _AttributeDict, _make_tensor):
        obj.__module__ = __name__


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "model.fc1.weight": torch.randn(24, 16, generator=g),
        "model.fc1.bias": torch.randn(24, generator=g),
        "model.fc2.weight": torch.randn(12, 24, generator=g),
    }


def _lightning(state: dict, hparams: object) -> dict:
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 3}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": None}},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hparams,
    }


def _spectra(path) -> dict[str, tuple]:
    report = analyze_checkpoint(path, AnalyzeConfig(farms=False, min_size=5, threads=1))
    return {
        layer.name: (layer.sigma_max, layer.sigma_min, layer.fit.alpha, layer.esd.values)
        for layer in report.layers
    }


@pytest.mark.parametrize("legacy", [False, True])
def test_lightning_checkpoint_with_foreign_hparams_reads_like_safetensors(
    tmp_path, foreign_pkg, legacy
):
    target = tmp_path / "payload_ran"
    hparams = _AttributeDict(
        lr=1e-3, kind=dict, annotation=typing.Any, payload=_Payload(str(target)), depth=4
    )
    state = _state()
    ckpt = tmp_path / "epoch=3.ckpt"
    torch.save(_lightning(state, hparams), ckpt, _use_new_zipfile_serialization=not legacy)
    save_file(state, tmp_path / "same.safetensors")
    sys.modules.pop(PKG)  # the package is not installed where the checkpoint is read

    with open_checkpoint(ckpt) as c:
        assert c.format == "pytorch"
        assert {h.name for h in c.handles()} == set(state)
        stubbed = c.stubbed_globals
    assert f"{PKG}._AttributeDict" in stubbed and f"{PKG}._touch" in stubbed
    assert "builtins.dict" not in stubbed  # a plain value, mapped to itself
    report = analyze_checkpoint(ckpt, AnalyzeConfig(farms=False, min_size=5, threads=1))
    assert report.source["stubbed_globals"] == stubbed
    assert _spectra(ckpt) == _spectra(tmp_path / "same.safetensors")
    assert not target.exists(), "the reduce payload ran"
    assert PKG not in sys.modules, "the foreign module was imported"


def test_placeholder_that_would_build_a_tensor_is_refused_not_run(tmp_path, foreign_pkg):
    target = tmp_path / "payload_ran"
    state = {"fc.weight": torch.randn(8, 8), "fc.payload": _Payload(str(target))}
    path = tmp_path / "evil.ckpt"
    torch.save(_lightning(state, {"lr": 0.1}), path)
    sys.modules.pop(PKG)
    with pytest.raises(ForeignTensorError, match=rf"'fc.payload' would be built by {PKG}._touch"):
        open_checkpoint(path)
    assert not target.exists() and PKG not in sys.modules
    sys.modules[PKG] = foreign_pkg
    hparams = {"kind": dict, "any": typing.Any}
    torch.save(_lightning({"fc.weight": _TensorMaker(torch.ones(4, 4))}, hparams), path)
    sys.modules.pop(PKG)
    with pytest.raises(ForeignTensorError) as info:
        open_checkpoint(path)
    message = str(info.value)
    assert f"'fc.weight' would be built by {PKG}._make_tensor" in message
    assert "builtins" not in message and "typing" not in message and "\n" not in message
    torch.save({"state_dict": {"w": _TorchCall()}}, path)
    with pytest.raises(CheckpointError, match=r"without running code .*_VariableFunctionsClass"):
        open_checkpoint(path)


def test_os_globals_are_refused_outright(tmp_path):
    class Shell:
        def __reduce__(self):
            import os

            return (os.system, ("true",))

    path = tmp_path / "shell.pt"
    torch.save({"state_dict": {"w": torch.ones(3, 3)}, "hparams": Shell()}, path)
    with pytest.raises(CheckpointError, match=r"references (os|posix)\.system .*refused"):
        open_checkpoint(path)


def test_lightning_checkpoint_without_state_dict_is_one_line(tmp_path, foreign_pkg):
    path = tmp_path / "no_weights.ckpt"
    torch.save({"epoch": 1, "hyper_parameters": _AttributeDict(lr=0.1)}, path)
    sys.modules.pop(PKG)
    with pytest.raises(CheckpointError, match="no tensors .*top-level keys: epoch"):
        open_checkpoint(path)
    res = CliRunner().invoke(app, ["analyze", str(path), "-f", "json", "-o", str(tmp_path / "r")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


class _Net(torch.nn.Module):  # a model class from a package that is gone at load time
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 6)
        self.tied = self.head  # one module under two names
        self.register_buffer("running", torch.ones(16))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)


def test_pickled_foreign_module_gives_its_state_dict_without_import(tmp_path, foreign_pkg):
    _Net.__module__ = PKG
    foreign_pkg._Net = _Net
    try:
        net = _Net()
        path = tmp_path / "model.pt"
        torch.save({"model": net, "epoch": 2}, path)
        want = net.state_dict()
    finally:
        _Net.__module__ = __name__
    sys.modules.pop(PKG)
    with open_checkpoint(path) as c:
        got = {h.name: (h.load(), h.aliases) for h in c.handles()}
        assert f"{PKG}._Net" in c.stubbed_globals
    names = set(got) | {a for _, aliases in got.values() for a in aliases}
    assert names == set(want) and "scratch" not in names
    for name, (tensor, aliases) in got.items():
        assert torch.equal(tensor, want[name])
        assert all(torch.equal(tensor, want[a]) for a in aliases)
    assert PKG not in sys.modules


def test_pickled_object_without_module_state_is_refused(tmp_path, foreign_pkg):
    path = tmp_path / "obj.pt"
    torch.save(_Payload(str(tmp_path / "never")), path)  # the top level is a foreign call
    sys.modules.pop(PKG)
    with pytest.raises(ForeignTensorError, match=f"pickled {PKG}._touch object"):
        open_checkpoint(path)
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------- sharded PyTorch .bin


def _write_sharded_bin(root, legacy: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    a = {"emb.weight": torch.randn(40, 16, generator=g),
         "fc1.weight": torch.randn(20, 16, generator=g)}
    b = {"fc2.weight": torch.randn(12, 20, generator=g), "fc2.bias": torch.randn(12, generator=g)}
    names = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")
    for part, name in zip((a, b), names, strict=True):
        torch.save(part, root / name, _use_new_zipfile_serialization=not legacy)
    weight_map = {k: names[0] for k in a} | {k: names[1] for k in b}
    (root / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return a | b


@pytest.mark.parametrize("legacy", [False, True])
def test_sharded_bin_directory_reads_like_safetensors(tmp_path, monkeypatch, legacy):
    want = _write_sharded_bin(tmp_path, legacy)
    save_file(want, tmp_path.parent / f"{tmp_path.name}.safetensors")
    import spectracli.io.pytorch_reader as reader

    loads = []
    real = reader._torch_load
    monkeypatch.setattr(reader, "_torch_load", lambda p, *a: loads.append(p.name) or real(p, *a))
    with open_checkpoint(tmp_path) as c:
        assert c.format == "pytorch-sharded" and c.path == tmp_path
        got = {h.name: h.load() for h in c.handles()}
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 2  # each shard loaded once
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    ref = tmp_path.parent / f"{tmp_path.name}.safetensors"
    assert _spectra(tmp_path) == _spectra(ref)
    assert _spectra(tmp_path / "pytorch_model.bin.index.json") == _spectra(ref)


def test_sharded_bin_index_naming_a_missing_shard_is_one_line(tmp_path):
    _write_sharded_bin(tmp_path)
    (tmp_path / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(CheckpointError, match="missing .*pytorch_model-00002-of-00002.bin"):
        open_checkpoint(tmp_path)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["analyze", str(tmp_path), "-f", "json", "-o", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output and not out.exists()
    assert len(res.stderr.strip().splitlines()) == 1


def test_real_lightning_trainer_checkpoint_reads_without_lightning_objects_run(
    tmp_path, foreign_pkg
):
    """A checkpoint written by lightning's own Trainer: hparams with a Path, a foreign config
    object (an AttributeDict from lightning itself), loops and optimizer states."""
    L = pytest.importorskip("lightning")
    from pathlib import Path

    class Net(L.LightningModule):
        def __init__(self, cfg, lr: float = 0.1, out: Path = Path("runs/x")):
            super().__init__()
            self.save_hyperparameters()
            self.fc1 = torch.nn.Linear(16, 24)
            self.fc2 = torch.nn.Linear(24, 12)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.fc2(torch.relu(self.fc1(x))), y)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 16), torch.randint(0, 12, (32,)))
    trainer = L.Trainer(max_steps=1, default_root_dir=str(tmp_path), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    module = Net(_AttributeDict(width=24, payload=_Payload(str(tmp_path / "ran"))))
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()},
              tmp_path / "same.safetensors")
    (tmp_path / "ran").unlink(missing_ok=True)  # lightning deep-copies hparams: that ran it
    sys.modules.pop(PKG)
    with open_checkpoint(ckpt) as c:
        stubbed = c.stubbed_globals
    assert "pathlib.PosixPath" in stubbed and f"{PKG}._touch" in stubbed
    assert _spectra(ckpt) == _spectra(tmp_path / "same.safetensors")
    assert not (tmp_path / "ran").exists() and PKG not in sys.modules
