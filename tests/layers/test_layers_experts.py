"""Stacked MoE gate/up tensors split by each model family's real layout and orientation.

Truth: separate gate, up and down matrices (E experts, (out, in) = (I, H) and (H, I)) with
known singular values, fused the way each model stores them (transformers 5.x
modeling_<model>.py and conversion_mapping.py; the table in docs/checkpoints.md):

- (out, in), concatenated: Mixtral / Qwen-MoE / DeepSeek / OLMoE... ``experts.gate_up_proj``
  [E, 2I, H] = cat([gate, up], dim 1), down [E, H, I]; GraniteMoE on disk
  ``block_sparse_moe.input_linear.weight`` / ``output_linear.weight`` the same;
- (in, out), concatenated: Llama 4, [E, H, 2I] = cat([gate^T, up^T], dim 2), down [E, I, H];
- (in, out), interleaved: GPT-OSS, [E, H, 2I] with gate^T = [..., ::2], up^T = [..., 1::2];
- DBRX: w1 / v1 (E*I, H) rows of gate / up, w2 (E*I, H) rows of down^T.

The split must give back exactly (bit for bit) the (out, in) originals, and the analysed spectra
must equal a float64 numpy SVD of the originals (sigma_max 1e-10, sigma_min 1e-7 relative, as in
test_layers_rebuilt.py). H = 2I is included: the case where shapes alone cannot tell.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.layers import Info, plan_layers

CONFIG = AnalyzeConfig(fit="median", farms=False, store_esd=False, threads=1, ci_resamples=0)
E = 3


def _known(m: int, n: int, seed: int) -> torch.Tensor:
    """An m x n float64 matrix with singular values geomspace(5, 0.05) (well apart)."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return torch.from_numpy((u * np.geomspace(5.0, 0.05, k)) @ v.T)


def _originals(hidden: int, inter: int):
    gate = [_known(inter, hidden, 10 + e) for e in range(E)]
    up = [_known(inter, hidden, 20 + e) for e in range(E)]
    down = [_known(hidden, inter, 30 + e) for e in range(E)]
    return gate, up, down


def _fused(layout: str, gate, up, down) -> tuple[torch.Tensor, torch.Tensor]:
    """(gate_up, down) stacks as the model family stores them."""
    if layout == "out_in":  # torch.cat([w1, w3], dim=0) per expert, stacked (Concatenate(dim=1))
        return (torch.stack([torch.cat([g, u], 0) for g, u in zip(gate, up, strict=True)]),
                torch.stack(down))
    if layout == "llama4":  # bmm(x, W[e]).chunk(2, dim=-1)
        return (torch.stack([torch.cat([g.T, u.T], 1) for g, u in zip(gate, up, strict=True)]),
                torch.stack([d.T for d in down]))
    assert layout == "gpt_oss"  # x @ W[e]; gate, up = [..., ::2], [..., 1::2]
    stacks = []
    for g, u in zip(gate, up, strict=True):
        w = torch.empty(g.shape[1], 2 * g.shape[0], dtype=g.dtype)
        w[:, ::2], w[:, 1::2] = g.T, u.T
        stacks.append(w)
    return torch.stack(stacks), torch.stack([d.T for d in down])


CASES = [  # (model_type or None, layout, gate_up name, down name)
    ("mixtral", "out_in", "model.layers.0.mlp.experts.gate_up_proj",
     "model.layers.0.mlp.experts.down_proj"),
    ("qwen3_moe", "out_in", "model.layers.0.mlp.experts.gate_up_proj",
     "model.layers.0.mlp.experts.down_proj"),
    ("deepseek_v3", "out_in", "model.layers.1.mlp.experts.gate_up_proj",
     "model.layers.1.mlp.experts.down_proj"),
    ("granitemoe", "out_in", "model.layers.0.block_sparse_moe.input_linear.weight",
     "model.layers.0.block_sparse_moe.output_linear.weight"),
    ("llama4_text", "llama4", "model.layers.0.feed_forward.experts.gate_up_proj",
     "model.layers.0.feed_forward.experts.down_proj"),
    ("gpt_oss", "gpt_oss", "model.layers.0.mlp.experts.gate_up_proj",
     "model.layers.0.mlp.experts.down_proj"),
]


def _write(tmp_path, model_type, layout, gu_name, down_name, hidden, inter, config=True):
    gate, up, down = _originals(hidden, inter)
    gate_up, down_stack = _fused(layout, gate, up, down)
    tensors = {gu_name: gate_up, down_name: down_stack}
    if layout == "gpt_oss":
        tensors[gu_name + "_bias"] = torch.zeros(E, 2 * inter, dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))
    if config:
        (tmp_path / "config.json").write_text(json.dumps(
            {"model_type": model_type, "hidden_size": hidden, "intermediate_size": inter,
             "moe_intermediate_size": inter, "num_local_experts": E}))
    return tensors, gate, up, down


def _assert_spectra(layer: dict, original: torch.Tensor, name: str) -> None:
    sv = np.linalg.svd(original.numpy(), compute_uv=False)
    assert layer["matrix_shape"] == list(original.shape), name
    assert layer["sigma_max"] == pytest.approx(sv[0], rel=1e-10), name
    assert layer["sigma_min"] == pytest.approx(sv[-1], rel=1e-7), name


@pytest.mark.parametrize("hidden,inter", [(24, 10), (20, 10)])  # H = 2I: shapes cannot tell
@pytest.mark.parametrize("model_type,layout,gu_name,down_name", CASES)
def test_gate_up_split_gives_back_the_separate_matrices(tmp_path, model_type, layout, gu_name,
                                                        down_name, hidden, inter):
    tensors, gate, up, down = _write(tmp_path, model_type, layout, gu_name, down_name,
                                     hidden, inter)
    infos = [Info(k, tuple(v.shape)) for k, v in tensors.items()]
    plan = plan_layers(infos, config=json.loads((tmp_path / "config.json").read_text()))
    got = {p.name: p for p in plan.plans}
    for e in range(E):
        for part, want in (("gate", gate[e]), ("up", up[e])):
            p = got[f"{gu_name}[{e}.{part}]"]
            assert p.rule == "experts.gate_up" and p.notes == ()  # the model type says it all
            assert torch.equal(p.build(tensors), want), (p.name, layout)
        assert torch.equal(got[f"{down_name}[{e}]"].build(tensors), down[e]), layout
    report = analyze_checkpoint(tmp_path, CONFIG)
    layers = {la.name: la.to_dict() for la in report.layers}
    assert len(layers) == 3 * E
    for e in range(E):
        _assert_spectra(layers[f"{gu_name}[{e}.gate]"], gate[e], "gate")
        _assert_spectra(layers[f"{gu_name}[{e}.up]"], up[e], "up")
        _assert_spectra(layers[f"{down_name}[{e}]"], down[e], "down")


@pytest.mark.parametrize("model_type,layout,gu_name,down_name", CASES)
def test_without_a_config_the_down_projection_gives_the_orientation_and_a_note(
        model_type, layout, gu_name, down_name):
    gate, up, down = _originals(24, 10)
    gate_up, down_stack = _fused(layout, gate, up, down)
    tensors = {gu_name: gate_up, down_name: down_stack}
    if layout == "gpt_oss":
        tensors[gu_name + "_bias"] = torch.zeros(E, 20, dtype=torch.float64)
    plan = plan_layers([Info(k, tuple(v.shape)) for k, v in tensors.items()])
    got = {p.name: p for p in plan.plans}
    p = got[f"{gu_name}[1.gate]"]
    assert torch.equal(p.build(tensors), gate[1]) and torch.equal(
        got[f"{gu_name}[1.up]"].build(tensors), up[1])
    assert torch.equal(got[f"{down_name}[1]"].build(tensors), down[1])
    (note,) = p.notes  # the assumption is said, never silent
    assert "down projection beside it" in note
    assert {"out_in": "as every (out, in)", "llama4": "concatenated as Llama 4",
            "gpt_oss": "interleaved as GPT-OSS"}[layout] in note


def test_without_any_evidence_each_expert_is_analysed_fused_and_says_why(tmp_path):
    gate, up, down = _originals(24, 10)
    gate_up, _ = _fused("out_in", gate, up, down)
    plan = plan_layers([Info("m.experts.gate_up_proj", tuple(gate_up.shape))])
    assert [p.name for p in plan.plans] == [f"m.experts.gate_up_proj[{e}]" for e in range(E)]
    p = plan.plans[0]
    assert p.rule == "experts.gate_up.kept" and p.matrix_shape == (20, 24)
    assert torch.equal(p.build({"m.experts.gate_up_proj": gate_up}), gate_up[0])
    (note,) = p.notes
    assert note.startswith("analysed fused: ") and "no config came with the weights" in note
    # config.json sizes alone (no model type, no down projection) give the orientation
    plan = plan_layers([Info("m.experts.gate_up_proj", (E, 24, 20))],
                       config={"hidden_size": 24, "intermediate_size": 10})
    p = plan.plans[0]
    assert p.rule == "experts.gate_up" and p.transposed and p.matrix_shape == (10, 24)
    assert "config.json's sizes give (H, 2I)" in p.notes[0]
    # an unknown model type with H = 2I and nothing else: kept, and the warning names the type
    plan = plan_layers([Info("m.experts.gate_up_proj", (E, 20, 20))],
                       config={"model_type": "newmoe", "hidden_size": 20,
                               "intermediate_size": 10})
    assert plan.plans[0].rule == "experts.gate_up.kept"
    assert "model type 'newmoe' is not one of the known MoE layouts" in plan.plans[0].notes[0]
    # the note reaches the layer's warnings in the report
    save_file({"m.experts.gate_up_proj": gate_up.contiguous()},
              str(tmp_path / "m.safetensors"))
    layer = analyze_checkpoint(tmp_path / "m.safetensors", CONFIG).layers[0]
    assert any(w.startswith("analysed fused: ") for w in layer.warnings)


def test_dbrx_rows_w2_is_stored_in_out_and_read_transposed():
    hidden, inter = 24, 10
    gate, up, down = _originals(hidden, inter)
    tensors = {"transformer.blocks.0.ffn.experts.mlp.w1": torch.cat(gate, 0),
               "transformer.blocks.0.ffn.experts.mlp.v1": torch.cat(up, 0),
               # DbrxExpertGLU: down = h @ w2[e], w2[e] of shape (I, H)
               "transformer.blocks.0.ffn.experts.mlp.w2": torch.cat([d.T for d in down], 0)}
    config = {"model_type": "dbrx", "d_model": hidden,
              "ffn_config": {"moe_num_experts": E, "ffn_hidden_size": inter}}
    plan = plan_layers([Info(k, tuple(v.shape)) for k, v in tensors.items()], config=config)
    got = {p.name: p for p in plan.plans}
    for e in range(E):
        assert torch.equal(got[f"transformer.blocks.0.ffn.experts.mlp.w1[{e}]"].build(tensors),
                           gate[e])
        assert torch.equal(got[f"transformer.blocks.0.ffn.experts.mlp.v1[{e}]"].build(tensors),
                           up[e])
        w2 = got[f"transformer.blocks.0.ffn.experts.mlp.w2[{e}]"]
        assert w2.transposed and torch.equal(w2.build(tensors), down[e])


def test_the_model_forward_agrees_with_the_split_matrices():
    """Independent truth: transformers' own expert modules, run on random inputs."""
    pytest.importorskip("transformers")
    from transformers.models.gpt_oss.configuration_gpt_oss import GptOssConfig
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts
    from transformers.models.llama4.configuration_llama4 import Llama4TextConfig
    from transformers.models.llama4.modeling_llama4 import Llama4TextExperts

    hidden, inter = 24, 12  # both >= min_size: every part is planned
    x = torch.randn(5, hidden, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for module, model_type in (
        (Llama4TextExperts(Llama4TextConfig(hidden_size=hidden, intermediate_size=inter,
                                            num_local_experts=1, hidden_act="silu")),
         "llama4_text"),
        (GptOssExperts(GptOssConfig(hidden_size=hidden, intermediate_size=inter,
                                    num_local_experts=1)), "gpt_oss"),
    ):
        module = module.double()
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()),
                                    dtype=torch.float64))
        state = {f"layers.0.mlp.experts.{k}": v.detach() for k, v in module.state_dict().items()}
        plan = plan_layers([Info(k, tuple(v.shape)) for k, v in state.items()],
                           config={"model_type": model_type})
        got = {p.name: p.build(state) for p in plan.plans}
        gate = got["layers.0.mlp.experts.gate_up_proj[0.gate]"]  # (out, in) = (I, H)
        up = got["layers.0.mlp.experts.gate_up_proj[0.up]"]
        down = got["layers.0.mlp.experts.down_proj[0]"]  # (H, I)
        assert gate.shape == up.shape == (inter, hidden) and down.shape == (hidden, inter)
        with torch.no_grad():
            if model_type == "gpt_oss":  # its gate: (up + 1) * glu(gate), biases added
                b = module.gate_up_proj_bias[0]
                want = module._apply_gate(x @ module.gate_up_proj[0] + b)
                g, u = x @ gate.T + b[::2], x @ up.T + b[1::2]
                g, u = g.clamp(max=module.limit), u.clamp(-module.limit, module.limit)
                mine = (u + 1) * (g * torch.sigmoid(g * module.alpha))
                torch.testing.assert_close(mine, want, rtol=1e-12, atol=1e-12)
                out = mine @ down.T + module.down_proj_bias[0]
                torch.testing.assert_close(out, want @ module.down_proj[0] +
                                           module.down_proj_bias[0], rtol=1e-12, atol=1e-12)
            else:
                want = module(x)  # one expert: every token goes through it
                mine = (torch.nn.functional.silu(x @ gate.T) * (x @ up.T)) @ down.T
                torch.testing.assert_close(mine, want, rtol=1e-12, atol=1e-12)


def test_gguf_stacks_are_out_in_whatever_the_architecture():
    # ggml stores every matrix (out, in) (ne reversed): a llama4 GGUF is not Llama 4's (in, out)
    infos = [Info("blk.0.ffn_down_exps.weight", (E, 24, 10)),
             Info("blk.0.ffn_gate_up_exps.weight", (E, 20, 24))]
    got = {p.name: p for p in plan_layers(infos, config={"model_type": "llama4"}).plans}
    assert not got["blk.0.ffn_down_exps.weight[0]"].transposed
    gate = got["blk.0.ffn_gate_up_exps.weight[0.gate]"]
    assert not gate.transposed and gate.matrix_shape == (10, 24)
