"""Marchenko-Pastur bulk and spikes (Marchenko & Pastur 1967; Johnstone 2001).

For W of shape N x M (N >= M) with i.i.d. entries of variance s^2, the eigenvalues of W^T W lie,
as N, M grow with y = M / N fixed, on [N s^2 (1 - sqrt(y))^2, N s^2 (1 + sqrt(y))^2]. We estimate
s^2 from the bulk robustly by matching the median of the ESD to the median of the MP law (spikes
barely move a median), then count as spikes the eigenvalues above the edge plus a Tracy-Widom
margin: the 99% quantile of TW1 (2.02) times Johnstone's scale for real Wishart matrices.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

TW1_Q99 = 2.0234  # 99% quantile of the Tracy-Widom (beta = 1) law


@functools.lru_cache(maxsize=256)
def mp_median(y: float) -> float:
    """Median of the MP law with ratio y = M/N in (0, 1] and variance 1 (normalised units).

    With x = a + (b - a) sin^2(phi) the density times dx becomes the smooth
    (b - a)^2 sin^2(2 phi) / (4 pi y x) d phi on [0, pi/2] (no endpoint singularity, even at
    y = 1), so a fine trapezoid rule gives the CDF to ~1e-9; the median is interpolated from it.
    The law is Marchenko & Pastur (1967).

    Returns:
        The median, in units of the variance.

    Raises:
        ValueError: ``y`` outside (0, 1].
    """
    if not 0 < y <= 1:
        raise ValueError(f"MP ratio y must be in (0, 1], got {y}")
    a, b = (1 - math.sqrt(y)) ** 2, (1 + math.sqrt(y)) ** 2
    phi = np.linspace(0.0, math.pi / 2, 20001)
    x = a + (b - a) * np.sin(phi) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (b - a) ** 2 * np.sin(2 * phi) ** 2 / (4 * math.pi * y * x)
    if a == 0:  # y = 1: the limit at phi = 0 is b cos^2(0) / pi
        g[0] = b / math.pi
    cdf = np.concatenate([[0.0], np.cumsum((g[1:] + g[:-1]) / 2 * np.diff(phi))])
    return float(np.interp(0.5 * cdf[-1], cdf, x))


@dataclass
class MPFit:
    """A Marchenko-Pastur fit of an ESD: bulk variance, bulk edge lambda_+ and spikes above it."""
    sigma2: float  # estimated entry variance s^2
    bulk_edge: float  # lambda_+ in the units of the ESD given
    tw_margin: float  # added to the edge before counting spikes
    num_spikes: int

    def to_dict(self) -> dict:
        """The fields as a plain dict (the JSON report's ``mp`` keys)."""
        return asdict(self)


def mp_fit(eigs: np.ndarray, n_rows: int, n_cols: int, normalized: bool = False) -> MPFit:
    """Bulk edge and spike count for the pooled ESD of matrices of shape (n_rows, n_cols).

    ``eigs``: all eigenvalues (of one or several equal-shape matrices), in the units of W^T W,
    divided by max(n_rows, n_cols) when ``normalized``.

    Returns:
        The fit: sigma^2 estimated from the median eigenvalue, the bulk edge
        sigma^2 (1 + sqrt(y))^2 (in the units of ``eigs``), and the count of eigenvalues above
        the edge plus the 99% Tracy-Widom margin (spikes; Johnstone 2001).

    Example:
        >>> import torch
        >>> from spectracli.spectral.esd import esd
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(400, 200, generator=g, dtype=torch.float64)
        >>> fit = mp_fit(esd(x).numpy(), 400, 200)  # i.i.d. N(0, 1): no spikes, s^2 = 1
        >>> (fit.num_spikes, round(fit.sigma2, 2))
        (0, 1.0)
    """
    big, small = max(n_rows, n_cols), min(n_rows, n_cols)
    y = small / big
    eigs = np.asarray(eigs, dtype=np.float64)
    scale = 1.0 if normalized else float(big)
    median = float(np.median(eigs))
    sigma2 = median / (scale * mp_median(y)) if median > 0 else 0.0
    edge = scale * sigma2 * (1 + math.sqrt(y)) ** 2
    # Johnstone (2001): lambda_max of X^T X, X (n x p) standard normal, centres at
    # (sqrt(n-1) + sqrt(p))^2 with scale (sqrt(n-1) + sqrt(p)) (1/sqrt(n-1) + 1/sqrt(p))^(1/3).
    rn, rp = math.sqrt(max(big - 1, 1)), math.sqrt(small)
    tw_scale = (rn + rp) * (1 / rn + 1 / rp) ** (1 / 3)
    margin = TW1_Q99 * tw_scale * sigma2 * (scale / big)
    spikes = int(np.count_nonzero(eigs > edge + margin))
    return MPFit(sigma2=sigma2, bulk_edge=edge, tw_margin=margin, num_spikes=spikes)
