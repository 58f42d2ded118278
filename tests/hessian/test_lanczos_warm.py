"""Warm starts: Lanczos from the previous step's Ritz vectors gives the same eigenvalues with
fewer Hessian-vector products (a real MLP, one SGD step later, float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spectracli.hessian import eigenpairs
from spectracli.hessian.lanczos import lanczos
from spectracli.hessian.linop import DenseOperator

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()  # 147 params


def test_one_sgd_step_later_warm_equals_cold_with_fewer_hvps():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(80, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (80,), generator=gen)
    warm_total = cold_total = 0
    for seed in range(3):
        model = _mlp(seed)
        before = eigenpairs(model, (x, y), "cross_entropy", k=4, dtype="float64", tol=1e-10,
                            return_vectors=True)
        assert before.eigenvectors.shape == (4, before.n_params)
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.05 * p.grad
        cold = eigenpairs(model, (x, y), "cross_entropy", k=4, dtype="float64", tol=1e-10)
        warm = eigenpairs(model, (x, y), "cross_entropy", k=4, dtype="float64", tol=1e-10,
                          v0=before.eigenvectors)
        assert warm.converged == cold.converged == [True] * 4
        assert warm.eigenvalues == pytest.approx(cold.eigenvalues, rel=1e-8, abs=0)
        # The Krylov run itself is shorter; the multiplicity check starts from a random vector
        # either way (its products are reported apart).
        warm_first, cold_first = (r.hvp_count - r.settings["deflation_hvps"] for r in (warm, cold))
        assert warm_first < cold_first
        warm_total += warm.hvp_count
        cold_total += cold.hvp_count
    assert warm_total < cold_total


def test_block_start_in_either_orientation():
    a = torch.diag(torch.arange(1.0, 61.0, dtype=torch.float64))
    top = torch.eye(60, dtype=torch.float64)[:, -3:]  # (n, b): the exact top eigenvectors
    for v0 in (top, top.T):
        res = lanczos(DenseOperator(a), k=3, tol=1e-12, v0=v0)
        assert res.eigenvalues == pytest.approx([60.0, 59.0, 58.0], rel=1e-12)
        assert res.n_matvecs - res.deflation_matvecs <= 4  # an invariant start: 3 products + 1
    with pytest.raises(ValueError, match="v0 must be"):
        lanczos(DenseOperator(a), k=3, v0=torch.zeros(60, 2, dtype=torch.float64))
