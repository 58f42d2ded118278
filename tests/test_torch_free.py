"""The torch-free analysis: numpy readers + the array-API math give the torch path's report.

Two checks, every numeric field of the JSON report to 1e-12 relative (timings and the creation
time excepted):

- readers: a checkpoint read by the numpy readers (torch never imported) against the same
  checkpoint read by torch (``safe_open(framework="pt")``, forced by hiding the numpy loaders);
  on the CPU both are solved in numpy, so this pins the readers (bfloat16 bit shift included).
- math: each layer of the sample models solved with torch tensors (the CUDA path's code, run on
  the CPU) against numpy arrays. The two LAPACK builds round differently; for these
  well-conditioned weights the measured gap is below 3e-14 (an eigenvalue at the rounding
  floor, |d lambda| <= c eps k lambda_max, would not agree relatively: rank-deficient data
  matrices such as digits.npz's pixels are left out of this check for that reason).
"""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.io import open_checkpoint
from spectracli.io.base import Checkpoint
from spectracli.io.safetensors_numpy import bfloat16_to_float32

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_models").glob("*.safetensors")) + sorted(
    (ROOT / "sample_models").glob("*.npz")
)
RTOL = 1e-12
IGNORED = {"created", "timing"}


class TorchOnly(Checkpoint):
    """A checkpoint whose handles have no numpy reader: analysis takes the torch path."""

    def __init__(self, inner: Checkpoint):
        self.inner = inner
        self.path, self.format, self.size_bytes = inner.path, inner.format, inner.size_bytes
        self.config, self.hub, self.stubbed_globals = inner.config, inner.hub, []

    def handles(self):
        for h in self.inner.handles():
            yield dataclasses.replace(h, numpy_loader=None)

    def close(self) -> None:
        self.inner.close()


def assert_same(a, b, where="report"):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            if key not in IGNORED:
                assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isinf(a):
            assert a == b or (math.isnan(a) and math.isnan(b)), where
        else:
            assert a == pytest.approx(b, rel=RTOL, abs=0), where
    else:
        assert a == b, where


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_torch_free_report_equals_the_torch_report(path):
    config = dict(device="cpu", ci_resamples=20)
    fast = analyze_checkpoint(path, AnalyzeConfig(**config)).to_dict()
    with open_checkpoint(path) as ckpt:
        slow = analyze_checkpoint(TorchOnly(ckpt), AnalyzeConfig(**config)).to_dict()
    assert fast["layers"], "nothing analysed"
    assert_same(fast, slow)


MODELS = [p for p in SAMPLES if p.suffix == ".safetensors"]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_torch_math_equals_numpy_math_on_every_layer(path):
    from spectracli.analyze import _plan, analyze_matrices
    from spectracli.layers import as_stack

    config = AnalyzeConfig(device="cpu", ci_resamples=20)
    with open_checkpoint(path) as ckpt:
        handles = {h.name: h for h in ckpt.handles()}
        plans, _ = _plan(list(handles.values()), config, None, ckpt.config)
        assert plans
        for plan in plans:
            results = []
            for load in ("load", "load_numpy"):
                tensors = {s: getattr(handles[s], load)() for s in plan.sources}
                mats = as_stack(plan.build(tensors), plan)
                layer = analyze_matrices(plan.name, mats, plan, config, plan.shape, plan.dtype)
                results.append(layer.to_dict())
            assert_same(*results, where=plan.name)


def test_cli_analyze_never_imports_torch(tmp_path):
    out = tmp_path / "r.json"
    code = (
        "import sys; from spectracli.cli.app import main\n"
        f"sys.argv = ['spectracli', 'analyze', {str(SAMPLES[0])!r}, '--device', 'cpu', "
        f"'--format', 'json', '-o', {str(out)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert out.stat().st_size > 0


def test_bfloat16_safetensors_read_by_bit_shift_equal_torch(tmp_path):
    import torch
    from safetensors.torch import save_file

    w = torch.randn(48, 20, dtype=torch.float32).to(torch.bfloat16)
    h = torch.tensor([[1.0, -2.5], [3.0e38, -1.0e-38]]).to(torch.bfloat16)
    path = tmp_path / "bf16.safetensors"
    save_file({"fc.weight": w, "odd": h}, path)
    with open_checkpoint(path) as ckpt:
        got = {hd.name: hd for hd in ckpt.handles()}
        for name, t in (("fc.weight", w), ("odd", h)):
            assert got[name].dtype == "bfloat16"
            arr = got[name].load_numpy()
            assert arr.dtype == np.float32
            np.testing.assert_array_equal(arr, t.to(torch.float32).numpy())  # exact
    fast = analyze_checkpoint(path, AnalyzeConfig(device="cpu", ci_resamples=0)).to_dict()
    with open_checkpoint(path) as ckpt:
        slow = analyze_checkpoint(TorchOnly(ckpt), AnalyzeConfig(device="cpu", ci_resamples=0))
    assert_same(fast, slow.to_dict())


def test_bit_shift_covers_special_values():
    bits = np.array([0x0000, 0x8000, 0x3F80, 0x7F7F, 0x0001, 0x7FC0, 0xFF80], dtype=np.uint16)
    import torch

    truth = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(bfloat16_to_float32(bits), truth)


def test_fp8_is_read_by_torch_and_solved_in_numpy(tmp_path):
    import torch
    from safetensors.torch import save_file

    w = (torch.randn(256, 130) * 0.5).to(torch.float8_e4m3fn)
    scale = torch.tensor([[2.0, 0.5], [1.0, 4.0]])
    path = tmp_path / "fp8.safetensors"
    save_file({"fc.weight": w, "fc.weight_scale_inv": scale, "fc2.weight": torch.randn(32, 16)},
              path)
    with open_checkpoint(path) as ckpt:
        loaders = {h.name: h.numpy_loader for h in ckpt.handles()}
    assert loaders["fc.weight"] is None and loaders["fc2.weight"] is not None  # fp8: torch only
    report = analyze_checkpoint(path, AnalyzeConfig(device="cpu", ci_resamples=0))
    layers = {layer.name: layer for layer in report.layers}
    assert sorted(layers) == ["fc.weight", "fc2.weight"]
    dense = w.to(torch.float64).numpy()
    dense *= np.kron(scale.numpy(), np.ones((128, 128)))[:, :130]
    sigma = np.linalg.svd(dense, compute_uv=False)
    assert layers["fc.weight"].sigma_max == pytest.approx(sigma[0], rel=1e-12)


def test_numpy_reads_of_every_dtype_and_of_shards_equal_torch_reads(tmp_path):
    import json

    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    want = {
        "a.f64": torch.randn(7, 5, generator=g, dtype=torch.float64),
        "a.f32": torch.randn(6, 4, generator=g),
        "b.f16": torch.randn(9, 3, generator=g).half(),
        "b.bf16": torch.randn(5, 8, generator=g).bfloat16(),
        "c.i64": torch.arange(12).reshape(3, 4),
        "c.u8": torch.arange(6, dtype=torch.uint8),
        "c.bool": torch.tensor([True, False, True]),
        "c.empty": torch.zeros(0, 4),
    }
    shards = {"s-1.safetensors": ["a.f32", "a.f64", "b.bf16"],
              "s-2.safetensors": ["b.f16", "c.bool", "c.empty", "c.i64", "c.u8"]}
    for shard, keys in shards.items():
        save_file({k: want[k] for k in keys}, tmp_path / shard)
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_checkpoint(tmp_path) as ckpt:
        handles = {h.name: h for h in ckpt.handles()}
        assert set(handles) == set(want)
        for name, tensor in want.items():
            arr = handles[name].load_numpy()
            assert arr.shape == tuple(tensor.shape)
            wide = tensor.float() if tensor.dtype == torch.bfloat16 else tensor
            np.testing.assert_array_equal(arr, wide.numpy())  # bit for bit
            assert torch.equal(handles[name].load(), tensor)  # the torch read is unchanged


def test_host_device_decides_the_cpu_without_torch(monkeypatch, tmp_path):
    import spectracli.device as device

    assert device.host_device("cpu") == "cpu"
    assert device.host_device("cuda") is None and device.host_device("cuda:1") is None
    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh CLI process
    monkeypatch.setattr(device.sys, "platform", "linux")
    monkeypatch.setattr(device, "GPU_DRIVER_FILES", (str(tmp_path / "nvidia0"),))
    assert device.host_device("auto") == "cpu"  # no driver: no GPU torch could see
    (tmp_path / "nvidia0").touch()
    assert device.host_device("auto") is None  # a driver: torch decides
    (tmp_path / "nvidia0").unlink()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert device.host_device("auto") is None  # one rank of several: torchrun's device
    assert "torch" not in sys.modules


def test_cli_default_device_is_torch_free_without_a_gpu_driver(tmp_path):
    from spectracli.device import GPU_DRIVER_FILES

    if any(Path(p).exists() for p in GPU_DRIVER_FILES):
        pytest.skip("a GPU driver is installed: auto lets torch decide")
    out = tmp_path / "r.json"
    code = (
        "import sys; from spectracli.cli.app import main\n"
        f"sys.argv = ['spectracli', 'analyze', {str(SAMPLES[0])!r}, '-o', {str(out)!r}, "
        "'--format', 'json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert '"device": "cpu"' in out.read_text()


def _gguf_file(path):
    gguf = pytest.importorskip("gguf")
    q = gguf.GGMLQuantizationType
    rng = np.random.default_rng(3)
    w = gguf.GGUFWriter(str(path), "llama")
    for name, data, qtype in (
        ("blk.0.attn_q.weight", rng.standard_normal((24, 64)).astype(np.float32), None),
        ("blk.0.attn_k.weight", rng.standard_normal((20, 64)).astype(np.float16), None),
        ("blk.0.attn_v.weight",
         gguf.quants.quantize(rng.standard_normal((16, 64)).astype(np.float32), q.BF16), q.BF16),
        ("blk.0.ffn_up.weight",
         gguf.quants.quantize(rng.standard_normal((32, 64)).astype(np.float32), q.Q8_0), q.Q8_0),
    ):
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _onnx_file(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    w = {
        "fc1.weight": rng.standard_normal((16, 32)).astype(np.float32),  # MatMul B: transposed
        "fc2.weight": rng.standard_normal((24, 32)).astype(np.float32),  # Gemm transB=1
        "q.weight": rng.integers(-128, 127, size=(20, 24)).astype(np.int8),
        "q.scale": rng.uniform(0.01, 0.1, size=24).astype(np.float32),
        "q.zero_point": rng.integers(-5, 5, size=24).astype(np.int8),
    }
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    bf16 = rng.standard_normal((12, 20)).astype(np.float32)
    inits.append(helper.make_tensor("bf.weight", TensorProto.BFLOAT16, bf16.shape,
                                    bf16.view(np.uint32) >> 16))
    nodes = [
        helper.make_node("MatMul", ["x", "fc1.weight"], ["h1"]),
        helper.make_node("Gemm", ["h1", "fc2.weight"], ["h2"], transB=1),
        helper.make_node("DequantizeLinear", ["q.weight", "q.scale", "q.zero_point"], ["qd"],
                         axis=1),
        helper.make_node("MatMul", ["h2", "qd"], ["h3"]),
        helper.make_node("Cast", ["bf.weight"], ["bf_f"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["h3", "bf_f"], ["h4"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("h4", TensorProto.FLOAT, [1, 12])], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.mark.parametrize("make, suffix", [(_gguf_file, ".gguf"), (_onnx_file, ".onnx")],
                         ids=["gguf", "onnx"])
def test_gguf_and_onnx_numpy_reads_and_reports_equal_torch(tmp_path, make, suffix):
    import torch

    path = tmp_path / f"model{suffix}"
    make(path)
    with open_checkpoint(path) as ckpt:
        handles = list(ckpt.handles())
        assert all(h.numpy_loader is not None for h in handles)
        for h in handles:
            t = h.load()
            wide = t.float() if t.dtype == torch.bfloat16 else t
            np.testing.assert_array_equal(h.load_numpy(), wide.numpy())  # bit for bit
    config = dict(device="cpu", ci_resamples=20, farms_window=8)
    fast = analyze_checkpoint(path, AnalyzeConfig(**config)).to_dict()
    with open_checkpoint(path) as ckpt:
        slow = analyze_checkpoint(TorchOnly(ckpt), AnalyzeConfig(**config)).to_dict()
    assert len(fast["layers"]) == 4
    assert_same(fast, slow)


def test_python_api_on_a_path_never_imports_torch():
    # spectracli.analyze(path) is the torch-free start too, not only the CLI (README table)
    code = (
        "import sys, spectracli\n"
        f"r = spectracli.analyze({str(SAMPLES[0])!r}, device='cpu', ci_resamples=0)\n"
        "assert r.layers, 'no layers'\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_numpy_read_without_memory_for_the_tensor_is_a_checkpoint_error(tmp_path, monkeypatch):
    # a header may truthfully describe a tensor larger than the memory (a sparse file)
    from safetensors.numpy import save_file

    from spectracli.errors import CheckpointError
    from spectracli.io import safetensors_numpy

    path = tmp_path / "w.safetensors"
    save_file({"w": np.ones((4, 3), dtype=np.float32)}, str(path))
    ckpt = open_checkpoint(path)
    handle = next(ckpt.handles())

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate")

    monkeypatch.setattr(safetensors_numpy.np, "empty", no_memory)
    with pytest.raises(CheckpointError, match=r"tensor 'w' of shape \(4, 3\).*not enough memory"):
        handle.load_numpy()
    ckpt.close()


def test_python_api_on_numpy_arrays_never_imports_torch():
    # a mapping of names to numpy arrays is read like an .npz: no torch (README table)
    code = (
        "import sys, numpy as np, spectracli\n"
        "rng = np.random.default_rng(0)\n"
        "w = rng.standard_normal((40, 30))\n"
        "r = spectracli.analyze({'fc.weight': w, 'head.weight': w, 'fc.bias': np.zeros(40)},\n"
        "                       device='cpu', ci_resamples=0)\n"
        "assert [la.name for la in r.layers] == ['fc.weight'], r.layers\n"
        "assert r.layers[0].aliases == ['head.weight'], r.layers[0].aliases\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_numpy_arrays_give_the_report_of_the_same_tensors_and_of_the_npz(tmp_path):
    import torch

    import spectracli
    from spectracli.io.arrays import array_checkpoint

    rng = np.random.default_rng(1)
    arrays = {
        "module.fc.weight": rng.standard_normal((50, 20)).astype(np.float32),
        "module.fc.bias": np.zeros(50, np.float32),
        "module.conv.weight": rng.standard_normal((12, 6, 3, 3)),
        "module.steps": np.array([3], np.int64),
        "module.mask": np.ones((20, 20), bool),
        "module.phase": np.ones((20, 20), np.complex64),  # not a tensor on the torch path either
        "module.big_endian.weight": rng.standard_normal((30, 20)).astype(">f8"),
    }
    arrays["module.tied.weight"] = arrays["module.fc.weight"]
    config = {"device": "cpu", "ci_resamples": 20, "farms_window": 8}
    mine = spectracli.analyze(arrays, **config).to_dict()
    native = {k: v.astype(v.dtype.newbyteorder("="), copy=False) for k, v in arrays.items()
              if v.dtype.kind != "c"}
    via_torch = spectracli.analyze({k: torch.from_numpy(v) for k, v in native.items()},
                                   **config).to_dict()
    assert_same(mine, via_torch)  # names, ties, skips, prefixes and numbers alike
    assert [la["name"] for la in mine["layers"]][:1] == ["fc.weight"]
    assert mine["layers"][0]["aliases"] == ["tied.weight"]
    with array_checkpoint(arrays) as ckpt:
        assert all(h.numpy_loader is not None for h in ckpt.handles())
        fc = next(h for h in ckpt.handles() if h.name == "fc.weight")
        assert fc.load_numpy() is arrays["module.fc.weight"]  # no copy
    np.savez(tmp_path / "same.npz", **{k.removeprefix("module."): v for k, v in arrays.items()
                                       if k != "module.tied.weight"})
    from_file = analyze_checkpoint(tmp_path / "same.npz", AnalyzeConfig(**config)).to_dict()
    assert_same([la for la in mine["layers"]],
                [dict(la, aliases=["tied.weight"]) if la["name"] == "fc.weight" else la
                 for la in from_file["layers"]])
