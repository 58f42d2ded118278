"""Empirical spectral densities: the squared singular values of weight matrices.

Convention (docs/metrics.md): for W of shape (m, n) the ESD is the eigenvalues of W^T W,
lambda_i = sigma_i^2, no 1/N factor unless ``normalize`` is asked for (then divided by
max(m, n), the Marchenko-Pastur scaling).

Method, chosen by measurement (benchmarks/analyze_bench.py --methods): eigvalsh of the smaller
Gram matrix in float64, about 2.3x faster than a full SVD, with absolute error about
eps * k * lambda_max. That bounds the relative error of sigma_min by eps * k * kappa^2 / 2
(kappa: condition number); where the bound exceeds ``SIGMA_MIN_RTOL`` (1e-4) the matrix is
recomputed with ``svdvals`` (error eps * sigma_max), so sigma_min and the condition number are
always accurate to 1e-4 relative or better (measured on all-MiniLM-L6-v2: 1 of 39 matrices
needs the SVD; the worst Gram-path error is 3.7e-8).
"""

from __future__ import annotations

import torch

# Accuracy promised for sigma_min (and so the condition number), relative.
SIGMA_MIN_RTOL = 1e-4
# |d lambda| <= eps * k * lambda_max and d sigma / sigma = d lambda / (2 lambda): the Gram path is
# trusted while lambda_min >= GRAM_RELIABLE * k * lambda_max.
GRAM_RELIABLE = torch.finfo(torch.float64).eps / (2 * SIGMA_MIN_RTOL)


# Row blocks converted to the working dtype at a time, in elements: bounds the extra memory of a
# float64 Gram accumulation to ~64 MB whatever the size (and storage dtype) of the matrix.
BLOCK_ELEMENTS = 8_000_000


def gram(w: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """W^T W or W W^T, whichever is smaller (batched over leading dimensions), in ``dtype``.

    The product is accumulated over blocks of the long dimension, each converted to ``dtype`` on
    the fly, so a bf16/fp32 matrix is never copied whole into float64.
    """
    dtype = dtype or w.dtype
    if w.shape[-1] > w.shape[-2]:
        w = w.transpose(-2, -1)  # tall: the Gram matrix is (n, n) with n the short side
    m, n = w.shape[-2], w.shape[-1]
    batch = 1
    for d in w.shape[:-2]:
        batch *= d
    rows = max(1, BLOCK_ELEMENTS // max(1, n * batch))
    if rows >= m:
        x = w.to(dtype)
        return x.transpose(-2, -1) @ x
    g = torch.zeros((*w.shape[:-2], n, n), dtype=dtype, device=w.device)
    for start in range(0, m, rows):
        x = w[..., start : start + rows, :].to(dtype)
        g += x.transpose(-2, -1) @ x
    return g


def all_finite(w: torch.Tensor) -> bool:
    """No NaN/Inf in ``w``, checked block by block (no full-size mask)."""
    flat = w.reshape(-1)
    return all(
        bool(torch.isfinite(flat[i : i + BLOCK_ELEMENTS]).all())
        for i in range(0, flat.numel(), BLOCK_ELEMENTS)
    )


def squared_singular_values(
    w: torch.Tensor, method: str = "auto", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """lambda = sigma^2 of each matrix in ``w`` (shape (..., m, n)), ascending, >= 0, in ``dtype``.

    ``method``: ``auto`` (Gram eigvalsh, falling back to svdvals where the small end matters),
    ``gram`` or ``svd``. Works on any device; ``w`` may be stored in any float dtype.
    """
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"method must be auto, gram or svd, got {method!r}")
    k = min(w.shape[-2], w.shape[-1])
    if method == "svd":
        s = torch.linalg.svdvals(w.to(dtype))
        return torch.flip(s * s, dims=(-1,))
    lam = torch.linalg.eigvalsh(gram(w, dtype)).clamp_min(0)
    if method == "gram":
        return lam
    lam_max = lam[..., -1]
    unreliable = lam[..., 0] < GRAM_RELIABLE * k * lam_max
    if bool(unreliable.any()):
        flat_w = w.reshape(-1, w.shape[-2], w.shape[-1])
        flat_lam = lam.reshape(-1, k).clone()
        idx = torch.nonzero(unreliable.reshape(-1)).flatten()
        s = torch.linalg.svdvals(flat_w[idx].to(dtype))
        flat_lam[idx] = torch.flip(s * s, dims=(-1,))
        lam = flat_lam.reshape(lam.shape)
    return lam


def esd(w: torch.Tensor, normalize: bool = False, method: str = "auto") -> torch.Tensor:
    """The ESD of a matrix (or the pooled ESD of a batch of equal-shape matrices), ascending.

    ``normalize`` divides by N = max(m, n), so that an i.i.d. matrix with entry variance s^2
    has the Marchenko-Pastur support s^2 (1 +- sqrt(min/max))^2.

    Example:
        >>> import torch
        >>> esd(torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)))
        tensor([1., 4., 9.], dtype=torch.float64)
    """
    lam = squared_singular_values(w, method=method)
    if normalize:
        lam = lam / max(w.shape[-2], w.shape[-1])
    return torch.sort(lam.reshape(-1)).values
