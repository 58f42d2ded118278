"""Rank and conditioning at the precision the weights were stored in, and the norm quantities
(nuclear norm, spectral gap, norm products) against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectracli.results import norm_products
from spectracli.spectral import matrix_metrics, squared_singular_values
from spectracli.spectral.metrics import rank_tolerance, storage_eps


def _metrics(w: torch.Tensor):
    """Metrics of a stored matrix: spectrum in float64 of the stored values, its dtype's rank."""
    return matrix_metrics(squared_singular_values(w), tuple(w.shape[-2:]), stored_dtype=w.dtype)


def test_float32_rank_one_matrix_is_rank_one_with_infinite_condition():
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(40, 1, generator=g) @ torch.randn(1, 30, generator=g)).float()
    met = _metrics(w)
    assert met.numerical_rank == 1 == np.linalg.matrix_rank(w.numpy())
    assert met.rank_deficient and met.condition_number == math.inf
    # Read as float64-exact values, the rounding noise of the float32 entries looks like rank 30.
    exact = matrix_metrics(squared_singular_values(w), (40, 30))
    assert exact.numerical_rank == 30


@pytest.mark.parametrize("rank", [1, 3, 12])
@pytest.mark.parametrize("shape", [(40, 30), (25, 60)])
def test_float32_rank_equals_numpy_matrix_rank_on_the_stored_array(rank, shape):
    rng = np.random.default_rng(rank)
    w = (rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1])))
    w32 = w.astype(np.float32)
    met = _metrics(torch.from_numpy(w32))
    assert met.numerical_rank == np.linalg.matrix_rank(w32) == rank
    s = np.linalg.svd(w32.astype(np.float64), compute_uv=False)
    assert met.rank_tolerance == pytest.approx(s[0] * max(shape) * np.finfo(np.float32).eps)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_rank_uses_the_rounding_bound(dtype):
    g = torch.Generator().manual_seed(1)
    rank1 = (torch.randn(40, 1, generator=g) @ torch.randn(1, 30, generator=g)).to(dtype)
    met = _metrics(rank1)
    assert met.numerical_rank == 1 and met.rank_deficient
    # A full-rank Gaussian 256 x 128 stays full rank (numpy's max(m, n) * eps rule would put the
    # tolerance at 256 * 2^-7 = 2 x sigma_max for bfloat16 and call it rank 0).
    gauss = torch.randn(256, 128, generator=g).to(dtype)
    met = _metrics(gauss)
    assert met.numerical_rank == 128 and not met.rank_deficient
    lam = squared_singular_values(gauss)
    frob = float(gauss.double().norm())
    expected = 0.5 * torch.finfo(dtype).eps * frob
    assert float(rank_tolerance(lam, (256, 128), dtype)) == pytest.approx(expected, rel=1e-9)


def test_storage_eps_of_named_dtypes():
    assert storage_eps("bfloat16") == 2.0**-7
    assert storage_eps("float16") == 2.0**-10
    assert storage_eps("float8_e4m3fn") == 2.0**-3
    assert storage_eps("float32") == np.finfo(np.float32).eps
    assert storage_eps(None) == np.finfo(np.float64).eps
    assert storage_eps("Q4_K") == np.finfo(np.float32).eps  # unknown: float32


def test_nuclear_norm_and_spectral_gap_against_numpy():
    w = np.random.default_rng(3).standard_normal((70, 30))
    met = _metrics(torch.from_numpy(w))
    sv = np.linalg.svd(w, compute_uv=False)
    assert met.nuclear_norm == pytest.approx(np.linalg.norm(w, "nuc"), rel=1e-12)
    assert met.spectral_gap == pytest.approx(sv[0] - sv[1], rel=1e-9)
    assert met.spectral_gap_ratio == pytest.approx(sv[1] / sv[0], rel=1e-12)


def test_conv_stack_norms_are_those_of_the_block_diagonal_matrix():
    slices = np.random.default_rng(4).standard_normal((9, 16, 12))
    met = matrix_metrics(squared_singular_values(torch.from_numpy(slices)), (16, 12))
    blocks = np.zeros((9 * 16, 9 * 12))
    for k in range(9):
        blocks[16 * k:16 * (k + 1), 12 * k:12 * (k + 1)] = slices[k]
    sv = np.linalg.svd(blocks, compute_uv=False)
    assert met.sigma_max == pytest.approx(sv[0], rel=1e-12)
    assert met.nuclear_norm == pytest.approx(sv.sum(), rel=1e-12)
    assert met.frobenius_norm == pytest.approx(np.linalg.norm(blocks), rel=1e-12)
    assert met.spectral_gap == pytest.approx(sv[0] - sv[1], rel=1e-9)


def test_norm_products_skip_embeddings_and_sum_log10():
    rng = np.random.default_rng(5)
    mats = {"a": rng.standard_normal((20, 10)), "b": rng.standard_normal((10, 30)),
            "emb": rng.standard_normal((50, 10))}
    layers = []
    for name, w in mats.items():
        met = _metrics(torch.from_numpy(w))
        layers.append({"name": name, "kind": "embedding" if name == "emb" else "linear",
                       "status": "ok", "sigma_max": met.sigma_max,
                       "frobenius_norm": met.frobenius_norm})
    out = norm_products(layers)
    assert out["n_norm_product_layers"] == 2
    spec = np.linalg.norm(mats["a"], 2) * np.linalg.norm(mats["b"], 2)
    frob = np.linalg.norm(mats["a"]) * np.linalg.norm(mats["b"])
    assert out["log10_spectral_norm_product"] == pytest.approx(np.log10(spec), rel=1e-12)
    assert out["log10_frobenius_norm_product"] == pytest.approx(np.log10(frob), rel=1e-12)
    assert norm_products([])["log10_spectral_norm_product"] is None
    bad = {"name": "bad", "kind": "linear", "status": "nonfinite", "sigma_max": None}
    assert norm_products([*layers, bad])["log10_spectral_norm_product"] is None
    zero = {"name": "z", "kind": "linear", "status": "zero", "sigma_max": 0.0,
            "frobenius_norm": 0.0}
    assert norm_products([*layers, zero])["log10_spectral_norm_product"] == -math.inf


def test_a_rank_deficient_16_bit_layer_says_it_is_within_rounding_noise():
    """Square bfloat16 layers are flagged by any safe tolerance (docs/metrics.md,
    benchmarks/bf16_rank_tolerance.py); the warning says why; float32 keeps its words."""
    import spectracli

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(256, 256, generator=gen)
    (low,) = spectracli.analyze({"w": w.to(torch.bfloat16)}, farms=False, fit="median").layers
    assert low.rank_deficient
    assert (f"rank deficient: condition number is infinite (numerical rank "
            f"{low.numerical_rank}: the smallest singular values are within bfloat16 rounding "
            "noise)") in low.warnings
    rank_one = torch.outer(torch.randn(64, generator=gen), torch.randn(32, generator=gen))
    (f32,) = spectracli.analyze({"w": rank_one}, farms=False, fit="median").layers
    assert "rank deficient: condition number is infinite" in f32.warnings
