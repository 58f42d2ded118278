"""Repeated eigenvalues and null spaces: Lanczos returns the extreme eigenvalues counted with
multiplicity (deflated restarts), against dense float64 eigvalsh."""

from __future__ import annotations

import pytest
import torch
from dense_truths import symmetric_with_eigenvalues
from torch import nn

from spectracli.hessian import eigenpairs
from spectracli.hessian.lanczos import lanczos
from spectracli.hessian.linop import DenseOperator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def repeated() -> torch.Tensor:
    """Multiplicity 3 and 2 at the top (10, 7) and at the bottom (-6, -4) over a bulk."""
    gen = torch.Generator().manual_seed(4)
    bulk = torch.rand(110, generator=gen, dtype=torch.float64) * 2.0 - 1.0
    ends = torch.tensor([10.0, 10.0, 10.0, 7.0, 7.0, 5.0, -4.0, -4.0, -6.0, -6.0, -6.0],
                        dtype=torch.float64)
    return symmetric_with_eigenvalues(torch.cat([ends, bulk]), seed=1)


def _truth(a: torch.Tensor, k: int, which: str) -> torch.Tensor:
    ev = torch.linalg.eigvalsh(a)  # ascending
    top, bottom = ev.flip(0)[:k], ev[:k].flip(0)
    return {"largest": top, "smallest": bottom, "both": torch.cat([top, bottom])}[which]


@pytest.mark.parametrize(
    "k, which, expected",
    [(5, "largest", [10, 10, 10, 7, 7]), (6, "largest", [10, 10, 10, 7, 7, 5]),
     (5, "smallest", [-4, -4, -6, -6, -6]), (4, "both", [10, 10, 10, 7, -4, -6, -6, -6])],
)
def test_multiplicities_two_and_three_at_both_ends(repeated, k, which, expected):
    res = lanczos(DenseOperator(repeated), k=k, which=which, tol=1e-10)
    assert res.multiplicity_verified and res.all_converged and res.n_deflations >= 1
    got = torch.tensor(res.eigenvalues, dtype=torch.float64)
    assert torch.allclose(got, _truth(repeated, k, which), rtol=1e-8, atol=0)
    assert res.eigenvalues == pytest.approx(expected, rel=1e-8)
    # The restarts' cost is part of the count and reported apart.
    assert 0 < res.deflation_matvecs < res.n_matvecs <= 300


def test_without_deflation_the_result_says_multiplicities_are_unverified(repeated):
    # One Krylov space holds one direction per eigenspace; copies only creep in by rounding
    # (here [10, 10, 7, 7] for the true [10, 10, 10, 7]), so the result must not claim them.
    res = lanczos(DenseOperator(repeated), k=4, tol=1e-10, deflate=False)
    assert not res.multiplicity_verified and res.n_deflations == 0


def test_vectors_of_a_repeated_eigenvalue_are_orthonormal_eigenvectors(repeated):
    res = lanczos(DenseOperator(repeated), k=5, tol=1e-10, return_vectors=True)
    v = res.eigenvectors
    theta = torch.tensor(res.eigenvalues, dtype=torch.float64)
    assert torch.allclose(v @ v.T, torch.eye(5, dtype=torch.float64), atol=1e-10)
    true_res = (repeated @ v.T - v.T * theta).norm(dim=0) / theta.abs()
    assert float(true_res.max()) <= 1e-10
    assert torch.allclose(torch.tensor(res.residuals, dtype=torch.float64), true_res, atol=1e-12)


def test_null_space_of_a_psd_matrix_gives_zeros():
    # Six zero eigenvalues, then 0.002 and 0.0034: the smallest three are 0, 0, 0 (a single
    # Krylov space returns 0.0034, 0.002, 0). Absolute accuracy: tol * ABS_FLOOR * lambda_max.
    eigs = torch.cat([torch.zeros(6, dtype=torch.float64),
                      torch.tensor([0.002, 0.0034], dtype=torch.float64),
                      torch.linspace(0.01, 5.0, 92, dtype=torch.float64)])
    a = symmetric_with_eigenvalues(eigs, seed=3)
    # Each missing zero costs a deflated run converging it against the 0.002 gap (measured:
    # 89 products for the first run, 233 for three deflated runs).
    res = lanczos(DenseOperator(a), k=3, which="smallest", tol=1e-8, max_matvecs=600)
    assert res.all_converged and res.multiplicity_verified and res.n_deflations == 3
    assert max(abs(v) for v in res.eigenvalues) < 1e-9


def test_exhausting_a_tiny_space_is_verified():
    a = symmetric_with_eigenvalues(torch.tensor([3.0, 3.0, 3.0, 1.0], dtype=torch.float64))
    res = lanczos(DenseOperator(a), k=4, tol=1e-10)
    assert res.all_converged and res.eigenvalues == pytest.approx([3, 3, 3, 1], rel=1e-10)


def test_budget_spent_in_a_restart_leaves_pairs_unconverged(repeated):
    full = lanczos(DenseOperator(repeated), k=5, tol=1e-10)
    cut = lanczos(DenseOperator(repeated), k=5, tol=1e-10,
                  max_matvecs=full.n_matvecs - full.deflation_matvecs + 3)
    assert not cut.multiplicity_verified and not any(cut.converged)


def _linear_regression(n: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    # mse = mean_b 1/2 ||W x_b + c - y_b||^2: H = I_3 (x) X~^T X~ / n, each eigenvalue 3 times.
    truth = torch.linalg.eigvalsh(xt.T @ xt / n).repeat_interleave(3)  # ascending
    return nn.Linear(d, 3).double(), x, y, truth


def test_linear_regression_with_three_outputs_top_eigenvalue_has_multiplicity_three():
    model, x, y, truth = _linear_regression(40, 4)
    res = eigenpairs(model, (x, y), "mse", k=4, dtype="float64", tol=1e-10)
    a, b = float(truth[-1]), float(truth[-4])
    assert all(res.converged)
    assert res.eigenvalues == pytest.approx([a, a, a, b], rel=1e-8)


def test_linear_regression_null_space_smallest_are_zeros():
    # 4 samples, 6 inputs + bias: X~ has rank 4 of 7, so 3 zero eigenvalues per output (9).
    model, x, y, truth = _linear_regression(4, 6)
    res = eigenpairs(model, (x, y), "mse", k=3, which="smallest", dtype="float64", tol=1e-8)
    assert all(res.converged)
    assert max(abs(v) for v in res.eigenvalues) < 1e-9 * float(truth[-1])
    assert res.condition_number is None
