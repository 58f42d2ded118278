"""ONNX through the ``onnx`` package: graphs built here with ``onnx.helper``, weights external.

Truth: the same weights in PyTorch layout saved as safetensors (MatMul's B transposed, Gemm's
``transB`` respected, a Transpose node followed, DequantizeLinear applied with numpy) must give
identical spectra and the kinds the consuming ops imply.
"""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.cli.app import app
from spectracli.errors import CheckpointError
from spectracli.io import open_checkpoint

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _model(rng: np.random.Generator):
    f32 = np.float32
    w = {
        "fc1.weight": rng.standard_normal((16, 32)).astype(f32),  # MatMul B: (in, out)
        "fc2.weight": rng.standard_normal((24, 32)).astype(f32),  # Gemm transB=1: (out, in)
        "fc3.weight": rng.standard_normal((24, 20)).astype(f32),  # Gemm transB=0: (in, out)
        "fc2.bias": rng.standard_normal(24).astype(f32),
        "emb.weight": rng.standard_normal((50, 16)).astype(f32),  # Gather data
        "conv.weight": rng.standard_normal((8, 4, 3, 3)).astype(f32),
        "proj.weight": rng.standard_normal((12, 16)).astype(f32),  # Transpose -> MatMul B
        "q.weight": rng.integers(-128, 127, size=(20, 12)).astype(np.int8),  # DequantizeLinear
        "q.scale": rng.uniform(0.01, 0.1, size=12).astype(f32),
        "q.zero_point": rng.integers(-5, 5, size=12).astype(np.int8),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "fc1.weight"], ["h1"]),
        helper.make_node("Gemm", ["h1", "fc2.weight", "fc2.bias"], ["h2"], transB=1),
        helper.make_node("Gemm", ["h2", "fc3.weight"], ["h3"]),
        helper.make_node("DequantizeLinear", ["q.weight", "q.scale", "q.zero_point"], ["qd"],
                         axis=1),
        helper.make_node("MatMul", ["h3", "qd"], ["h4"]),
        helper.make_node("Gather", ["emb.weight", "ids"], ["g"]),
        helper.make_node("Conv", ["img", "conv.weight"], ["y"]),
        helper.make_node("Transpose", ["proj.weight"], ["proj_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "proj_t"], ["h5"]),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16]),
        helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 5]),
        helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 4, 8, 8]),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in
               (("h4", [1, 12]), ("g", [1, 5, 16]), ("y", [1, 8, 6, 6]), ("h5", [1, 12]))]
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    deq = (w["q.weight"].astype(f32) - w["q.zero_point"].astype(f32)) * w["q.scale"]
    torch_layout = {
        "fc1.weight": w["fc1.weight"].T, "fc2.weight": w["fc2.weight"],
        "fc3.weight": w["fc3.weight"].T, "fc2.bias": w["fc2.bias"],
        "emb.weight": w["emb.weight"], "conv.weight": w["conv.weight"],
        "proj.weight": w["proj.weight"], "q.weight": deq.T,
    }
    return model, {k: np.ascontiguousarray(v) for k, v in torch_layout.items()}


def _save(model, path) -> None:
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)


def test_onnx_initializers_in_pytorch_layout_with_kinds_from_ops(tmp_path):
    model, want = _model(np.random.default_rng(0))
    path = tmp_path / "m.onnx"
    _save(model, path)
    assert (tmp_path / "m.onnx.data").stat().st_size > 0
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "onnx"
        handles = {h.name: h for h in ckpt.handles()}
        assert set(handles) == set(want)  # the scale and zero point are consumed
        for name, value in want.items():
            got = handles[name].load()
            assert handles[name].shape == value.shape == tuple(got.shape), name
            np.testing.assert_array_equal(got.numpy(), value, err_msg=name)
        kinds = {n: h.meta.get("kind") for n, h in handles.items()}
    assert kinds == {"fc1.weight": "linear", "fc2.weight": "linear", "fc3.weight": "linear",
                     "fc2.bias": None, "emb.weight": "embedding", "conv.weight": "conv",
                     "proj.weight": "linear", "q.weight": "linear"}
    assert handles["q.weight"].meta["quant_type"] == "int8"
    assert handles["q.weight"].dtype == "float32"


def test_onnx_spectra_equal_safetensors_of_the_same_weights(tmp_path):
    model, want = _model(np.random.default_rng(1))
    _save(model, tmp_path / "m.onnx")
    save_file(want, str(tmp_path / "same.safetensors"))
    config = AnalyzeConfig(farms=False, min_size=5, threads=1)
    got = {la.name: la.to_dict() for la in analyze_checkpoint(tmp_path / "m.onnx", config).layers}
    ref = {la.name: la.to_dict()
           for la in analyze_checkpoint(tmp_path / "same.safetensors", config).layers}
    assert set(got) == set(ref) == set(want) - {"fc2.bias"}
    for name in got:
        for key in ("shape", "matrix_shape", "n_matrices", "sigma_max", "sigma_min", "alpha",
                    "esd"):
            assert got[name][key] == ref[name][key], (name, key)
    assert got["emb.weight"]["kind"] == "embedding" and got["conv.weight"]["kind"] == "conv2d"
    assert got["q.weight"]["quant_type"] == "int8"


def test_onnx_missing_external_data_is_one_line_exit_2(tmp_path):
    model, _ = _model(np.random.default_rng(2))
    _save(model, tmp_path / "m.onnx")
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(CheckpointError, match="needs external data file 'm.onnx.data', missing"):
        open_checkpoint(tmp_path / "m.onnx")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "m.onnx"), "-f", "json",
                                   "-o", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output and not out.exists()
    assert len(res.stderr.strip().splitlines()) == 1


def test_onnx_truncated_external_data_and_garbage_model(tmp_path):
    model, _ = _model(np.random.default_rng(3))
    _save(model, tmp_path / "m.onnx")
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        open_checkpoint(tmp_path / "m.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\xff\xfe not protobuf \x00" * 10)
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        open_checkpoint(tmp_path / "bad.onnx")


def test_onnx_initializers_inside_the_model_file_recognised_without_suffix(tmp_path):
    model, want = _model(np.random.default_rng(4))
    onnx.save_model(model, str(tmp_path / "inline.model"))  # no external data, no .onnx
    with open_checkpoint(tmp_path / "inline.model") as ckpt:
        assert ckpt.format == "onnx"
        got = {h.name: h.load().numpy() for h in ckpt.handles()}
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_onnx_dynamic_quantisation_matmulinteger_uses_the_named_scale(tmp_path):
    rng = np.random.default_rng(5)
    wq = rng.integers(-128, 127, size=(16, 10)).astype(np.int8)
    zp, scale = np.array(3, dtype=np.int8), np.array(0.02, dtype=np.float32)
    inits = [numpy_helper.from_array(wq, "fc.weight_quantized"),
             numpy_helper.from_array(zp, "fc.weight_zero_point"),
             numpy_helper.from_array(scale, "fc.weight_scale"),
             numpy_helper.from_array(np.array(0, dtype=np.uint8), "x_zp")]
    nodes = [helper.make_node("MatMulInteger", ["xq", "fc.weight_quantized", "x_zp",
                                                "fc.weight_zero_point"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["accf", "fc.weight_scale"], ["y"])]
    graph = helper.make_graph(
        nodes, "dyn", [helper.make_tensor_value_info("xq", TensorProto.UINT8, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save_model(model, str(tmp_path / "dyn.onnx"))
    with open_checkpoint(tmp_path / "dyn.onnx") as ckpt:
        handles = {h.name: h for h in ckpt.handles()}
        assert set(handles) == {"fc.weight_quantized", "x_zp"}
        h = handles["fc.weight_quantized"]
        assert (h.shape, h.dtype, h.meta["kind"], h.meta["quant_type"]) == (
            (10, 16), "float32", "linear", "int8")
        want = ((wq.astype(np.float32) - 3) * np.float32(0.02)).T
        np.testing.assert_array_equal(h.load().numpy(), want)


def test_onnx_exporter_names_and_conv_transpose_from_the_graph(tmp_path):
    """torch.onnx names a bias-less Linear's transposed weight ``onnx::MatMul_8``: it is named
    after its MatMul node (``/encoder/fc1/MatMul`` -> ``encoder.fc1.weight``, the stored name an
    alias); a ConvTranspose W (in, out, k, k) is read as (out, in, k, k). Truth: numpy SVDs."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    w = {"onnx::MatMul_8": rng.standard_normal((16, 12)).astype(f32),  # (in, out)
         "up.weight": rng.standard_normal((12, 10, 3, 3)).astype(f32)}  # (in, out, k, k)
    nodes = [helper.make_node("MatMul", ["x", "onnx::MatMul_8"], ["h"], name="/encoder/fc1/MatMul"),
             helper.make_node("ConvTranspose", ["img", "up.weight"], ["y"], name="/up/ConvT")]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 12, 4, 4])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 12]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10, 6, 6])],
        [numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph)
    onnx.save_model(model, str(tmp_path / "m.onnx"))
    report = analyze_checkpoint(tmp_path / "m.onnx", AnalyzeConfig(
        farms=False, fit="median", min_size=3, conv_view="unfold")).to_dict()
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert set(layers) == {"encoder.fc1.weight", "up.weight"}
    fc = layers["encoder.fc1.weight"]
    assert fc["aliases"] == ["onnx::MatMul_8"] and fc["shape"] == [12, 16]
    assert fc["sigma_max"] == pytest.approx(
        float(np.linalg.svd(w["onnx::MatMul_8"].astype(np.float64), compute_uv=False)[0]),
        rel=1e-6)
    up = layers["up.weight"]
    assert up["transposed"] is True and up["matrix_shape"] == [10, 12 * 9]
    unfolded = w["up.weight"].astype(np.float64).transpose(1, 0, 2, 3).reshape(10, -1)
    assert up["sigma_max"] == pytest.approx(
        float(np.linalg.svd(unfolded, compute_uv=False)[0]), rel=1e-6)
