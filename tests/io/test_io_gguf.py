"""GGUF through the ``gguf`` package: written here with its writer, read back lazily.

Truth: the same arrays saved as safetensors (float types), and for quantised types the values
that ``gguf.quants.dequantize`` itself gives, saved as safetensors and also checked against a
float64 numpy SVD.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.cli.app import app
from spectracli.errors import CheckpointError
from spectracli.io import open_checkpoint

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType

# K-quant block layouts: where the float16 super-block scales sit (the rest is any bytes).
_K_F16_AT = {Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (-2,)}


def _k_blocks(rng: np.random.Generator, qtype, rows: int, cols: int) -> np.ndarray:
    """Valid random K-quant data (gguf cannot quantise K types): random bytes, finite scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    for at in _K_F16_AT[qtype]:
        scale = rng.uniform(0.01, 0.05, size=data.shape[0]).astype(np.float16)
        col = at if at >= 0 else size + at
        data[:, col : col + 2] = scale.view(np.uint8).reshape(-1, 2)
    return data.reshape(rows, cols // block * size)


def _write(path, tensors: dict[str, tuple[np.ndarray, object]], heads=None) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    if heads:
        w.add_head_count(heads[0])
        w.add_head_count_kv(heads[1])
        w.add_embedding_length(heads[2])
    for name, (data, qtype) in tensors.items():
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _model(rng) -> tuple[dict, dict[str, np.ndarray]]:
    """GGUF tensors and the float values they stand for (dequantised by gguf where quantised)."""
    f32 = rng.standard_normal((24, 256)).astype(np.float32)
    f16 = rng.standard_normal((20, 256)).astype(np.float16)
    bf16_src = rng.standard_normal((16, 256)).astype(np.float32)
    conv = rng.standard_normal((12, 10, 3)).astype(np.float32)  # (out, in, k)
    q8 = rng.standard_normal((32, 256)).astype(np.float32)
    q4 = rng.standard_normal((32, 256)).astype(np.float32)
    tensors = {
        "token_embd.weight": (f32, None),
        "blk.0.attn_q.weight": (f16, None),
        "blk.0.attn_k.weight": (gguf.quants.quantize(bf16_src, Q.BF16), Q.BF16),
        "blk.0.ffn_up.weight": (gguf.quants.quantize(q8, Q.Q8_0), Q.Q8_0),
        "blk.0.ffn_down.weight": (gguf.quants.quantize(q4, Q.Q4_0), Q.Q4_0),
        "blk.0.attn_output.weight": (_k_blocks(rng, Q.Q4_K, 16, 512), Q.Q4_K),
        "blk.0.ffn_gate.weight": (_k_blocks(rng, Q.Q5_K, 24, 256), Q.Q5_K),
        "blk.1.attn_v.weight": (_k_blocks(rng, Q.Q6_K, 12, 512), Q.Q6_K),
        "conv1.weight": (conv, None),
        "output_norm.weight": (rng.standard_normal(256).astype(np.float32), None),
    }
    values = {}
    for name, (data, qtype) in tensors.items():
        if qtype is None:
            values[name] = data
        elif qtype == Q.BF16:
            values[name] = gguf.quants.dequantize(data, qtype)  # bf16 -> float32, exact
        else:
            values[name] = gguf.quants.dequantize(data, qtype).astype(np.float32)
    return tensors, values


def _layers(path) -> dict[str, dict]:
    report = analyze_checkpoint(path, AnalyzeConfig(farms=False, min_size=5, threads=1))
    return {layer.name: layer.to_dict() for layer in report.layers}


def test_gguf_tensors_read_lazily_in_pytorch_layout_with_quant_types(tmp_path):
    tensors, values = _model(np.random.default_rng(0))
    path = tmp_path / "m.gguf"
    _write(path, tensors)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "gguf"
        handles = {h.name: h for h in ckpt.handles()}
        assert set(handles) == set(tensors)
        for name, want in values.items():
            h = handles[name]
            assert h.shape == want.shape, name  # GGUF's reversed dims undone
            got = h.load()
            assert tuple(got.shape) == h.shape and str(got.dtype) == "torch." + h.dtype
            np.testing.assert_array_equal(got.float().numpy(), want.astype(np.float32))
        meta = {
            n: (h.dtype, h.meta["quant_type"], h.meta["stored_dtype"]) for n, h in handles.items()
        }
    assert meta["blk.0.attn_q.weight"] == ("float16", "F16", "float16")
    assert meta["blk.0.attn_k.weight"] == ("bfloat16", "BF16", "bfloat16")
    assert meta["blk.0.ffn_up.weight"] == ("float32", "Q8_0", "Q8_0")
    assert meta["blk.0.attn_output.weight"] == ("float32", "Q4_K", "Q4_K")
    assert meta["blk.1.attn_v.weight"] == ("float32", "Q6_K", "Q6_K")


def test_gguf_spectra_equal_safetensors_of_the_same_and_of_the_dequantised_values(tmp_path):
    tensors, values = _model(np.random.default_rng(1))
    _write(tmp_path / "m.gguf", tensors)
    as_stored = {}
    for name, (data, qtype) in tensors.items():
        as_stored[name] = values[name] if qtype not in (None,) else data
    save_file({k: np.ascontiguousarray(v) for k, v in as_stored.items()},
              str(tmp_path / "same.safetensors"))
    got, want = _layers(tmp_path / "m.gguf"), _layers(tmp_path / "same.safetensors")
    assert set(got) == set(want) and len(got) == 9
    for name, layer in got.items():
        other = want[name]
        for key in ("shape", "matrix_shape", "kind", "sigma_max", "sigma_min", "lambda_max",
                    "alpha", "numerical_rank", "esd"):
            assert layer[key] == other[key], (name, key)
        data, qtype = tensors[name]
        stored = qtype.name if qtype is not None else {"float32": "F32", "float16": "F16"}[
            str(data.dtype)
        ]
        assert layer["quant_type"] == stored and other["quant_type"] is None
    for name in ("blk.0.ffn_down.weight", "blk.0.attn_output.weight", "blk.1.attn_v.weight"):
        sv = np.linalg.svd(values[name].astype(np.float64), compute_uv=False)
        assert got[name]["sigma_max"] == pytest.approx(sv[0], rel=1e-12)
        assert got[name]["sigma_min"] == pytest.approx(sv[-1], rel=1e-9)
        assert got[name]["quant_type"] in ("Q4_0", "Q4_K", "Q6_K")


def test_gguf_unknown_quant_type_skips_that_tensor_and_reads_the_rest(tmp_path):
    tensors, _ = _model(np.random.default_rng(2))
    path = tmp_path / "m.gguf"
    _write(path, tensors)
    reader = gguf.GGUFReader(str(path), "r+")  # rewrite one tensor's type code in place
    target = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    target.field.parts[4][0] = 250
    reader.data.flush()
    del reader
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["analyze", str(path), "-f", "json", "-o", str(out),
                                   "--min-size", "5", "--no-farms"])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    assert "type 250 is unknown" in skipped["blk.0.ffn_up.weight"]
    assert len(report["layers"]) == 8
    assert {la["quant_type"] for la in report["layers"]} >= {"Q4_K", "Q5_K", "Q6_K", "F16"}


def test_truncated_gguf_is_one_line_exit_2_no_output(tmp_path):
    tensors, _ = _model(np.random.default_rng(3))
    path = tmp_path / "m.gguf"
    _write(path, tensors)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated GGUF file: tensor '.*' ends at byte"):
        open_checkpoint(path)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["analyze", str(path), "-f", "json", "-o", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output and not out.exists()
    assert len(res.stderr.strip().splitlines()) == 1
    path.write_bytes(data[:40])  # inside the header
    with pytest.raises(CheckpointError, match="not a readable GGUF file"):
        open_checkpoint(path)


def test_missing_gguf_package_names_the_extra(tmp_path, monkeypatch):
    import spectracli.io.gguf_reader as reader

    tensors, _ = _model(np.random.default_rng(4))
    _write(tmp_path / "m.gguf", tensors)
    monkeypatch.setitem(__import__("sys").modules, "gguf", None)  # import gguf -> ImportError
    monkeypatch.setattr(reader, "_reader_cls", None)
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "m.gguf")])
    assert res.exit_code == 2
    assert "pip install 'spectracli[gguf]'" in res.stderr and "Traceback" not in res.output


def test_gguf_metadata_gives_the_head_counts_that_split_attn_qkv(tmp_path):
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((r, 32)).astype(np.float32) for r in (32, 16, 16))
    qkv = np.concatenate([q, k, v])  # 4 heads, 2 kv heads, head_dim 8: rows [q | k | v]
    _write(tmp_path / "m.gguf", {"blk.0.attn_qkv.weight": (qkv, None)}, heads=(4, 2, 32))
    with open_checkpoint(tmp_path / "m.gguf") as ckpt:
        assert ckpt.config["model_type"] == "llama"
        assert (ckpt.config["num_attention_heads"], ckpt.config["num_key_value_heads"]) == (4, 2)
    layers = _layers(tmp_path / "m.gguf")
    assert {n: la["matrix_shape"] for n, la in layers.items()} == {
        "blk.0.attn_qkv.weight[q]": [32, 32], "blk.0.attn_qkv.weight[k]": [16, 32],
        "blk.0.attn_qkv.weight[v]": [16, 32]}
    for part, want in (("q", q), ("k", k), ("v", v)):
        sv = np.linalg.svd(want.astype(np.float64), compute_uv=False)
        assert layers[f"blk.0.attn_qkv.weight[{part}]"]["sigma_max"] == pytest.approx(sv[0])
