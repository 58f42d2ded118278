"""Dense ground truths shared by the solver tests (float64, small enough for eigh)."""

from __future__ import annotations

import torch


def symmetric_with_eigenvalues(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(eigs) Q^T with Q a seeded random orthogonal matrix, symmetrised (float64, n x n)."""
    gen = torch.Generator().manual_seed(seed)
    n = eigs.numel()
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(eigs) @ q.T
    return (a + a.T) / 2
