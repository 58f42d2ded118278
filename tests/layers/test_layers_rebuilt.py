"""Weights rebuilt from several tensors (weight norm, spectral norm, LoRA) and stacked experts,
from real torch modules and a PEFT-shaped adapter saved to safetensors and .pt, against numpy
float64 SVDs of the matrices computed by hand.

Tolerances as in test_layers_real.py: sigma_max 1e-10, sigma_min and condition number 1e-7
(Gram-matrix error about eps * cond^2). LoRA: the r singular values from the QR core against the
SVD of the dense (alpha / r) B A to 1e-10 relative (both float64; the core's own error is a few
eps * cond).
"""

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.layers import Info, plan_layers
from spectracli.layers.adapters import LoraCore, lora_scale

CONFIG = AnalyzeConfig(fit="median", farms=False, store_esd=False, threads=2)
E, F, H = 4, 48, 32  # experts, expert width, hidden size


def _save(state, path):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


def _check(layer, mat, name):
    sv = np.linalg.svd(mat, compute_uv=False)
    sv = sv.reshape(-1, sv.shape[-1])
    assert layer["sigma_max"] == pytest.approx(sv.max(), rel=1e-10), name
    assert layer["sigma_min"] == pytest.approx(sv.min(), rel=1e-7), name
    assert layer["condition_number"] == pytest.approx((sv[:, 0] / sv[:, -1]).max(),
                                                      rel=1e-7), name


def _reparam_and_experts_state():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old weight_norm API, on purpose
        old = nn.utils.weight_norm(nn.Linear(40, 36))
    mods = nn.ModuleDict({
        "old": old,
        "new": nn.utils.parametrizations.weight_norm(nn.Conv1d(16, 24, 5)),
        "sn": nn.utils.spectral_norm(nn.Linear(20, 30)),
    })
    with torch.no_grad():  # weights away from their initial norms, as after training
        old.weight_g.mul_(torch.linspace(0.5, 2.0, 36).reshape(36, 1))
        mods["new"].parametrizations.weight.original0.mul_(3.0)
    mods["sn"](torch.randn(2, 20))  # one power-iteration step, as in training
    mods.eval()
    mods["sn"](torch.randn(2, 20))  # eval: the weight from the stored u, v (torch's own truth)
    state = {k: v.detach().clone() for k, v in mods.state_dict().items()}
    state["_truth_sn"] = mods["sn"].weight.detach().clone()
    g = torch.Generator().manual_seed(3)
    state["model.layers.0.mlp.experts.gate_up_proj"] = torch.randn(E, 2 * F, H, generator=g)
    state["model.layers.0.mlp.experts.down_proj"] = torch.randn(E, H, F, generator=g)
    return state


@pytest.fixture(scope="module", params=[".safetensors", ".pt"])
def rebuilt(request, tmp_path_factory):
    state = _reparam_and_experts_state()
    path = tmp_path_factory.mktemp("rebuilt") / f"model{request.param}"
    _save(state, path)
    return state, analyze_checkpoint(path, CONFIG).to_dict()


def test_weight_norm_and_spectral_norm_are_analysed_as_the_effective_weight(rebuilt):
    state, report = rebuilt
    w = {k: v.double().numpy() for k, v in state.items()}
    layers = {layer["name"]: layer for layer in report["layers"]}
    # old API: W = g * v / ||v||, the norm over all axes but 0
    v, g = w["old.weight_v"], w["old.weight_g"]
    _check(layers["old.weight"], g * v / np.linalg.norm(v, axis=1, keepdims=True), "old")
    assert layers["old.weight"]["rule"] == "reparam.weight_norm"
    assert layers["old.weight"]["sources"] == ["old.weight_g", "old.weight_v"]
    # parametrizations API on a conv kernel (24, 16, 5): slices of the effective kernel
    v = w["new.parametrizations.weight.original1"]
    g = w["new.parametrizations.weight.original0"]
    eff = g * v / np.sqrt((v**2).sum(axis=(1, 2), keepdims=True))
    _check(layers["new.weight"], np.stack([eff[:, :, k] for k in range(5)]), "new")
    assert layers["new.weight"]["rule"] == "reparam.weight_norm_parametrization"
    assert layers["new.weight"]["conv_view"] == "slices"
    # spectral norm: W_orig / (u . W_orig v), the layer's eval-mode weight
    sigma = w["sn.weight_u"] @ w["sn.weight_orig"] @ w["sn.weight_v"]
    _check(layers["sn.weight"], w["sn.weight_orig"] / sigma, "sn")
    # torch's eval-mode layer computes the same weight in float32: agreement to float32 rounding
    truth = np.linalg.svd(w["_truth_sn"], compute_uv=False)
    assert layers["sn.weight"]["sigma_max"] == pytest.approx(truth[0], rel=1e-6)
    assert layers["sn.weight"]["sigma_min"] == pytest.approx(truth[-1], rel=1e-6)
    names = set(layers) | {s["name"] for s in report["skipped"]}
    sources = {s for layer in report["layers"] for s in layer["sources"]}
    assert set(state) <= names | sources  # every tensor analysed (as a source) or skipped
    assert layers["sn.weight"]["rule"] == "reparam.spectral_norm"


def test_stacked_experts_one_result_per_expert_and_pooled_groups(rebuilt):
    state, report = rebuilt
    layers = {layer["name"]: layer for layer in report["layers"]}
    gu = state["model.layers.0.mlp.experts.gate_up_proj"].double().numpy()
    down = state["model.layers.0.mlp.experts.down_proj"].double().numpy()
    for e in range(E):
        _check(layers[f"model.layers.0.mlp.experts.gate_up_proj[{e}.gate]"], gu[e, :F], e)
        _check(layers[f"model.layers.0.mlp.experts.gate_up_proj[{e}.up]"], gu[e, F:], e)
        _check(layers[f"model.layers.0.mlp.experts.down_proj[{e}]"], down[e], e)
    groups = {g["name"]: g for g in report["groups"]}
    pooled = groups["model.layers.0.mlp.experts.down_proj"]
    members = [layers[f"model.layers.0.mlp.experts.down_proj[{e}]"] for e in range(E)]
    assert pooled["n_members"] == E and pooled["rule"] == "experts.stacked"
    assert pooled["worst_condition_number"] == max(m["condition_number"] for m in members)
    assert pooled["mean_alpha"] == pytest.approx(np.mean([m["alpha"] for m in members]))
    assert groups["model.layers.0.mlp.experts.gate_up_proj"]["n_members"] == 2 * E


def _adapter(tmp, suffix, with_config=True, rslora=False):
    """A PEFT-shaped adapter on a 2-layer model: q_proj and v_proj, r = 8, lora_alpha = 16."""
    g = torch.Generator().manual_seed(7)
    base = {f"model.layers.{i}.self_attn.{p}.weight": torch.randn(H, H, generator=g)
            for i in range(2) for p in ("q_proj", "v_proj")}
    adapter = {}
    for name in base:
        module = "base_model.model." + name[: -len(".weight")]
        adapter[f"{module}.lora_A.weight"] = torch.randn(8, H, generator=g) * 0.1
        adapter[f"{module}.lora_B.weight"] = torch.randn(H, 8, generator=g) * 0.1
    directory = tmp / f"adapter{suffix}{with_config}{rslora}"
    directory.mkdir()
    _save(adapter, directory / f"adapter_model{suffix if suffix == '.safetensors' else '.bin'}")
    if with_config:
        (directory / "adapter_config.json").write_text(json.dumps(
            {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_rslora": rslora,
             "target_modules": ["q_proj", "v_proj"]}))
    _save(base, tmp / f"base{suffix}")
    return directory, tmp / f"base{suffix}", base, adapter


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_lora_update_singular_values_and_merged_weight(tmp_path, suffix):
    directory, base_path, base, adapter = _adapter(tmp_path, suffix)
    report = analyze_checkpoint(directory, CONFIG).to_dict()
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert len(layers) == 4 and not report["skipped"]
    name = "base_model.model.model.layers.1.self_attn.v_proj"
    layer = layers[f"{name}.delta_weight"]
    a = adapter[f"{name}.lora_A.weight"].double().numpy()
    b = adapter[f"{name}.lora_B.weight"].double().numpy()
    dense = np.linalg.svd((16 / 8) * b @ a, compute_uv=False)[:8]
    assert layer["rule"] == "adapter.lora" and layer["n_eigenvalues"] == 8
    assert layer["shape"] == [H, H] and layer["matrix_shape"] == [8, 8]
    assert layer["sigma_max"] == pytest.approx(dense[0], rel=1e-10)
    assert layer["sigma_min"] == pytest.approx(dense[-1], rel=1e-10)
    assert layer["farms"] is None and not any("scale" in w for w in layer["warnings"])
    merged = analyze_checkpoint(directory, AnalyzeConfig(
        fit="median", farms=False, store_esd=False, base=base_path)).to_dict()
    layers = {layer["name"]: layer for layer in merged["layers"]}
    w = base["model.layers.1.self_attn.v_proj.weight"].double().numpy()
    got = layers["model.layers.1.self_attn.v_proj.weight"]
    assert got["rule"] == "adapter.lora_merged"
    assert "base:model.layers.1.self_attn.v_proj.weight" in got["sources"]
    _check(got, w + 2.0 * b @ a, "merged")


def test_lora_core_equals_dense_svd_and_scales(tmp_path):
    rng = np.random.default_rng(0)
    for out, inp, r in ((64, 48, 8), (20, 300, 16), (6, 40, 8)):  # last: out < r
        a, b = rng.standard_normal((r, inp)), rng.standard_normal((out, r))
        core = LoraCore("a", "b", 0.5)({"a": torch.from_numpy(a), "b": torch.from_numpy(b)})
        dense = np.linalg.svd(0.5 * b @ a, compute_uv=False)[: min(r, out, inp)]
        got = np.linalg.svd(core.numpy(), compute_uv=False)
        np.testing.assert_allclose(got, dense, rtol=1e-10)
    config = {"r": 16, "lora_alpha": 32, "alpha_pattern": {"v_proj": 64}}
    assert lora_scale("model.layers.0.self_attn.q_proj", 16, config) == 2.0
    assert lora_scale("model.layers.0.self_attn.v_proj", 16, config) == 4.0
    assert lora_scale("x.q_proj", 16, {**config, "use_rslora": True}) == 32 / 4
    assert lora_scale("x.q_proj", 16, None) is None


def test_lora_without_adapter_config_says_scale_one(tmp_path):
    directory, *_ = _adapter(tmp_path, ".safetensors", with_config=False)
    layer = analyze_checkpoint(directory, CONFIG).to_dict()["layers"][0]
    assert any("scale 1" in w for w in layer["warnings"])


def test_no_split_keeps_gate_up_per_expert_and_dbrx_rows():
    infos = [Info("m.experts.gate_up_proj", (E, 2 * F, H)), Info("m.experts.down_proj", (E, H, F))]
    from spectracli.layers import LayerOptions
    plan = plan_layers(infos, options=LayerOptions(split=False))
    assert [p.name for p in plan.plans][:2] == ["m.experts.gate_up_proj[0]",
                                                 "m.experts.gate_up_proj[1]"]
    dbrx = plan_layers([Info("transformer.blocks.0.ffn.experts.mlp.w1", (E * F, H))],
                       config={"ffn_config": {"moe_num_experts": E, "ffn_hidden_size": F}})
    assert [p.matrix_shape for p in dbrx.plans] == [(F, H)] * E
    one = plan_layers([Info("model.layers.0.mlp.experts.3.w1.weight", (F * E, H)),
                       Info("model.layers.0.mlp.shared_experts.up_proj.weight", (F * E, H))],
                      config={"num_local_experts": E, "intermediate_size": F})
    assert [p.rule for p in one.plans] == ["kind.matrix", "kind.matrix"]


def test_gpt_oss_experts_are_stored_in_out_with_gate_and_up_interleaved():
    # transformers' GptOssExperts: gate_up = x @ W[e] (W[e]: (H, 2I)); gate, up = [..., ::2],
    # [..., 1::2]: the gate map (out, in) is W[e][:, ::2].T
    w = torch.randn(E, H, 2 * F)
    infos = [Info("m.experts.gate_up_proj", (E, H, 2 * F)), Info("m.experts.down_proj", (E, F, H))]
    got = {p.name: p for p in plan_layers(infos, config={"model_type": "gpt_oss"}).plans}
    gate = got["m.experts.gate_up_proj[2.gate]"]
    assert gate.transposed and gate.matrix_shape == (F, H)
    torch.testing.assert_close(gate.build({"m.experts.gate_up_proj": w}), w[2][:, ::2].T)
    up = got["m.experts.gate_up_proj[2.up]"].build({"m.experts.gate_up_proj": w})
    torch.testing.assert_close(up, w[2][:, 1::2].T)
    assert got["m.experts.down_proj[1]"].transposed


def test_new_spectral_norm_orthogonal_and_plain_rnn(tmp_path):
    torch.manual_seed(1)
    mods = nn.ModuleDict({
        "sn": nn.utils.parametrizations.spectral_norm(nn.Linear(20, 30)),
        "orth": nn.utils.parametrizations.orthogonal(nn.Linear(16, 16)),
        "rnn": nn.RNN(12, 16),
    })
    mods["sn"](torch.randn(2, 20))  # one power-iteration step (training mode)
    mods.eval()
    with torch.no_grad():
        truth = mods["sn"].weight.double().numpy()  # eval: from the stored u, v (float32)
    state = {k: v.detach().contiguous() for k, v in mods.state_dict().items()}
    save_file(state, str(tmp_path / "m.safetensors"))
    report = analyze_checkpoint(tmp_path / "m.safetensors", CONFIG).to_dict()
    layers = {layer["name"]: layer for layer in report["layers"]}
    sn = layers["sn.weight"]
    assert sn["rule"] == "reparam.spectral_norm_parametrization"
    sv = np.linalg.svd(truth, compute_uv=False)
    assert sn["sigma_max"] == pytest.approx(sv[0], rel=1e-6)  # float32 truth
    assert sn["sigma_min"] == pytest.approx(sv[-1], rel=1e-6)
    orth = layers["orth.weight"]
    assert orth["rule"] == "reparam.parametrization_unknown" and orth["warnings"]
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    assert any("buffer of the parametrisation of orth.weight" in r for r in skipped.values())
    rnn = layers["rnn.weight_hh_l0"]
    assert rnn["rule"] == "recurrent.rnn" and rnn["part"] is None
    _check(rnn, state["rnn.weight_hh_l0"].double().numpy(), "rnn")


def test_dora_merged_and_embedding_lora_against_dense_formulas():
    rng = np.random.default_rng(2)
    w, a = rng.standard_normal((24, 40)), rng.standard_normal((4, 40))
    b = rng.standard_normal((24, 4))
    mag = rng.uniform(0.5, 2.0, 24)
    names = {"m.q.lora_A.weight": a, "m.q.lora_B.weight": b, "m.q.lora_magnitude_vector": mag}
    infos = [Info(k, v.shape) for k, v in names.items()]
    (plan,) = plan_layers(infos, adapter_config={"r": 4, "lora_alpha": 8},
                          base={"m.q.weight": (24, 40)}).plans
    tensors = {k: torch.from_numpy(v) for k, v in names.items()}
    tensors["base:m.q.weight"] = torch.from_numpy(w)
    v = w + 2.0 * b @ a  # DoRA (Liu et al. 2024; PEFT): m * V / ||V|| per output row
    expect = mag[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(plan.build(tensors).numpy(), expect, rtol=1e-12)
    # an embedding adapter: A (r, rows), B (dim, r), dW (rows, dim) = (B A)^T
    ea, eb = rng.standard_normal((4, 100)), rng.standard_normal((16, 4))
    infos = [Info("e.lora_embedding_A", ea.shape), Info("e.lora_embedding_B", eb.shape)]
    (plan,) = plan_layers(infos, adapter_config={"r": 4, "lora_alpha": 4}).plans
    assert plan.kind == "embedding" and plan.shape == (100, 16)
    core = plan.build({"e.lora_embedding_A": torch.from_numpy(ea),
                       "e.lora_embedding_B": torch.from_numpy(eb)})
    np.testing.assert_allclose(np.linalg.svd(core.numpy(), compute_uv=False),
                               np.linalg.svd((eb @ ea).T, compute_uv=False)[:4], rtol=1e-10)
