"""analyze_checkpoint end to end on checkpoints the tests write, against known spectra."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.errors import SpectraError
from spectracli.results import SCHEMA_VERSION, dumps_report, parse_report


def known(m: int, n: int, s: np.ndarray, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
    v, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
    return torch.from_numpy((u * s) @ v.T)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "model.safetensors"
    s = np.geomspace(10.0, 0.01, 40)
    tensors = {
        "fc.weight": known(80, 40, s, 0).float(),
        "fc.bias": torch.zeros(80),
        "conv.weight": torch.randn(32, 16, 3, 3, generator=torch.Generator().manual_seed(1)),
        "emb.word_embeddings.weight": torch.randn(500, 24).to(torch.bfloat16),
        "bad.weight": torch.full((20, 20), float("nan")),
        "zero.weight": torch.zeros(20, 30),
        "small.weight": torch.randn(4, 30),
        "steps": torch.tensor([3]),
    }
    save_file(tensors, str(path))
    return path, tensors, s


@pytest.fixture(scope="module")
def report(ckpt):
    return analyze_checkpoint(ckpt[0], AnalyzeConfig(device="cpu", farms_window=16)).to_dict()


def by_name(report):
    return {layer["name"]: layer for layer in report["layers"]}


def test_every_tensor_is_analysed_or_skipped_with_a_reason(report, ckpt):
    names = set(by_name(report)) | {s["name"] for s in report["skipped"]}
    assert names == set(ckpt[1])
    reasons = {s["name"]: s["reason"] for s in report["skipped"]}
    assert reasons["fc.bias"].startswith("1-D")
    assert reasons["steps"] == "non-float dtype int64"
    assert reasons["small.weight"] == "matrix 4x30 has fewer than min_size=10 rows or columns"


def test_linear_layer_metrics_match_the_constructed_singular_values(report, ckpt):
    layer = by_name(report)["fc.weight"]
    s = ckpt[2]
    w = ckpt[1]["fc.weight"].double().numpy()  # float32 storage: compare with its own SVD
    sv = np.linalg.svd(w, compute_uv=False)
    assert layer["kind"] == "linear" and layer["status"] == "ok"
    assert layer["sigma_max"] == pytest.approx(sv[0], rel=1e-10)
    assert layer["sigma_max"] == pytest.approx(s[0], rel=1e-6)  # float32 rounding of W
    assert layer["condition_number"] == pytest.approx(sv[0] / sv[-1], rel=1e-8)
    assert layer["lambda_max"] == pytest.approx(sv[0] ** 2, rel=1e-10)
    assert layer["n_eigenvalues"] == 40
    np.testing.assert_allclose(layer["esd"]["values"], np.sort(sv**2), rtol=1e-6)
    assert layer["fit_status"] == "ok" and layer["alpha"] > 1
    assert layer["farms"]["window_rows"] == 16 and layer["farms"]["n_windows"] > 1


def test_conv_kernel_is_pooled_over_kernel_positions(report, ckpt):
    layer = by_name(report)["conv.weight"]
    k = ckpt[1]["conv.weight"].double()
    slices = k.permute(2, 3, 0, 1).reshape(9, 32, 16).numpy()
    sv = np.linalg.svd(slices, compute_uv=False)
    assert layer["kind"] == "conv2d" and layer["n_matrices"] == 9
    assert layer["n_eigenvalues"] == 9 * 16
    assert layer["sigma_max"] == pytest.approx(sv.max(), rel=1e-10)
    assert layer["farms"]["n_windows"] % 9 == 0


def test_embedding_bf16_is_upcast_and_marked(report, ckpt):
    layer = by_name(report)["emb.word_embeddings.weight"]
    w = ckpt[1]["emb.word_embeddings.weight"].double().numpy()
    assert layer["kind"] == "embedding" and layer["dtype"] == "bfloat16"
    assert layer["sigma_max"] == pytest.approx(np.linalg.norm(w, 2), rel=1e-10)
    assert any("embedding" in w for w in layer["warnings"])


def test_per_layer_problems_do_not_stop_the_rest(report):
    layers = by_name(report)
    assert layers["bad.weight"]["status"] == "nonfinite"
    assert layers["bad.weight"]["alpha"] is None
    assert layers["zero.weight"]["status"] == "zero"
    assert layers["zero.weight"]["sigma_max"] == 0.0
    assert layers["zero.weight"]["fit_status"] is None
    assert report["summary"]["n_not_ok"] == 2


def test_report_shape_and_json_round_trip(report):
    for key in ("schema_version", "tool_version", "source", "settings", "layers", "skipped",
                "summary", "timing"):
        assert key in report
    assert report["schema_version"] == SCHEMA_VERSION and report["kind"] == "analyze"
    assert report["source"]["format"] == "safetensors" and report["source"]["n_tensors"] == 8
    back = parse_report(dumps_report(report))
    assert by_name(back)["fc.weight"]["sigma_max"] == by_name(report)["fc.weight"]["sigma_max"]
    json.loads(dumps_report(report))


def test_include_exclude_and_no_farms(ckpt):
    rep = analyze_checkpoint(
        ckpt[0], AnalyzeConfig(include=("*.weight",), exclude=("conv.*",), farms=False)
    ).to_dict()
    assert set(by_name(rep)) == {"fc.weight", "emb.word_embeddings.weight", "bad.weight",
                                 "zero.weight"}
    assert all(layer["farms"] is None for layer in rep["layers"])
    assert any(s["reason"] == "excluded by include/exclude" for s in rep["skipped"])


def test_base_analyses_the_difference(tmp_path):
    g = torch.Generator().manual_seed(2)
    base = {"a.weight": torch.randn(30, 20, generator=g, dtype=torch.float64),
            "b.weight": torch.randn(30, 20, generator=g, dtype=torch.float64)}
    delta = known(30, 20, np.linspace(3.0, 1.0, 20), 3)
    tuned = {"a.weight": base["a.weight"] + delta, "b.weight": base["b.weight"].clone(),
             "c.weight": torch.randn(30, 20, dtype=torch.float64)}
    save_file(base, str(tmp_path / "base.safetensors"))
    save_file(tuned, str(tmp_path / "tuned.safetensors"))
    rep = analyze_checkpoint(tmp_path / "tuned.safetensors",
                             AnalyzeConfig(base=tmp_path / "base.safetensors")).to_dict()
    layers = by_name(rep)
    assert layers["a.weight"]["sigma_max"] == pytest.approx(3.0, rel=1e-12)
    assert layers["a.weight"]["condition_number"] == pytest.approx(3.0, rel=1e-10)
    assert layers["b.weight"]["status"] == "zero"
    assert {s["name"]: s["reason"] for s in rep["skipped"]}["c.weight"] == (
        "not in the base checkpoint")
    save_file({"x.weight": torch.randn(30, 20)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(SpectraError, match="no weight matrix in common"):
        analyze_checkpoint(tmp_path / "tuned.safetensors",
                           AnalyzeConfig(base=tmp_path / "other.safetensors"))


def test_rank_deficient_layer_is_flagged(tmp_path):
    s = np.array([4.0, 2.0, 1.0] + [0.0] * 17)
    save_file({"w": known(40, 20, s, 4)}, str(tmp_path / "r.safetensors"))
    layer = analyze_checkpoint(tmp_path / "r.safetensors").to_dict()["layers"][0]
    assert layer["rank_deficient"] is True
    assert layer["condition_number"] == math.inf
    assert layer["numerical_rank"] == 3
    assert any("rank deficient" in w for w in layer["warnings"])


@pytest.mark.parametrize(
    "config, message",
    [
        (AnalyzeConfig(fit="best"), "^fit must be one of 'ks', 'median', 'peak'; got 'best'"),
        (AnalyzeConfig(farms_window=1), "FARMS needs farms_window >= 2"),
        (AnalyzeConfig(dtype="float16"), "^dtype must be"),
        (AnalyzeConfig(device="tpu"), "^device must be"),
    ],
)
def test_bad_settings_are_usage_errors(ckpt, config, message):
    with pytest.raises(SpectraError, match=message):
        analyze_checkpoint(ckpt[0], config)


def test_parallel_workers_give_identical_ordered_results_and_restore_threads(ckpt):
    before = torch.get_num_threads()
    one = analyze_checkpoint(ckpt[0], AnalyzeConfig(threads=1, farms_window=16)).to_dict()
    two = analyze_checkpoint(ckpt[0], AnalyzeConfig(threads=2, farms_window=16)).to_dict()
    assert torch.get_num_threads() == before
    assert [layer["name"] for layer in one["layers"]] == [layer["name"] for layer in two["layers"]]
    for a, b in zip(one["layers"], two["layers"], strict=True):
        assert a["sigma_max"] == b["sigma_max"] and a["alpha"] == b["alpha"]


@pytest.mark.parametrize("shape", [(64, 64, 0), (0, 64, 64), (2, 0, 3, 3), (30, 0)])
def test_empty_tensors_are_skipped_with_a_reason(tmp_path, shape):
    # a (64, 64, 0) kernel planned zero (64, 64) slices and crashed in the metrics
    path = tmp_path / "e.safetensors"
    save_file({"e.weight": torch.zeros(shape), "w.weight": torch.randn(20, 12)}, str(path))
    report = analyze_checkpoint(path, AnalyzeConfig(ci_resamples=0, farms=False))
    assert [layer.name for layer in report.layers] == ["w.weight"]
    (skip,) = report.skipped
    assert skip.name == "e.weight" and skip.shape == list(shape)
    assert skip.reason == f"empty tensor {'x'.join(map(str, shape))}: a dimension of size 0"
    from spectracli.report.table import reason_group  # the table groups it without the shape

    assert reason_group(skip.reason) == "empty tensor: a dimension of size 0"
