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

One code path for both libraries (spectracli.spectral.arrays): a numpy array is solved with
numpy's LAPACK on the host, a torch tensor with torch on its device (CPU or CUDA); torch is never
imported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spectracli.spectral.arrays import device, float_dtype, namespace, numel

# Accuracy promised for sigma_min (and so the condition number), relative.
SIGMA_MIN_RTOL = 1e-4
# |d lambda| <= eps * k * lambda_max and d sigma / sigma = d lambda / (2 lambda): the Gram path is
# trusted while lambda_min >= GRAM_RELIABLE * k * lambda_max.
GRAM_RELIABLE = float(np.finfo(np.float64).eps) / (2 * SIGMA_MIN_RTOL)


# Row blocks converted to the working dtype at a time, in elements: bounds the extra memory of a
# float64 Gram accumulation to ~64 MB whatever the size (and storage dtype) of the matrix.
BLOCK_ELEMENTS = 8_000_000


def gram(w: Any, dtype: Any = None) -> Any:
    """W^T W or W W^T, whichever is smaller (batched over leading dimensions), in ``dtype``.

    Args:
        w: (..., m, n) numpy array or torch tensor, any float dtype.
        dtype: working dtype (``"float64"``, ``"float32"`` or a library dtype); ``None``: w's.

    Returns:
        (..., k, k) with k = min(m, n), in ``w``'s library and on its device.

    The product is accumulated over blocks of the long dimension, each converted to ``dtype`` on
    the fly, so a bf16/fp32 matrix is never copied whole into float64.
    """
    xp = namespace(w)
    dtype = w.dtype if dtype is None else float_dtype(xp, dtype)
    if w.shape[-1] > w.shape[-2]:
        w = xp.matrix_transpose(w)  # tall: the Gram matrix is (n, n) with n the short side
    m, n = w.shape[-2], w.shape[-1]
    batch = 1
    for d in w.shape[:-2]:
        batch *= d
    rows = max(1, BLOCK_ELEMENTS // max(1, n * batch))
    if rows >= m:
        x = xp.astype(w, dtype)
        return xp.matrix_transpose(x) @ x
    g = xp.zeros((*w.shape[:-2], n, n), dtype=dtype, device=device(w))
    for start in range(0, m, rows):
        x = xp.astype(w[..., start : start + rows, :], dtype)
        g += xp.matrix_transpose(x) @ x
    return g


def all_finite(w: Any) -> bool:
    """No NaN/Inf in ``w`` (numpy array or torch tensor).

    Checked block by block, so no full-size mask is allocated.

    Returns:
        True when every entry is finite.
    """
    xp = namespace(w)
    flat = xp.reshape(w, (-1,))
    return all(
        bool(xp.all(xp.isfinite(flat[i : i + BLOCK_ELEMENTS])))
        for i in range(0, numel(flat), BLOCK_ELEMENTS)
    )


def _svd_lambda(xp: Any, w: Any, dtype: Any) -> Any:
    s = xp.linalg.svdvals(xp.astype(w, dtype))
    return xp.flip(s * s, axis=-1)


def squared_singular_values(w: Any, method: str = "auto", dtype: Any = "float64") -> Any:
    """lambda = sigma^2 of each matrix in ``w`` (shape (..., m, n)), ascending, >= 0, in ``dtype``.

    Args:
        w: numpy array or torch tensor (any device, any float storage dtype).
        method: ``auto`` (Gram eigvalsh, falling back to svdvals where the small end matters),
            ``gram`` or ``svd``.
        dtype: working dtype, ``"float64"`` or ``"float32"`` (or a library dtype).

    Returns:
        (..., k) with k = min(m, n), in ``w``'s library and on its device.

    Raises:
        ValueError: an unknown ``method`` or a non-floating ``dtype``.
    """
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"method must be auto, gram or svd, got {method!r}")
    xp = namespace(w)
    dtype = float_dtype(xp, dtype)
    k = min(w.shape[-2], w.shape[-1])
    if method == "svd":
        return _svd_lambda(xp, w, dtype)
    lam = xp.clip(xp.linalg.eigvalsh(gram(w, dtype)), min=0.0)
    if method == "gram":
        return lam
    lam_max = lam[..., -1]
    unreliable = lam[..., 0] < GRAM_RELIABLE * k * lam_max
    if bool(xp.any(unreliable)):
        flat_w = xp.reshape(w, (-1, w.shape[-2], w.shape[-1]))
        flat_lam = xp.reshape(lam, (-1, k))
        redo = xp.reshape(unreliable, (-1,))
        rows = [
            _svd_lambda(xp, flat_w[i], dtype) if bool(redo[i]) else flat_lam[i]
            for i in range(flat_lam.shape[0])
        ]
        lam = xp.reshape(xp.stack(rows), lam.shape)
    return lam


def esd(w: Any, normalize: bool = False, method: str = "auto") -> Any:
    """The ESD of a matrix (or the pooled ESD of a batch of equal-shape matrices), ascending.

    Args:
        w: (..., m, n) numpy array or torch tensor.
        normalize: divide by N = max(m, n), so that an i.i.d. matrix with entry variance s^2
            has the Marchenko-Pastur support s^2 (1 +- sqrt(min/max))^2.
        method: as in :func:`squared_singular_values`.

    Returns:
        1-d float64 lambda = sigma^2, ascending, in ``w``'s library.

    Example:
        >>> import numpy as np
        >>> esd(np.diag([3.0, 2.0, 1.0]))
        array([1., 4., 9.])
        >>> import torch
        >>> esd(torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)))
        tensor([1., 4., 9.], dtype=torch.float64)
    """
    xp = namespace(w)
    lam = squared_singular_values(w, method=method)
    if normalize:
        lam = lam / max(w.shape[-2], w.shape[-1])
    return xp.sort(xp.reshape(lam, (-1,)))
