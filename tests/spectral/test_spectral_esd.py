"""ESD and norm metrics against numpy's SVD and constructed U diag(s) V^T matrices (float64)."""

import importlib
import math

import numpy as np
import pytest
import torch
from dense_truths import constructed

from spectracli.spectral import esd, matrix_metrics, squared_singular_values

EPS = np.finfo(np.float64).eps


@pytest.mark.parametrize("shape", [(50, 50), (120, 40), (40, 120), (300, 7)])
def test_esd_matches_numpy_svd_on_random_matrices(shape):
    w = np.random.default_rng(1).standard_normal(shape)
    ref = np.sort(np.linalg.svd(w, compute_uv=False) ** 2)
    got = esd(torch.from_numpy(w)).numpy()
    # eigvalsh of the Gram matrix: absolute error ~ eps * k * lambda_max (backward stability).
    np.testing.assert_allclose(got, ref, rtol=0, atol=50 * EPS * min(shape) * ref[-1])


@pytest.mark.parametrize("cond", [1e2, 1e6, 1e9, 1e12])
@pytest.mark.parametrize("shape", [(80, 60), (60, 80)])
def test_condition_numbers_to_1e12_against_known_singular_values(cond, shape):
    k = min(shape)
    s = np.geomspace(1.0, 1.0 / cond, k) * 3.0
    w = constructed(*shape, s)
    lam = squared_singular_values(torch.from_numpy(w)[None])
    met = matrix_metrics(lam, shape)
    # SVD error bound: |sigma_hat - sigma| <= c * max(m, n) * eps * sigma_max, c = 10.
    bound = 10 * max(shape) * EPS * s[0]
    assert abs(met.sigma_max - s[0]) <= bound
    assert abs(met.sigma_min - s[-1]) <= bound
    assert met.condition_number == pytest.approx(cond, rel=bound / s[-1] + 1e-12)
    assert not met.rank_deficient
    ref = np.linalg.svd(w, compute_uv=False)
    assert met.condition_number == pytest.approx(ref[0] / ref[-1], rel=max(1e-9, 2 * bound / s[-1]))


def test_rank_deficient_matrix_has_infinite_condition_and_true_rank():
    s = np.array([5.0, 4.0, 3.0, 2.0, 1.0] + [0.0] * 25)
    w = constructed(40, 30, s)
    met = matrix_metrics(squared_singular_values(torch.from_numpy(w)), (40, 30))
    assert met.rank_deficient
    assert met.condition_number == math.inf
    assert met.numerical_rank == 5 == np.linalg.matrix_rank(w)


def test_norm_metrics_against_numpy():
    w = np.random.default_rng(3).standard_normal((70, 30))
    met = matrix_metrics(squared_singular_values(torch.from_numpy(w)), w.shape)
    sv = np.linalg.svd(w, compute_uv=False)
    assert met.sigma_max == pytest.approx(np.linalg.norm(w, 2), rel=1e-12)
    assert met.lambda_max == pytest.approx(sv[0] ** 2, rel=1e-12)
    assert met.frobenius_norm == pytest.approx(np.linalg.norm(w, "fro"), rel=1e-12)
    assert met.stable_rank == pytest.approx((sv**2).sum() / sv[0] ** 2, rel=1e-12)
    p = sv**2 / (sv**2).sum()
    assert met.entropy == pytest.approx(-(p * np.log(p)).sum() / np.log(30), rel=1e-10)
    assert met.numerical_rank == 30


def test_entropy_is_one_for_flat_and_zero_for_rank_one_spectra():
    flat = constructed(20, 20, np.ones(20))
    one = constructed(20, 20, np.array([1.0] + [0.0] * 19))
    e_flat = matrix_metrics(squared_singular_values(torch.from_numpy(flat)), (20, 20)).entropy
    e_one = matrix_metrics(squared_singular_values(torch.from_numpy(one)), (20, 20)).entropy
    assert e_flat == pytest.approx(1.0, abs=1e-12)
    assert e_one == 0.0


def test_pooled_slices_follow_the_documented_per_slice_rules():
    rng = np.random.default_rng(4)
    slices = rng.standard_normal((9, 16, 12)) * rng.uniform(0.5, 2.0, (9, 1, 1))
    met = matrix_metrics(squared_singular_values(torch.from_numpy(slices)), (16, 12))
    sv = np.linalg.svd(slices, compute_uv=False)  # (9, 12) descending
    assert met.sigma_max == pytest.approx(sv[:, 0].max(), rel=1e-12)
    assert met.sigma_min == pytest.approx(sv[:, -1].min(), rel=1e-10)
    assert met.condition_number == pytest.approx((sv[:, 0] / sv[:, -1]).max(), rel=1e-10)
    assert met.frobenius_norm == pytest.approx(np.linalg.norm(slices.ravel()), rel=1e-12)
    assert met.stable_rank == pytest.approx(((sv**2).sum(1) / sv[:, 0] ** 2).mean(), rel=1e-12)


def test_svd_and_gram_methods_agree_and_normalize_divides_by_max_dim():
    w = torch.randn(64, 32, dtype=torch.float64)
    a = squared_singular_values(w, method="svd")
    b = squared_singular_values(w, method="gram")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(esd(w, normalize=True), esd(w) / 64)
    with pytest.raises(ValueError, match="method"):
        squared_singular_values(w, method="qr")


@pytest.mark.parametrize("shape", [(103, 7), (7, 103), (3, 41, 9)])
def test_blockwise_gram_equals_the_direct_product(monkeypatch, shape):
    esd_mod = importlib.import_module("spectracli.spectral.esd")  # the module, not esd()

    w = torch.randn(*shape, dtype=torch.float32).to(torch.bfloat16)
    x = w.double()
    direct = x.transpose(-2, -1) @ x if shape[-1] <= shape[-2] else x @ x.transpose(-2, -1)
    monkeypatch.setattr(esd_mod, "BLOCK_ELEMENTS", 50)  # force many row blocks
    blocked = esd_mod.gram(w, torch.float64)
    assert blocked.dtype == torch.float64
    torch.testing.assert_close(blocked, direct, rtol=1e-12, atol=1e-12)


def test_all_finite_checks_every_block(monkeypatch):
    esd_mod = importlib.import_module("spectracli.spectral.esd")  # the module, not esd()

    monkeypatch.setattr(esd_mod, "BLOCK_ELEMENTS", 16)
    w = torch.ones(10, 10)
    assert esd_mod.all_finite(w)
    w[9, 9] = float("nan")
    assert not esd_mod.all_finite(w)
    assert not esd_mod.all_finite(torch.full((3, 3), float("-inf")).t())


@pytest.mark.parametrize("side", ["below", "above"])
def test_sigma_min_meets_its_documented_accuracy_on_either_side_of_the_svd_fallback(side):
    """sigma_min is promised to SIGMA_MIN_RTOL (1e-4) whether Gram or SVD computed it."""
    from spectracli.spectral.esd import GRAM_RELIABLE, SIGMA_MIN_RTOL

    k = 60
    # kappa at which the worst-case Gram error bound eps * k * kappa^2 / 2 equals the promise.
    kappa_edge = (1.0 / (GRAM_RELIABLE * k)) ** 0.5
    kappa = kappa_edge * (0.9 if side == "below" else 1.1)
    s = np.geomspace(1.0, 1.0 / kappa, k)
    w = constructed(90, k, s, seed=7)
    met = matrix_metrics(squared_singular_values(torch.from_numpy(w)), (90, k))
    assert abs(met.sigma_min - s[-1]) / s[-1] <= SIGMA_MIN_RTOL
    assert met.condition_number == pytest.approx(kappa, rel=2 * SIGMA_MIN_RTOL)
