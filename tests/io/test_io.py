"""Checkpoint readers on files the tests write themselves, in every format, and on bad input.

Round trips are exact: what a handle loads must equal, bit for bit and dtype for dtype, what was
written.
"""

from __future__ import annotations

import gc
import json
import pickle
import struct
import warnings
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file, save_model

import spectracli.io.safetensors_reader as st_reader
from spectracli.errors import CheckpointError
from spectracli.io import load_state_dict, open_checkpoint


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "layer1.weight": torch.randn(6, 4, generator=g),
        "layer1.bias": torch.randn(6, generator=g),
        "layer2.weight": torch.randn(3, 6, generator=g).to(torch.float16),
        "emb.weight": torch.randn(10, 5, generator=g).to(torch.bfloat16),
        "counter": torch.tensor(7, dtype=torch.int64),
    }


def _read_all(path, **kw) -> tuple[str, dict[str, torch.Tensor], dict[str, list[str]]]:
    with open_checkpoint(path, **kw) as ckpt:
        values, aliases = {}, {}
        for h in ckpt.handles():
            t = h.load()
            assert tuple(t.shape) == h.shape, h.name
            assert str(t.dtype) == "torch." + h.dtype, h.name
            assert t.device.type == "cpu"
            values[h.name] = t.clone()
            aliases[h.name] = list(h.aliases)
        return ckpt.format, values, aliases


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for k, w in want.items():
        assert got[k].dtype == w.dtype, k
        assert torch.equal(got[k], w), k


# ---------------------------------------------------------------- safetensors


def test_safetensors_single_file_round_trips_f32_f16_bf16_int(tmp_path):
    want = _tensors()
    path = tmp_path / "m.safetensors"
    save_file(want, path)
    fmt, got, aliases = _read_all(path)
    assert fmt == "safetensors"
    _assert_same(got, want)
    assert all(a == [] for a in aliases.values())
    with open_checkpoint(path) as ckpt:
        assert ckpt.size_bytes == path.stat().st_size
        assert ckpt.path == path
        dtypes = {h.name: h.dtype for h in ckpt.handles()}
    assert dtypes["emb.weight"] == "bfloat16" and dtypes["layer2.weight"] == "float16"
    assert dtypes["layer1.weight"] == "float32" and dtypes["counter"] == "int64"


def test_safetensors_handles_read_no_data_until_load(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_file(_tensors(), path)
    opened = []
    real = st_reader.safe_open
    monkeypatch.setattr(
        st_reader, "safe_open", lambda *a, **k: opened.append(a[0]) or real(*a, **k)
    )
    with open_checkpoint(path) as ckpt:
        handles = list(ckpt.handles())
        assert opened == []  # shapes and dtypes came from the header alone
        assert {h.name: h.shape for h in handles}["layer1.weight"] == (6, 4)
        handles[0].load()
        handles[1].load()
    assert len(opened) == 1


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_streaming_readers_keep_no_reference_to_loaded_tensors(tmp_path, fmt):
    want = {f"w{i}": torch.randn(8, 8) for i in range(4)}
    path = tmp_path / f"m.{fmt}"
    if fmt == "npz":
        np.savez(path, **{k: v.numpy() for k, v in want.items()})
    else:
        save_file(want, path)
    with open_checkpoint(path) as ckpt:
        for h in ckpt.handles():
            t = h.load()
            ref = weakref.ref(t)
            assert torch.equal(t, want[h.name])
            del t
            if ref() is not None:  # only a reference cycle could still hold it: collect, recheck
                gc.collect()
            assert ref() is None, f"{fmt} reader keeps {h.name} alive: memory would grow"


def test_safetensors_handles_pickle_for_worker_processes(tmp_path):
    want = _tensors()
    path = tmp_path / "m.safetensors"
    save_file(want, path)
    with open_checkpoint(path) as ckpt:
        handles = list(ckpt.handles())
        handles[0].load()  # the file is open in this process
        for h in handles:
            copy = pickle.loads(pickle.dumps(h))
            assert torch.equal(copy.load(), want[h.name])


def test_directory_with_one_safetensors_is_found(tmp_path):
    want = _tensors()
    save_file(want, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("{}")
    fmt, got, _ = _read_all(tmp_path)
    assert fmt == "safetensors"
    _assert_same(got, want)
    with open_checkpoint(tmp_path) as ckpt:
        assert ckpt.path == tmp_path


def test_save_model_tied_weights_become_aliases(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(11, 4)
            self.head = torch.nn.Linear(4, 11, bias=False)
            self.head.weight = self.embed.weight

    torch.manual_seed(1)
    model = Tied()
    path = tmp_path / "tied.safetensors"
    save_model(model, str(path))
    _, got, aliases = _read_all(path)
    assert set(got) == {"embed.weight"}  # save_model keeps the first name in sorted order
    assert aliases["embed.weight"] == ["head.weight"]
    assert torch.equal(got["embed.weight"], model.embed.weight.detach())
    sd = load_state_dict(path)
    assert set(sd) == {"embed.weight", "head.weight"}
    assert sd["head.weight"] is sd["embed.weight"]


def _write_sharded(root: Path) -> dict[str, torch.Tensor]:
    want = _tensors()
    names = sorted(want)
    shards = {
        "model-00001-of-00002.safetensors": names[:2],
        "model-00002-of-00002.safetensors": names[2:],
    }
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: want[k] for k in keys}, root / shard)
        weight_map.update({k: shard for k in keys})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    return want


def test_sharded_directory_opens_each_shard_once(tmp_path, monkeypatch):
    want = _write_sharded(tmp_path)
    opened: list[str] = []
    real = st_reader.safe_open

    def counting(filename, *args, **kwargs):
        opened.append(Path(filename).name)
        return real(filename, *args, **kwargs)

    monkeypatch.setattr(st_reader, "safe_open", counting)
    fmt, got, _ = _read_all(tmp_path)
    assert fmt == "safetensors-sharded"
    _assert_same(got, want)
    assert sorted(opened) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    with open_checkpoint(tmp_path) as ckpt:
        shard_bytes = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
        assert ckpt.size_bytes == shard_bytes


def test_sharded_index_file_can_be_passed_directly(tmp_path):
    want = _write_sharded(tmp_path)
    fmt, got, _ = _read_all(tmp_path / "model.safetensors.index.json")
    assert fmt == "safetensors-sharded"
    _assert_same(got, want)


def test_sharded_index_naming_a_missing_shard_names_it(tmp_path):
    _write_sharded(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        open_checkpoint(tmp_path)


def test_sharded_index_not_json(tmp_path):
    _write_sharded(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not JSON"):
        open_checkpoint(tmp_path)


def test_sharded_index_placing_a_tensor_in_the_wrong_shard(tmp_path):
    _write_sharded(tmp_path)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="ghost.weight"):
        open_checkpoint(tmp_path)


def test_block_scaled_fp8_is_dequantised_on_load(tmp_path):
    g = torch.Generator().manual_seed(3)
    w8 = (torch.randn(200, 300, generator=g) * 2).to(torch.float8_e4m3fn)
    scale = torch.rand(2, 3, generator=g) + 0.5  # ceil(200/128) x ceil(300/128) blocks
    path = tmp_path / "fp8.safetensors"
    save_file({"q.weight": w8, "q.weight_scale_inv": scale, "raw.weight": w8.clone()}, path)
    with open_checkpoint(path) as ckpt:
        handles = {h.name: h for h in ckpt.handles()}
        assert set(handles) == {"q.weight", "raw.weight"}  # the scale is consumed
        assert handles["q.weight"].dtype == "float32"
        assert handles["raw.weight"].dtype == "float8_e4m3fn"  # no scale: never cast silently
        got = handles["q.weight"].load()
    rows, cols = torch.arange(200) // 128, torch.arange(300) // 128
    expected = w8.float() * scale[rows[:, None], cols[None, :]]  # scale of element (i, j)'s block
    assert torch.equal(got, expected)


# ---------------------------------------------------------------- PyTorch pickles


class _Config:  # a non-tensor global: weights_only refuses it
    def __init__(self):
        self.lr = 0.1


@pytest.mark.parametrize("key", ["state_dict", "model", "module", "model_state_dict", "net"])
def test_nested_checkpoint_finds_the_state_dict(tmp_path, key):
    want = _tensors()
    path = tmp_path / "ckpt.pt"
    optimizer_state = {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}
    torch.save({key: want, "optimizer": optimizer_state, "epoch": 4, "best": 0.9}, path)
    fmt, got, _ = _read_all(path)
    assert fmt == "pytorch"
    _assert_same(got, want)


def test_lightning_style_nested_state_dict_under_model(tmp_path):
    want = _tensors()
    path = tmp_path / "last.ckpt"
    torch.save({"model": {"state_dict": want}, "optimizer_states": [{"x": torch.ones(2)}]}, path)
    _, got, _ = _read_all(path)
    _assert_same(got, want)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path, prefix):
    want = _tensors()
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {prefix + k: v for k, v in want.items()}}, path)
    _, got, _ = _read_all(path)
    _assert_same(got, want)


def test_module_prefix_kept_when_only_some_names_have_it(tmp_path):
    sd = {"module.weight": torch.ones(2, 2), "other.weight": torch.zeros(2, 2)}
    path = tmp_path / "real_submodule.pt"
    torch.save(sd, path)
    _, got, _ = _read_all(path)
    _assert_same(got, sd)


def test_tied_weights_in_pt_are_one_handle_with_aliases(tmp_path):
    emb = torch.nn.Embedding(12, 4)
    head = torch.nn.Linear(4, 12, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"embed": emb, "head": head})
    path = tmp_path / "tied.pt"
    torch.save(model.state_dict(), path)
    fmt, got, aliases = _read_all(path)
    assert set(got) == {"embed.weight"}
    assert aliases["embed.weight"] == ["head.weight"]
    assert torch.equal(got["embed.weight"], emb.weight.detach())
    sd = load_state_dict(path)
    assert set(sd) == {"embed.weight", "head.weight"}
    assert torch.equal(sd["head.weight"], emb.weight.detach())


def test_views_of_one_storage_are_not_tied_unless_identical(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {"top": base[:2], "bottom": base[2:], "all": base}
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    _, got, aliases = _read_all(path)
    _assert_same(got, sd)
    assert all(a == [] for a in aliases.values())


def test_legacy_non_zip_pickle_is_read(tmp_path):
    want = _tensors()
    path = tmp_path / "legacy.bin"
    torch.save(want, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    fmt, got, _ = _read_all(path)
    assert fmt == "pytorch"
    _assert_same(got, want)


def test_directory_with_pytorch_model_bin(tmp_path):
    want = _tensors()
    torch.save(want, tmp_path / "pytorch_model.bin")
    fmt, got, _ = _read_all(tmp_path)
    assert fmt == "pytorch"
    _assert_same(got, want)


@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_with_custom_class_is_read_with_the_global_stubbed(tmp_path, legacy):
    want = _tensors()
    path = tmp_path / "custom.pt"
    torch.save(
        {"model": want, "config": _Config()}, path, _use_new_zipfile_serialization=not legacy
    )
    fmt, got, _ = _read_all(path)
    _assert_same(got, want)
    with open_checkpoint(path) as ckpt:
        assert ckpt.stubbed_globals == [f"{__name__}._Config"]
    _, got, _ = _read_all(path, trust_pickle=True)
    _assert_same(got, want)


class _RunsCode:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pickle_that_would_run_code_is_not_run(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _tensors(), "x": _RunsCode(str(target))}, path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.stubbed_globals in (["builtins.open"], ["io.open"])
    assert not target.exists()
    torch.save({"w": torch.ones(3, 3), "x": _RunsCode(str(target))}, path)  # beside tensors
    with pytest.raises(CheckpointError, match=r"'x' would be built by (io|builtins)\.open"):
        open_checkpoint(path)
    assert not target.exists()


def test_full_module_pickle_is_read_from_its_recorded_state_without_running_it(tmp_path):
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                                torch.nn.Linear(4, 2))
    path = tmp_path / "whole_model.pt"
    torch.save(model, path)
    want = {k: v.detach() for k, v in model.state_dict().items()}
    _, got, _ = _read_all(path)  # no --trust-pickle: module classes are placeholders
    _assert_same(got, want)
    with open_checkpoint(path) as ckpt:
        assert "torch.nn.modules.container.Sequential" in ckpt.stubbed_globals
    _, got, _ = _read_all(path, trust_pickle=True)
    _assert_same(got, want)


def test_checkpoint_without_tensors(tmp_path):
    path = tmp_path / "nothing.pt"
    torch.save({"epoch": 3, "optimizer": {"state": {}}}, path)
    with pytest.raises(CheckpointError, match="no tensors"):
        open_checkpoint(path)


# ---------------------------------------------------------------- npz


def test_npz_round_trips_and_is_lazy(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "w1": rng.standard_normal((5, 3)),
        "w2": rng.standard_normal((4, 4)).astype(np.float32),
        "ids": np.arange(6, dtype=np.int64),
        "big_endian": np.arange(4, dtype=">f4"),
        "names": np.array(["a", "b"]),
    }
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    fmt, got, _ = _read_all(path)
    assert fmt == "npz"
    assert set(got) == {"w1", "w2", "ids", "big_endian"}  # strings are not tensors
    for k in got:
        np.testing.assert_array_equal(got[k].numpy(), arrays[k])
        assert (
            got[k].dtype
            == torch.from_numpy(arrays[k].astype(arrays[k].dtype.newbyteorder("="))).dtype
        )


def test_npz_compressed(tmp_path):
    arrays = {"a": np.linspace(0, 1, 12).reshape(3, 4)}
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **arrays)
    _, got, _ = _read_all(path)
    np.testing.assert_array_equal(got["a"].numpy(), arrays["a"])


def test_npz_object_array_is_skipped_with_its_reason_and_the_rest_analysed(tmp_path):
    """One object array (which would need unpickling) no longer refuses the whole archive: it is
    listed as skipped, never loaded, and the other arrays give the spectra they give alone."""
    from spectracli.analyze import AnalyzeConfig, analyze_checkpoint

    rng = np.random.default_rng(0)
    w = rng.standard_normal((24, 16))
    path, alone = tmp_path / "obj.npz", tmp_path / "alone.npz"
    np.savez(path, good=w, bad=np.array([{"a": 1}, None], dtype=object))
    np.savez(alone, good=w)
    handles = {h.name: h for h in open_checkpoint(path).handles()}
    assert handles["bad"].meta["skip"].startswith("array of Python objects (dtype=object)")
    config = AnalyzeConfig(farms=False, fit="median")
    report = analyze_checkpoint(path, config).to_dict()
    assert [s["name"] for s in report["skipped"]] == ["bad"]
    assert "reading it would unpickle" in report["skipped"][0]["reason"]
    truth = analyze_checkpoint(alone, config).to_dict()["layers"][0]
    assert report["layers"][0]["sigma_max"] == truth["sigma_max"]


# ---------------------------------------------------------------- bad input


def _valid_safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save(
        {
            "a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            "b": torch.ones(4, dtype=torch.float32),
        }
    )


def _rewrite_header(blob: bytes, edit) -> bytes:
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + blob[8 + n :]


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        open_checkpoint(tmp_path / "nope.safetensors")


def test_empty_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"holds no weights \(looked for"):
        open_checkpoint(tmp_path)


def test_directory_with_two_safetensors_is_ambiguous(tmp_path):
    save_file({"a": torch.ones(2)}, tmp_path / "a.safetensors")
    save_file({"a": torch.ones(2)}, tmp_path / "b.safetensors")
    with pytest.raises(CheckpointError, match="pass one file"):
        open_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["m.safetensors", "m.pt", "m.npz", "m"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        open_checkpoint(path)


def test_file_shorter_than_the_header_length(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x05\x00\x01")
    with pytest.raises(CheckpointError, match="truncated: 3 bytes"):
        open_checkpoint(path)


def test_truncated_safetensors(tmp_path):
    blob = _valid_safetensors_bytes()
    path = tmp_path / "m.safetensors"
    path.write_bytes(blob[:-5])
    with pytest.raises(CheckpointError, match="past the end of the file"):
        open_checkpoint(path)


def test_safetensors_cut_inside_the_header(tmp_path):
    blob = _valid_safetensors_bytes()
    path = tmp_path / "m.safetensors"
    path.write_bytes(blob[:20])
    with pytest.raises(CheckpointError, match="header length .* larger than the file"):
        open_checkpoint(path)


def test_bad_header_length(tmp_path):
    blob = _valid_safetensors_bytes()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + blob[8:])
    with pytest.raises(CheckpointError, match="header length"):
        open_checkpoint(path)
    (n,) = struct.unpack("<Q", blob[:8])
    path.write_bytes(struct.pack("<Q", n - 3) + blob[8:])  # header cut short: not JSON
    with pytest.raises(CheckpointError, match="not JSON"):
        open_checkpoint(path)


def test_a_tensor_named_twice_in_the_header_is_named_in_the_error(tmp_path):
    # json keeps the last of two equal keys; the first then looked like "a gap" in the data
    header = (b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
              b'"x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}')
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(CheckpointError, match=r"corrupt: its header names 'x' twice"):
        open_checkpoint(path)


def test_offsets_past_the_end(tmp_path):
    def push_b(header):
        header["b"]["data_offsets"] = [24, 24 + 1000]

    path = tmp_path / "m.safetensors"
    path.write_bytes(_rewrite_header(_valid_safetensors_bytes(), push_b))
    with pytest.raises(CheckpointError, match="'b' data_offsets .* past the end"):
        open_checkpoint(path)


def test_offsets_inconsistent_with_shape(tmp_path):
    def grow_shape(header):
        header["a"]["shape"] = [3, 3]

    path = tmp_path / "m.safetensors"
    path.write_bytes(_rewrite_header(_valid_safetensors_bytes(), grow_shape))
    with pytest.raises(CheckpointError, match="'a' of shape \\(3, 3\\)"):
        open_checkpoint(path)


def test_overlapping_offsets(tmp_path):
    def overlap(header):
        header["a"]["data_offsets"] = [0, 24]
        header["b"]["data_offsets"] = [8, 24]

    path = tmp_path / "m.safetensors"
    path.write_bytes(_rewrite_header(_valid_safetensors_bytes(), overlap))
    with pytest.raises(CheckpointError, match="overlaps|gap|cover"):
        open_checkpoint(path)


@pytest.mark.parametrize("name", ["notes.txt", "model.safetensors", "model.pt", "weights.npz"])
def test_text_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("these are not the weights you are looking for\n" * 20)
    with pytest.raises(CheckpointError, match="text file"):
        open_checkpoint(path)


def test_unknown_binary(tmp_path):
    path = tmp_path / "blob.dat"
    path.write_bytes(bytes(range(1, 200)) * 3)
    with pytest.raises(CheckpointError, match="not a recognised checkpoint"):
        open_checkpoint(path)


def test_corrupt_pytorch_zip(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(_tensors(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="m.pt"):
        open_checkpoint(path)


def test_errors_are_one_line(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"\x80\x02garbage that is not a pickle")
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", ["Q9", ["F32"], None])
def test_unknown_or_malformed_dtype(tmp_path, dtype):
    def set_dtype(header):
        header["a"]["dtype"] = dtype

    path = tmp_path / "m.safetensors"
    path.write_bytes(_rewrite_header(_valid_safetensors_bytes(), set_dtype))
    with pytest.raises(CheckpointError, match="'a' has an unknown dtype"):
        open_checkpoint(path)


def test_sharded_index_without_weight_map(tmp_path):
    _write_sharded(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(CheckpointError, match="weight_map"):
        open_checkpoint(tmp_path)


def test_content_decides_over_extension(tmp_path):
    want = _tensors()
    path = tmp_path / "actually_safetensors.bin"
    save_file(want, path)
    fmt, got, _ = _read_all(path)
    assert fmt == "safetensors"
    _assert_same(got, want)


def test_torchscript_archive_needs_trust(tmp_path):
    torch.manual_seed(4)
    model = torch.nn.Linear(3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # torch.jit is deprecated, still shipped
        torch.jit.script(model).save(str(tmp_path / "model.jit"))
    with pytest.raises(CheckpointError, match="TorchScript.*trust_pickle=True"):
        open_checkpoint(tmp_path / "model.jit")
    fmt, got, _ = _read_all(tmp_path / "model.jit", trust_pickle=True)
    assert fmt == "pytorch"
    _assert_same(got, {k: v.detach() for k, v in model.state_dict().items()})
