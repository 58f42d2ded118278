"""Norm metrics of a matrix, or a stack of equal-shape slices, from squared singular values.

All in terms of sigma (singular values) and lambda = sigma^2 (docs/metrics.md):

- ``sigma_max``: the spectral norm ||W||_2 (not its square); ``lambda_max`` = sigma_max^2.
- ``sigma_min``: smallest of the min(m, n) singular values; ``condition_number`` = sigma_max /
  sigma_min, ``inf`` with ``rank_deficient`` set when sigma_min <= ``rank_tolerance``;
  ``numerical_rank`` counts the singular values above it.
- ``rank_tolerance`` (see :func:`rank_tolerance`) is set by the precision the weights were
  *stored* in, not the float64 of the arithmetic: a float32 matrix is only known to float32
  resolution, so a rank-1 float32 matrix has rank 1 (as ``numpy.linalg.matrix_rank`` says).
- ``frobenius_norm`` = sqrt(sum lambda); ``nuclear_norm`` = sum sigma; ``stable_rank`` =
  sum(lambda) / lambda_max.
- ``spectral_gap`` = sigma_1 - sigma_2 and ``spectral_gap_ratio`` = sigma_2 / sigma_1 (the two
  largest singular values; None for a matrix with a single singular value).
- ``entropy`` = -sum p ln p / ln R with p = lambda / sum(lambda) over the R nonzero ones
  (1 for a flat spectrum, 0 for rank one).

For a stack of slices (a conv kernel's (out, in) matrices) the layer's figures are those of the
block-diagonal matrix diag(slice_1, ..., slice_k), whose singular values are the pooled ones:
sigma_max the largest slice norm, sigma_1/sigma_2 the two largest pooled singular values,
frobenius_norm and nuclear_norm of the whole kernel; except sigma_min (smallest singular value of
any slice), condition_number (the worst slice's), numerical_rank (the smallest slice rank), and
stable_rank and entropy (means over slices), which are per-slice properties.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from spectracli.spectral.arrays import STORAGE_PRECISION, dtype_name, namespace, to_numpy

# Storage dtypes with at most 16 bits: numpy's rule max(m, n) * eps reaches 1 (a tolerance above
# sigma_max itself) once max(m, n) >= 1 / eps, e.g. 128 for bfloat16 (see rank_tolerance).
_LOW_PRECISION_BITS = 16


def storage_eps(dtype: Any) -> float:
    """Machine epsilon of a storage dtype (``"bfloat16"``, ``torch.float16``, ``np.float32``...).

    ``None`` means the values are exact as given (float64). A name that is not a float dtype
    (e.g. an unknown quantised format) counts as float32.

    Returns:
        eps of the dtype: 2^-52 float64, 2^-23 float32, 2^-10 float16, 2^-7 bfloat16 ...
    """
    if dtype is None:
        return STORAGE_PRECISION["float64"][0]
    return STORAGE_PRECISION.get(dtype_name(dtype) or "", STORAGE_PRECISION["float32"])[0]


def _storage_bits(dtype: Any) -> int:
    if dtype is None:
        return 64
    return STORAGE_PRECISION.get(dtype_name(dtype) or "", STORAGE_PRECISION["float32"])[1]


def rank_tolerance(lam: Any, shape: tuple[int, int], dtype: Any = None) -> Any:
    """Singular values at or below this are zero at the precision ``dtype`` W was stored in.

    ``lam``: (slices, k) ascending sigma^2 of each (m, n) matrix (numpy array or torch tensor).
    The tolerance:

    - float32 / float64 storage: numpy's ``matrix_rank`` rule on the stored matrix,
      sigma_max * max(m, n) * eps(dtype) (Press et al., Numerical Recipes, sec. 2.6).
    - 16- and 8-bit floats (float16, bfloat16, float8): that rule exceeds sigma_max itself once
      max(m, n) >= 1 / eps (128 for bfloat16), which would call every such layer rank 0. We use
      instead the bound of the rounding itself: each stored entry is within u = eps / 2 of its
      value, so the rounding error E has ||E||_2 <= ||E||_F <= u ||W||_F and (Weyl) no singular
      value below u ||W||_F can be told from zero.

    Returns:
        (slices,) tolerances in the library of ``lam``.
    """
    xp = namespace(lam)
    lam = xp.reshape(lam, (-1, lam.shape[-1]))
    eps = storage_eps(dtype)
    if _storage_bits(dtype) <= _LOW_PRECISION_BITS:
        return 0.5 * eps * xp.sqrt(xp.sum(lam, axis=1))
    return xp.sqrt(lam[:, -1]) * max(shape) * eps


def precision_thresholds(
    sigma_max: float,
    frobenius_norm: float,
    shape: tuple[int, int],
    n_matrices: int = 1,
    dtype: Any = None,
    window: tuple[int, int] | None = None,
) -> tuple[float, float]:
    """(zero, resolution) for singular values of a stored matrix, or of its (r, c) windows.

    ``zero`` is :func:`rank_tolerance` (for a window, the same rule on an r x c block with the
    layer's sigma_max, or its share of the Frobenius norm). ``resolution`` is how close two
    singular values may be and still be the same value: 2 u rms(W) (sqrt(r) + sqrt(c)), twice the
    typical spectral norm of a rounding error of relative size u = eps / 2 (Bai-Yin edge of an
    r x c random matrix; measured at most 1.5x that on rank-1 and rank-3 matrices stored in
    bfloat16, float16 and float32, tests/spectral/test_powerlaw_status.py). ``frobenius_norm`` is
    of the whole stack of ``n_matrices`` slices of ``shape`` (m, n).

    Returns:
        ``(zero, resolution)``, singular values (not sigma^2).
    """
    m, n = shape
    r, c = window or shape
    eps = storage_eps(dtype)
    rms = frobenius_norm / math.sqrt(n_matrices * m * n)
    if _storage_bits(dtype) <= _LOW_PRECISION_BITS:
        zero = 0.5 * eps * rms * math.sqrt(r * c)
    else:
        zero = sigma_max * max(r, c) * eps
    return zero, eps * rms * (math.sqrt(r) + math.sqrt(c))


@dataclass
class MatrixMetrics:
    """Norms, condition number, ranks and entropy of one matrix (definitions in docs/metrics.md)."""
    sigma_max: float
    sigma_min: float
    condition_number: float
    rank_deficient: bool
    lambda_max: float
    frobenius_norm: float
    nuclear_norm: float
    spectral_gap: float | None
    spectral_gap_ratio: float | None
    stable_rank: float
    entropy: float
    numerical_rank: int
    rank_tolerance: float

    def to_dict(self) -> dict:
        """The fields as a plain dict (the JSON report's per-layer keys)."""
        return asdict(self)


def matrix_metrics(lam: Any, shape: tuple[int, int], stored_dtype: Any = None) -> MatrixMetrics:
    """Metrics from ``lam`` of shape (slices, k) or (k,): ascending sigma^2 per matrix (m, n).

    ``lam`` may be a numpy array or a torch tensor on any device: these few numbers per matrix
    are computed in float64 on the host, so both give the same metrics for the same ``lam``.
    ``stored_dtype`` is the dtype the weights were stored in (before any upcast): it sets the
    rank tolerance (:func:`rank_tolerance`). ``None``: the values are exact (float64).

    Returns:
        The metrics of docs/metrics.md: sigma_max and sigma_min over the matrices, condition
        number (inf when rank deficient, flagged), Frobenius norm, stable rank, entropy,
        numerical rank and the rest of :class:`MatrixMetrics`.

    Example:
        >>> import numpy as np
        >>> from spectracli.spectral.esd import esd
        >>> m = matrix_metrics(esd(np.diag([3.0, 2.0, 1.0])), (3, 3))
        >>> (m.sigma_max, m.condition_number, round(m.stable_rank, 4))  # stable rank 14 / 9
        (3.0, 3.0, 1.5556)
    """
    lam = np.maximum(to_numpy(lam).reshape(-1, lam.shape[-1]), 0.0)
    sigma = np.sqrt(lam)
    s_max = sigma[:, -1]
    s_min = sigma[:, 0]
    tol = rank_tolerance(lam, shape, stored_dtype)
    ranks = (sigma > tol[:, None]).sum(axis=1)
    deficient = (s_min <= tol) | (s_max == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(deficient, math.inf, s_max / s_min)
    total = lam.sum(axis=1)
    lam_max = lam[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        stable = np.where(lam_max > 0, total / lam_max, 0.0)
    p = lam / np.maximum(total, np.finfo(np.float64).tiny)[:, None]
    plogp = np.where(p > 0, p * np.log(np.maximum(p, 1e-300)), 0.0)
    log_r = np.log(ranks.astype(np.float64), where=ranks > 0, out=np.zeros(ranks.shape))
    ent = -plogp.sum(axis=1) / np.maximum(log_r, 1e-300)
    ent = np.where(ranks > 1, ent, 0.0)
    pooled = np.sort(sigma.reshape(-1))
    gap = ratio = None
    if pooled.size >= 2:
        s1, s2 = float(pooled[-1]), float(pooled[-2])
        gap = s1 - s2
        ratio = s2 / s1 if s1 > 0 else None
    return MatrixMetrics(
        sigma_max=float(s_max.max()),
        sigma_min=float(s_min.min()),
        condition_number=float(cond.max()),
        rank_deficient=bool(deficient.any()),
        lambda_max=float(lam_max.max()),
        frobenius_norm=float(np.sqrt(total.sum())),
        nuclear_norm=float(sigma.sum()),
        spectral_gap=gap,
        spectral_gap_ratio=ratio,
        stable_rank=float(stable.mean()),
        entropy=float(ent.mean()),
        numerical_rank=int(ranks.min()),
        rank_tolerance=float(tol.max()),
    )
