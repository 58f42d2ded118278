"""The layer model on names, shapes and config.json alone: kinds, views, fused layouts, skips."""

import pytest
import torch

from spectracli.layers import Info, LayerOptions, as_stack, plan_layers


def plans(*infos, **kw):
    return {p.name: p for p in plan_layers(list(infos), **kw).plans}


def skips(*infos, **kw):
    return {s.name: s.reason for s in plan_layers(list(infos), **kw).skips}


def test_embedding_or_linear_from_evidence_not_names_alone():
    got = plans(
        Info("albert.embeddings.embedding_hidden_mapping_in.weight", (256, 128)),
        Info("albert.embeddings.embedding_hidden_mapping_in.bias", (256,)),
        Info("enc_emb.weight", (29, 256)),
        Info("positional_encoder.weight", (512, 256)),
        Info("bert.embeddings.word_embeddings.weight", (1000, 64)),
        Info("model.shared.weight", (1000, 64)),
        Info("lm_head.weight", (1000, 64)),
        Info("gpt_neox.embed_out.weight", (1000, 64)),
        Info("token_embd.weight", (1000, 64)),
        Info("blk.0.attn_q.weight", (64, 64)),
        Info("output.weight", (1000, 64)),
        Info("tbl.weight", (1000, 64)),
        Info("onnx_init_17", (1000, 64), meta={"kind": "embedding"}),
        config={"vocab_size": 1000, "hidden_size": 64},
    )
    kinds = {name: p.kind for name, p in got.items()}
    assert kinds == {
        "albert.embeddings.embedding_hidden_mapping_in.weight": "linear",  # has a bias
        "enc_emb.weight": "embedding",
        "positional_encoder.weight": "embedding",
        "bert.embeddings.word_embeddings.weight": "embedding",
        "model.shared.weight": "embedding",
        "lm_head.weight": "linear",
        "gpt_neox.embed_out.weight": "linear",
        "token_embd.weight": "embedding",
        "blk.0.attn_q.weight": "linear",
        "output.weight": "linear",
        "tbl.weight": "embedding",  # rows = vocab_size, cols = hidden, no bias
        "onnx_init_17": "embedding",  # the format said so
    }
    assert plans(Info("tbl.weight", (1000, 64)))["tbl.weight"].kind == "linear"  # no config


def test_norm_scales_stored_2d_are_skipped_as_such():
    got = skips(Info("enc.layer_norm.weight", (1, 219)), Info("x.w", (219, 1)))
    assert got["enc.layer_norm.weight"] == "norm scale stored as 1x219 (a vector, not a matrix)"
    assert got["x.w"].startswith("vector stored as 219x1")
    head = skips(Info("regressor.weight", (1, 64)), Info("regressor.bias", (1,)))
    assert head["regressor.weight"] == "matrix 1x64 has fewer than min_size=10 rows or columns"


def test_min_size_and_dtype_reasons_in_library_words():
    got = skips(Info("head.weight", (3, 64)), Info("ids", (4, 64), "int64"),
                Info("b", (64,)), Info("s", ()))
    assert got == {
        "head.weight": "matrix 3x64 has fewer than min_size=10 rows or columns",
        "ids": "non-float dtype int64",
        "b": "1-D tensor (bias, norm scale or buffer)",
        "s": "scalar",
    }
    assert skips(Info("attn.in_proj_weight", (24, 8)))["attn.in_proj_weight"] == (
        "its 3 matrices of 8x8 have fewer than min_size=10 rows or columns")


@pytest.mark.parametrize("shape, view, expect", [
    ((1024, 1, 31), "auto", ("unfold", (1024, 31), 1)),  # depthwise
    ((40, 40, 39), "auto", ("slices", (40, 40), 39)),  # long 1-D kernel
    ((128, 1, 512, 1), "auto", ("unfold", (128, 512), 1)),
    ((32, 3, 3, 3), "auto", ("unfold", (32, 27), 1)),  # RGB stem
    ((64, 32, 3, 3), "auto", ("slices", (64, 32), 9)),
    ((64, 8, 3, 3), "auto", ("unfold", (64, 72), 1)),  # slices 64x8 below min_size
    ((64, 32, 3, 3), "unfold", ("unfold", (64, 288), 1)),
    ((16, 16, 3, 3, 3), "slices", ("slices", (16, 16), 27)),
])
def test_conv_views(shape, view, expect):
    p = plans(Info("c.weight", shape), options=LayerOptions(conv_view=view))["c.weight"]
    assert (p.conv_view, p.matrix_shape, p.n_matrices) == expect
    assert p.kind == f"conv{len(shape) - 2}d"
    k = torch.randn(*shape)
    stack = as_stack(p.build({"c.weight": k}), p)
    assert tuple(stack.shape) == (expect[2], *expect[1])
    if view == "slices":  # kernel position (0, 1, 2) is the slice k[:, :, 0, 1, 2]
        torch.testing.assert_close(stack[5], k[:, :, 0, 1, 2])


def test_query_key_value_per_head_needs_the_config():
    h, d = 4, 8
    e = h * d
    w = torch.randn(3 * e, e)
    info = Info("gpt_neox.layers.0.attention.query_key_value.weight", (3 * e, e))
    fused = plans(info)
    (only,) = fused.values()
    assert only.rule == "fused.query_key_value.kept" and "num_attention_heads" in only.notes[0]
    got = plans(info, config={"model_type": "gpt_neox", "num_attention_heads": h,
                              "hidden_size": e})
    by_hand = w.view(h, 3, d, e)
    for j, part in enumerate("qkv"):
        p = got[f"{info.name}[{part}]"]
        torch.testing.assert_close(p.build({info.name: w}), by_hand[:, j].reshape(e, e))


def test_falcon_new_architecture_groups_and_grouped_query_qkv_proj():
    h, kv, d = 8, 2, 4
    e = h * d
    rows = (h + 2 * kv) * d
    w = torch.randn(rows, e)
    name = "transformer.h.0.self_attention.query_key_value.weight"
    got = plans(Info(name, (rows, e)), options=LayerOptions(min_size=1), config={
        "model_type": "falcon", "new_decoder_architecture": True, "num_attention_heads": h,
        "num_kv_heads": kv, "hidden_size": e})
    grouped = w.view(kv, h // kv + 2, d, e)
    torch.testing.assert_close(got[f"{name}[q]"].build({name: w}),
                               grouped[:, : h // kv].reshape(h * d, e))
    torch.testing.assert_close(got[f"{name}[v]"].build({name: w}),
                               grouped[:, -1].reshape(kv * d, e))
    name = "model.layers.0.self_attn.qkv_proj.weight"
    got = plans(Info(name, (rows, e)), options=LayerOptions(min_size=1), config={
        "num_attention_heads": h, "num_key_value_heads": kv, "hidden_size": e})
    assert [got[f"{name}[{p}]"].matrix_shape for p in "qkv"] == [(32, 32), (8, 32), (8, 32)]
    kept = plans(Info(name, (rows, e)))
    assert next(iter(kept.values())).rule == "fused.qkv.kept"  # no config: 48 rows, not 3 x 32


def test_gate_up_and_kv_splits():
    got = plans(Info("mlp.gate_up_proj.weight", (128, 32)), Info("attn.kv.weight", (64, 32)))
    assert set(got) == {"mlp.gate_up_proj.weight[gate]", "mlp.gate_up_proj.weight[up]",
                        "attn.kv.weight[k]", "attn.kv.weight[v]"}
    w = torch.randn(128, 32)
    torch.testing.assert_close(
        got["mlp.gate_up_proj.weight[up]"].build({"mlp.gate_up_proj.weight": w}), w[64:])


def test_include_exclude_reach_part_names():
    info = Info("attn.in_proj_weight", (96, 32))
    assert set(plans(info, include=["attn.in_proj_weight[q]"])) == {"attn.in_proj_weight[q]"}
    assert set(plans(info, exclude=["*[[]k]"])) == {"attn.in_proj_weight[q]",
                                                     "attn.in_proj_weight[v]"}
    assert skips(info, exclude=["attn.*"]) == {"attn.in_proj_weight":
                                               "excluded by include/exclude"}


def test_base_checkpoint_is_matched_per_source_tensor():
    layer_plan = plan_layers([Info("a.weight", (20, 20)), Info("b.weight", (20, 20)),
                              Info("c.weight", (20, 30))],
                             base={"a.weight": (20, 20), "c.weight": (30, 20)})
    assert [p.name for p in layer_plan.plans] == ["a.weight"]
    assert layer_plan.plans[0].subtract_base
    assert {s.name: s.reason for s in layer_plan.skips} == {
        "b.weight": "not in the base checkpoint",
        "c.weight": "shape [20, 30] differs from the base checkpoint's [30, 20]",
    }


def test_bad_options_raise_value_errors():
    with pytest.raises(ValueError, match="conv_view"):
        LayerOptions(conv_view="im2col")


def test_lstm_with_projection_and_onnx_layout_flags():
    # nn.LSTM(12, 20, proj_size=8): hh is (80, 8), H = 20 from weight_hr_l0 (8, 20)
    got = plans(Info("l.weight_ih_l0", (80, 12)), Info("l.weight_hh_l0", (80, 8)),
                Info("l.weight_hr_l0", (8, 20)), options=LayerOptions(min_size=1))
    assert got["l.weight_hh_l0[o]"].matrix_shape == (20, 8)
    assert got["l.weight_ih_l0[f]"].rule == "recurrent.lstm"
    assert got["l.weight_hr_l0"].rule == "kind.matrix"
    onnx = plans(Info("onnx::MatMul_7", (64, 32), meta={"kind": "linear", "transposed": True}))
    assert onnx["onnx::MatMul_7"].transposed


def test_the_layer_model_imports_no_io_cli_report_or_gate():
    import ast
    from pathlib import Path

    import spectracli.layers

    found = set()
    for path in Path(spectracli.layers.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    ours = {m for m in found if m.startswith("spectracli")}
    # Besides itself, only the dependency-free vocabulary (tests/test_architecture.py).
    vocabulary = {"spectracli.options", "spectracli.dtypes", "spectracli.errors"}
    assert ours and all(m.startswith("spectracli.layers") or m in vocabulary for m in ours), ours


def test_peft_wrapped_names_find_their_base_weight_and_kind():
    name = "base_model.model.model.embed_tokens.base_layer.weight"
    layer_plan = plan_layers([Info(name, (100, 64))], base={"model.embed_tokens.weight": (100, 64)})
    (p,) = layer_plan.plans
    assert p.kind == "embedding" and p.subtract_base
    assert p.base_names == ("model.embed_tokens.weight",)


def test_stacked_expert_biases_are_skipped_as_biases():
    got = skips(Info("model.layers.0.mlp.experts.down_proj_bias", (32, 2880)))
    assert got["model.layers.0.mlp.experts.down_proj_bias"].startswith("32x2880 stack of bias")


def test_tables_with_leading_singleton_axes_and_other_nd_tensors():
    got = plans(Info("vit.embeddings.pos_embed", (1, 197, 64)))
    p = got["vit.embeddings.pos_embed"]
    assert (p.rule, p.kind, p.matrix_shape) == ("kind.squeeze", "embedding", (197, 64))
    assert p.build({"vit.embeddings.pos_embed": torch.ones(1, 197, 64)}).shape == (197, 64)
    assert skips(Info("vit.cls_token", (1, 1, 64)))["vit.cls_token"].endswith("a vector")
    assert "neither a matrix" in skips(Info("x.table", (2, 3, 4, 5, 6, 7)))["x.table"]
