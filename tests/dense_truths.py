"""Dense ground truths shared by the tests (float64, small enough for eigh): matrices with known
spectra for the solvers and the power-law fits (benchmarks take them from here too)."""

from __future__ import annotations

import numpy as np
import torch


def symmetric_with_eigenvalues(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(eigs) Q^T with Q a seeded random orthogonal matrix, symmetrised (float64, n x n)."""
    gen = torch.Generator().manual_seed(seed)
    n = eigs.numel()
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(eigs) @ q.T
    return (a + a.T) / 2


def pareto_matrix(alpha: float, m: int, n: int, seed: int) -> torch.Tensor:
    """W = U diag(sqrt(lambda)) V^T (float64, m x n) whose ESD is a known power law.

    U (m x k) and V (n x k), k = min(m, n), have seeded random orthonormal columns and lambda
    holds k draws of a Pareto law of density ~ x^-alpha on [1, inf), so the eigenvalues of
    W^T W are exactly lambda (and zeros).
    """
    g = torch.Generator().manual_seed(seed)
    k = min(m, n)
    lam = torch.rand(k, generator=g, dtype=torch.float64) ** (-1.0 / (alpha - 1.0))
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return (u * lam.sqrt()) @ v.T


def linear_mse_hessian(x: torch.Tensor) -> torch.Tensor:
    """X^T X / N (float64, d x d): the Hessian in the weights of a bias-free linear model
    ``x @ w`` under spectracli's mse (half the mean squared error over the N rows of x, (N, d)),
    whatever the weights and targets."""
    x = x.double()
    return x.T @ x / len(x)


def constructed(m: int, n: int, s: np.ndarray, seed: int = 0) -> np.ndarray:
    """W = U diag(s) V^T with Haar-random orthonormal U, V: its singular values are exactly s."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (u * s) @ v.T
