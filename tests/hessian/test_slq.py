"""Stochastic Lanczos quadrature on dense symmetric matrices: moments, nodes, outliers."""

from __future__ import annotations

import pytest
import torch
from dense_truths import symmetric_with_eigenvalues

from spectracli.hessian.linop import DenseOperator
from spectracli.hessian.slq import slq_density

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def spiked() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    eigs = torch.cat([torch.tensor([30.0, 20.0, 12.0], dtype=torch.float64),
                      torch.rand(197, generator=gen, dtype=torch.float64) * 2.0 - 1.0])
    return symmetric_with_eigenvalues(eigs), eigs


@pytest.mark.parametrize("p", [1, 2, 3])
def test_moments_match_the_trace_within_four_standard_errors(spiked, p):
    # Per probe q = z / sqrt(n) (Rademacher z), the quadrature of x^p equals q^T A^p q exactly
    # for p <= 2 * n_steps - 1, a Hutchinson sample of tr(A^p) / n with variance
    # 2 (||B||_F^2 - sum_i B_ii^2) / n^2, B = A^p: the probe mean is within 4 of its stderrs.
    a, eigs = spiked
    n, probes = a.shape[0], 8
    b = torch.linalg.matrix_power(a, p)
    var = 2 * (float((b**2).sum()) - float((torch.diag(b) ** 2).sum())) / n**2
    d = slq_density(DenseOperator(a), n_probes=probes, n_steps=10, seed=p)
    assert abs(sum(d.moments(p)) - float((eigs**p).sum()) / n) <= 4 * (var / probes) ** 0.5


def test_full_steps_give_the_exact_eigenvalues_as_nodes():
    # n steps on an n x n matrix: the Krylov space of a generic probe is everything, so every
    # probe's nodes are the eigenvalues (float64 eigvalsh truth, 1e-8 relative to ||A||).
    eigs = torch.linspace(-2.0, 5.0, 24, dtype=torch.float64)
    a = symmetric_with_eigenvalues(eigs, seed=2)
    d = slq_density(DenseOperator(a), n_probes=3, n_steps=24)
    for nodes, weights in zip(d.nodes, d.weights, strict=True):
        assert torch.allclose(torch.tensor(nodes, dtype=torch.float64), eigs, atol=5e-8)
        assert sum(weights) == pytest.approx(1.0, abs=1e-12)
    assert d.n_matvecs == 3 * 24


def test_density_integrates_to_one_over_the_grid(spiked):
    a, _ = spiked
    d = slq_density(DenseOperator(a), n_probes=4, n_steps=20)
    grid, values = torch.tensor(d.grid), torch.tensor(d.values)
    assert float(torch.trapezoid(values, grid)) == pytest.approx(1.0, abs=1e-3)


def test_invalid_arguments(spiked):
    a, _ = spiked
    with pytest.raises(ValueError, match="n_probes"):
        slq_density(DenseOperator(a), n_probes=0)
    with pytest.raises(TypeError, match="LinearOperator"):
        slq_density(a, n_probes=2)


def test_simple_outliers_are_listed_once_and_a_double_one_twice():
    """Truth: a dense operator with a [0, 1] bulk, simple outliers 5, 8, 12 and a double 20.
    With 5 probes a simple outlier's count scatters (variance ~2 per probe): round(count) listed
    12 twice for seed 1; it is listed once for every seed. With 200 probes the double is
    resolved (listed twice) and the simple ones stay single."""
    from spectracli.hessian.slq import outlier_multiplicity

    n = 400
    vals = torch.cat([torch.linspace(0, 1, n - 5, dtype=torch.float64),
                      torch.tensor([5.0, 8.0, 12.0, 20.0, 20.0], dtype=torch.float64)])
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=gen))
    op = DenseOperator(q @ torch.diag(vals) @ q.T)
    for seed in range(10):
        found = [round(x, 6) for x in slq_density(op, 5, 20, seed=seed).outliers]
        assert all(found.count(v) == 1 for v in (5.0, 8.0, 12.0)), (seed, found)
    found = [round(x, 6) for x in slq_density(op, 200, 20, seed=0).outliers]
    assert found == [20.0, 20.0, 12.0, 8.0, 5.0]
    assert outlier_multiplicity(1.4, 5) == 1 and outlier_multiplicity(2.0, 200) == 2
