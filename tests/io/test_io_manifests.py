"""Files named by a file the reader reads (sharded indexes, ONNX external data) stay inside.

A checkpoint directory's manifest can name any path: an absolute one, ``../x``, or a file that
is a symlink leading out. Each is refused with an ``UnsafeReferenceError`` (a ``ValueError``)
naming the manifest and the entry, before the outside file is opened; the CLI says it in one line
with exit code 2. A Hugging Face cache snapshot (symlinks into the repository's ``blobs/``) is
still read. Truth: the outside file holds a valid checkpoint, so reading it would succeed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import spectracli.io.safetensors_reader as st_reader
from spectracli.cli.app import app
from spectracli.errors import UnsafeReferenceError
from spectracli.io import open_checkpoint
from spectracli.track import weight_files

needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")


def _weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(12, 10, generator=g), "b.weight": torch.randn(11, 12,
                                                                               generator=g)}


def _sharded(root: Path, outside: Path, how: str, fmt: str = "safetensors") -> Path:
    """A two-shard checkpoint in ``root`` whose second shard is named ``how`` (see below).

    how: ``absolute`` (the index names ``outside`` by its absolute path), ``dotdot``
    (``../outside.name``), ``symlink`` (a file in ``root`` linking to ``outside``) or ``inside``.
    """
    root.mkdir(parents=True, exist_ok=True)
    ext = ".safetensors" if fmt == "safetensors" else ".bin"
    w = _weights(0)

    def save(tensors: dict, path: Path) -> None:
        if fmt == "safetensors":
            save_file(tensors, str(path))
        else:
            torch.save(tensors, path)

    save({"a.weight": w["a.weight"]}, root / f"model-1{ext}")
    save({"b.weight": w["b.weight"]}, outside)
    second = {"absolute": str(outside.resolve()),
              "dotdot": os.path.relpath(outside, root),
              "symlink": f"model-2{ext}", "inside": f"model-2{ext}"}[how]
    if how == "symlink":
        (root / second).symlink_to(outside.resolve())
    elif how == "inside":
        save({"b.weight": w["b.weight"]}, root / second)
    index = {"weight_map": {"a.weight": f"model-1{ext}", "b.weight": second}}
    name = "model.safetensors.index.json" if fmt == "safetensors" else \
        "pytorch_model.bin.index.json"
    (root / name).write_text(json.dumps(index))
    return root / name


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch"])
@pytest.mark.parametrize("how", ["absolute", "dotdot", pytest.param("symlink",
                                                                    marks=needs_symlinks)])
def test_index_naming_a_file_outside_its_directory_is_refused(tmp_path, monkeypatch, fmt, how):
    ext = ".safetensors" if fmt == "safetensors" else ".bin"
    outside = tmp_path / f"private{ext}"
    index = _sharded(tmp_path / "ckpt", outside, how, fmt)
    opened: list[str] = []
    real = st_reader.safe_open
    monkeypatch.setattr(st_reader, "safe_open",
                        lambda f, *a, **k: opened.append(str(f)) or real(f, *a, **k))
    with pytest.raises(UnsafeReferenceError) as info:
        open_checkpoint(tmp_path / "ckpt")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(index) in message and "'b.weight'" in message and "refused" in message
    assert len(message.splitlines()) == 1
    assert opened == []  # refused before any shard, inside or out, was opened
    # the cache key of `track` hashes the index alone, never the outside file
    assert weight_files(tmp_path / "ckpt") == [index]
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "ckpt"), "-f", "json",
                                   "-o", str(out)])
    assert res.exit_code == 2 and not out.exists(), res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert "b.weight" in res.stderr


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch"])
def test_index_naming_files_inside_its_directory_is_read(tmp_path, fmt):
    ext = ".safetensors" if fmt == "safetensors" else ".bin"
    index = _sharded(tmp_path / "ckpt", tmp_path / f"unused{ext}", "inside", fmt)
    sub = tmp_path / "ckpt" / "sub"
    sub.mkdir()
    (tmp_path / "ckpt" / f"model-2{ext}").rename(sub / f"model-2{ext}")
    data = json.loads(index.read_text())
    data["weight_map"]["b.weight"] = f"sub/../sub/model-2{ext}"  # climbs, but stays inside
    index.write_text(json.dumps(data))
    with open_checkpoint(tmp_path / "ckpt") as ckpt:
        got = {h.name: h.load() for h in ckpt.handles()}
    want = _weights(0)
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert weight_files(tmp_path / "ckpt")[1:] == [tmp_path / "ckpt" / f"model-1{ext}",
                                                   sub.parent / f"sub/../sub/model-2{ext}"]


@needs_symlinks
def test_hugging_face_cache_snapshot_of_symlinks_into_blobs_is_read(tmp_path):
    repo = tmp_path / "hub" / "models--org--name"
    snap = repo / "snapshots" / ("c" * 40)
    blobs = repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    w = _weights(1)
    save_file({"a.weight": w["a.weight"]}, str(blobs / "1111"))
    save_file({"b.weight": w["b.weight"]}, str(blobs / "2222"))
    index = {"weight_map": {"a.weight": "model-1.safetensors", "b.weight": "model-2.safetensors"}}
    (blobs / "3333").write_text(json.dumps(index))
    for name, blob in (("model-1.safetensors", "1111"), ("model-2.safetensors", "2222"),
                       ("model.safetensors.index.json", "3333")):
        (snap / name).symlink_to(Path("..", "..", "blobs", blob))  # as huggingface_hub does
    with open_checkpoint(snap) as ckpt:
        got = {h.name: h.load() for h in ckpt.handles()}
    assert all(torch.equal(got[k], w[k]) for k in w)
    # a symlink from the snapshot to anywhere else is still refused
    (tmp_path / "else.safetensors").write_bytes((blobs / "2222").read_bytes())
    (snap / "model-2.safetensors").unlink()
    (snap / "model-2.safetensors").symlink_to(tmp_path / "else.safetensors")
    with pytest.raises(UnsafeReferenceError, match="symlink leading out"):
        open_checkpoint(snap)


# ---------------------------------------------------------------- ONNX external data

def _onnx_model(directory: Path, data_name: str = "m.onnx.data"):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "fc.weight"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        initializer=[numpy_helper.from_array(w, "fc.weight")])
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save_model(helper.make_model(graph), str(directory / "m.onnx"),
                    save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=0)
    return onnx, w


def _relocate(onnx, model_path: Path, location: str) -> None:
    model = onnx.load(str(model_path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(model_path))


@pytest.mark.parametrize("how", ["absolute", "dotdot", pytest.param("symlink",
                                                                    marks=needs_symlinks)])
def test_onnx_external_data_outside_the_model_directory_is_refused(tmp_path, how):
    onnx, _ = _onnx_model(tmp_path / "model")
    outside = tmp_path / "private.data"
    (tmp_path / "model" / "m.onnx.data").rename(outside)
    location = {"absolute": str(outside), "dotdot": "../private.data", "symlink": "link.data"}[how]
    if how == "symlink":
        (tmp_path / "model" / "link.data").symlink_to(outside)
    _relocate(onnx, tmp_path / "model" / "m.onnx", location)
    with pytest.raises(UnsafeReferenceError) as info:
        open_checkpoint(tmp_path / "model" / "m.onnx")
    assert "'fc.weight'" in str(info.value) and "m.onnx" in str(info.value)
    # onnx's own loader refuses these too (>= 1.16; our check does not depend on it)
    with pytest.raises(Exception, match="outside|absolute|symbolic link"):
        onnx.load(str(tmp_path / "model" / "m.onnx"))
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "model" / "m.onnx")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output


@needs_symlinks
def test_onnx_external_data_in_a_hugging_face_cache_snapshot_is_read(tmp_path):
    repo = tmp_path / "models--org--name"
    snap = repo / "snapshots" / ("d" * 40) / "onnx"
    onnx, w = _onnx_model(snap)
    (repo / "blobs").mkdir()
    (snap / "m.onnx.data").rename(repo / "blobs" / "4444")
    (snap / "m.onnx.data").symlink_to(Path("..", "..", "..", "blobs", "4444"))
    with open_checkpoint(snap / "m.onnx") as ckpt:
        (handle,) = list(ckpt.handles())
        assert np.array_equal(np.asarray(handle.load()), w.T)  # MatMul B read as (out, in)
