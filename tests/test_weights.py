"""Which tensors become matrices, and the reasons the others are skipped."""

import torch

from spectracli.weights import MatrixPlan, as_matrices, name_selected, plan_tensor


def test_plans_for_linear_embedding_and_convs():
    assert plan_tensor("fc.weight", (64, 32), "float32", 10) == MatrixPlan("linear", (64, 32), 1)
    assert plan_tensor("embeddings.word_embeddings.weight", (1000, 32), "bfloat16", 10).kind == (
        "embedding"
    )
    assert plan_tensor("model.embed_tokens.weight", (1000, 32), "float16", 10).kind == "embedding"
    assert plan_tensor("conv.weight", (32, 16, 3, 3), "float32", 10) == MatrixPlan(
        "conv2d", (32, 16), 9
    )
    assert plan_tensor("c.weight", (32, 16, 5), "float32", 10).kind == "conv1d"
    assert plan_tensor("c.weight", (32, 16, 3, 3, 3), "float32", 10).n_matrices == 27


def test_skips_say_why():
    assert plan_tensor("b", (64,), "float32", 10).startswith("1-D")
    assert plan_tensor("s", (), "float32", 10) == "scalar"
    assert plan_tensor("ids", (4, 64), "int64", 10) == "non-float dtype int64"
    assert "fewer than --min-size 10" in plan_tensor("head.weight", (3, 64), "float32", 10)
    assert "not a conv kernel" in plan_tensor("experts", (8, 64, 64), "float32", 10)


def test_conv_slices_are_the_kernel_positions():
    k = torch.randn(6, 4, 3, 2)
    mats = as_matrices(k, plan_tensor("c", k.shape, "float32", 1))
    assert mats.shape == (6, 6, 4)
    torch.testing.assert_close(mats[1 * 2 + 1], k[:, :, 1, 1])


def test_globs():
    assert name_selected("layer.0.attn.q.weight", ["*attn*"], [])
    assert not name_selected("layer.0.mlp.weight", ["*attn*"], [])
    assert not name_selected("layer.0.attn.q.weight", [], ["*.q.*"])
