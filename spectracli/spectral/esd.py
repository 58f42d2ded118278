"""Empirical spectral densities: the squared singular values of weight matrices.

Convention (docs/metrics.md): for W of shape (m, n) the ESD is the eigenvalues of W^T W,
lambda_i = sigma_i^2, no 1/N factor unless ``normalize`` is asked for (then divided by
max(m, n), the Marchenko-Pastur scaling).

Method, chosen by measurement (benchmarks/analyze_bench.py): eigvalsh of the smaller Gram matrix
in float64, which is several times faster than a full SVD and accurate to about
eps * k * lambda_max in absolute terms. When the smallest eigenvalue falls below
``GRAM_RELIABLE * k * lambda_max`` that absolute error would matter for sigma_min and the
condition number, so those matrices are recomputed with ``svdvals`` (accurate to eps * sigma_max).
"""

from __future__ import annotations

import torch

# Relative floor under which Gram eigenvalues are too noisy for sigma_min to 1e-6 relative:
# |d lambda| ~ eps * k * lambda_max, and d sigma / sigma = d lambda / (2 lambda).
GRAM_RELIABLE = 1e-9


def gram(w: torch.Tensor) -> torch.Tensor:
    """W^T W or W W^T, whichever is smaller (batched over leading dimensions)."""
    m, n = w.shape[-2], w.shape[-1]
    wt = w.transpose(-2, -1)
    return wt @ w if n <= m else w @ wt


def squared_singular_values(w: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """lambda = sigma^2 of each matrix in ``w`` (shape (..., m, n)), ascending, >= 0.

    ``method``: ``auto`` (Gram eigvalsh, falling back to svdvals where the small end matters),
    ``gram`` or ``svd``. Works on any device; the dtype of ``w`` is kept (use float64).
    """
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"method must be auto, gram or svd, got {method!r}")
    k = min(w.shape[-2], w.shape[-1])
    if method == "svd":
        s = torch.linalg.svdvals(w)
        return torch.flip(s * s, dims=(-1,))
    lam = torch.linalg.eigvalsh(gram(w)).clamp_min(0)
    if method == "gram":
        return lam
    lam_max = lam[..., -1]
    unreliable = lam[..., 0] < GRAM_RELIABLE * k * lam_max
    if bool(unreliable.any()):
        flat_w = w.reshape(-1, w.shape[-2], w.shape[-1])
        flat_lam = lam.reshape(-1, k).clone()
        idx = torch.nonzero(unreliable.reshape(-1)).flatten()
        s = torch.linalg.svdvals(flat_w[idx])
        flat_lam[idx] = torch.flip(s * s, dims=(-1,))
        lam = flat_lam.reshape(lam.shape)
    return lam


def esd(w: torch.Tensor, normalize: bool = False, method: str = "auto") -> torch.Tensor:
    """The ESD of a matrix (or the pooled ESD of a batch of equal-shape matrices), ascending.

    ``normalize`` divides by N = max(m, n), so that an i.i.d. matrix with entry variance s^2
    has the Marchenko-Pastur support s^2 (1 +- sqrt(min/max))^2.
    """
    lam = squared_singular_values(w, method=method)
    if normalize:
        lam = lam / max(w.shape[-2], w.shape[-1])
    return torch.sort(lam.reshape(-1)).values
