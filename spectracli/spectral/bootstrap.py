"""Bootstrap confidence interval of a power-law alpha, with the choice of xmin inside it.

Each of B resamples (N eigenvalues drawn with replacement from the N nonzero ones) is fitted by
the same xmin rule as the point estimate (``ks``, ``median`` or ``peak``), and the interval is
the (1 - level) / 2 and (1 + level) / 2 quantiles of the B alphas: the percentile bootstrap
(Efron & Tibshirani 1993, ch. 13). Re-running the xmin selection on every resample puts the
uncertainty of xmin into the interval, as Clauset, Shalizi & Newman (2009, sec. 3.4) do for
their xmin and alpha errors.

Vectorised over resamples (numpy, no Python loop per resample). A resample is represented by how
many times it drew each sorted eigenvalue (a (B, N) count matrix from one ``bincount``), so no
resample is ever sorted: for xmin = lambda_i the tail size and sum of ln(lambda) of resample b
are differences of prefix sums of the counts and of counts * ln(lambda), which gives every
candidate alpha at once (Clauset et al.'s MLE, alpha = 1 + n / sum ln(lambda_j / xmin)).

Two economies, both bounded, make it cheap enough to run on every layer (its cost is measured by
``python benchmarks/analyze_bench.py --bootstrap``):

- the ``ks`` scan of a resample looks at ``COARSE`` evenly spaced xmin candidates, then at
  ``FINE`` candidates between the neighbours of the best one (the point fit scans every
  candidate up to 512, then refines the same way);
- each candidate's KS distance is evaluated at ``POINTS`` evenly spaced order statistics of its
  tail instead of all of them; between two evaluated points both the empirical and the fitted CDF
  rise by at most about 1 / ``POINTS``, so the distance is underestimated by at most that
  (0.02), small against the KS distances that separate candidates.

Beyond ``MAX_BOOTSTRAP`` eigenvalues (large pooled FARMS ESDs) each resample draws only
``MAX_BOOTSTRAP`` of them (``draws``: the m-out-of-n bootstrap), which bounds the cost, and the
caller rescales the percentiles (:func:`spectracli.spectral.powerlaw.fit_power_law`). With
``ci_resamples`` 0 the interval is the analytic one, alpha +- z (alpha - 1) / sqrt(n_tail) (the
asymptotic standard error of the MLE at fixed xmin, Clauset et al. eq. 3.2), which leaves out
the uncertainty of xmin: ``ci_method`` says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from spectracli.options import FitMethod

COARSE = 40
FINE = 16
POINTS = 48
DEFAULT_RESAMPLES = 200
MAX_BOOTSTRAP = 20_000
# Resamples handled at once: bounds the (chunk, candidates, points) work arrays to ~16 MB each.
_CHUNK_ELEMENTS = 2_000_000


def standard_error(alpha: float, n_tail: float) -> float:
    """(alpha - 1) / sqrt(n_tail): the asymptotic standard error of the continuous MLE.

    ``n_tail`` may be fractional: the independent count of a pooled tail (tail size x share).

    Returns:
        The standard error of alpha.
    """
    return (alpha - 1.0) / math.sqrt(n_tail)


def analytic_interval(alpha: float, n_tail: float, level: float) -> tuple[float, float]:
    """alpha +- z_{(1 + level) / 2} (alpha - 1) / sqrt(n_tail) (xmin held fixed).

    Returns:
        ``(low, high)``.

    Example:
        >>> [round(x, 3) for x in analytic_interval(3.0, 100, 0.95)]  # 3 +- 1.96 * 0.2
        [2.608, 3.392]
    """
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    half = z * standard_error(alpha, n_tail)
    return alpha - half, alpha + half


def _alpha_ks(
    logs: np.ndarray, cc: np.ndarray, cl: np.ndarray, pos: np.ndarray, min_tail: int
) -> tuple[np.ndarray, np.ndarray]:
    """alpha and approximate KS distance of every resample (row) at its candidates ``pos``.

    ``logs``: ln(lambda) (N,), ascending. ``cc``/``cl``: (b, N + 1) prefix sums of the counts and
    of counts * ln(lambda). ``pos``: candidate xmin indices, (C,) shared by all rows or (b, C)
    per row. Invalid candidates (not drawn, tail below ``min_tail``, zero spread) get alpha nan
    and distance inf. The KS part runs in float32 (a distance to ~1e-6 is plenty to rank).

    Returns:
        ``(alphas, distances)``, each (b, C).
    """
    n_all = logs.size
    b = cc.shape[0]
    shared = pos.ndim == 1
    steps = np.arange(POINTS) / POINTS
    if shared:
        below = cc[:, pos]
        spread = (cl[:, -1:] - cl[:, pos]) - (cc[:, -1:] - below) * logs[pos]
        drawn = cc[:, pos + 1] > below
        j = pos[:, None] + np.floor(steps * (n_all - pos)[:, None]).astype(np.int64)  # (C, P)
        ratio = (logs[j] - logs[pos][:, None]).astype(np.float32)[None]
        at_j = cc[:, j.ravel()].reshape(b, *j.shape)
    else:
        below = np.take_along_axis(cc, pos, axis=1)
        spread = (cl[:, -1:] - np.take_along_axis(cl, pos, axis=1)) - (
            cc[:, -1:] - below) * logs[pos]
        drawn = np.take_along_axis(cc, pos + 1, axis=1) > below
        j = pos[:, :, None] + np.floor(steps * (n_all - pos)[:, :, None]).astype(np.int64)
        ratio = (logs[j] - logs[pos][:, :, None]).astype(np.float32)
        at_j = np.take_along_axis(cc, j.reshape(b, -1), axis=1).reshape(j.shape)
    n = cc[:, -1:] - below  # tail size: draws at or above xmin
    ok = drawn & (n >= min_tail) & (spread > 0)
    alpha = np.full(below.shape, np.nan)
    alpha[ok] = 1.0 + n[ok] / spread[ok]
    inv_n = (1.0 / np.maximum(n, 1)).astype(np.float32)[:, :, None]
    # |F_fit - F_emp| at the points, in place on two (b, C, P) arrays: the same float32
    # operations in the same order as 1 - exp(expo ratio) - ecdf, 3.5x faster than with a new
    # array per step (the bootstrap was 39 % of a MiniLM analysis)
    ecdf = np.subtract(at_j, below[:, :, None]).astype(np.float32, copy=False)
    ecdf *= inv_n
    expo = (1.0 - np.where(ok, alpha, 2.0)).astype(np.float32)[:, :, None]
    dist = expo * ratio
    np.exp(dist, out=dist)  # exponent <= 0: no overflow
    np.subtract(1.0, dist, out=dist)
    dist -= ecdf
    np.abs(dist, out=dist)
    return alpha, np.where(ok, dist.max(axis=2), np.inf)


def _best(alpha: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = np.argmin(dist, axis=1)
    return alpha[np.arange(alpha.shape[0]), k], k


def _grid(lo: np.ndarray, hi: np.ndarray, count: int) -> np.ndarray:
    """(b, count) integer positions evenly spaced from lo to hi (inclusive), per row."""
    t = np.linspace(0.0, 1.0, count)
    return np.round(lo[:, None] + t[None, :] * (hi - lo)[:, None]).astype(np.int64)


def _refine(logs: np.ndarray, cc: np.ndarray, cl: np.ndarray, left: np.ndarray,
            right: np.ndarray, best_pos: np.ndarray, min_tail: int) -> np.ndarray:
    """Refine between the coarse neighbours of each resample's best candidate: its alpha (b,)."""
    fine = np.concatenate([_grid(left, right, FINE), best_pos[:, None]], axis=1)
    alpha, dist = _alpha_ks(logs, cc, cl, fine, min_tail)
    best, _ = _best(alpha, dist)
    return best


def _resample_median(lam: np.ndarray, logs: np.ndarray, cc: np.ndarray, cl: np.ndarray,
                     counts: np.ndarray, last: int, min_tail: int) -> np.ndarray:
    """``median``: xmin = the resample's order statistic at rank N // 2."""
    # the first index whose count crosses rank N // 2 (N: the resample's draws)
    i = np.argmax(cc[:, 1:] > cc[:, -1:] // 2, axis=1)
    i = np.minimum(i, last)[:, None]
    alpha, _ = _alpha_ks(logs, cc, cl, i, min_tail)
    return alpha[:, 0]


def _resample_ks(lam: np.ndarray, logs: np.ndarray, cc: np.ndarray, cl: np.ndarray,
                 counts: np.ndarray, last: int, min_tail: int) -> np.ndarray:
    """``ks``: the KS scan over ``0..last`` (coarse grid, then refined)."""
    pos = np.unique(np.linspace(0, last, COARSE).round().astype(np.int64))
    alpha, dist = _alpha_ks(logs, cc, cl, pos, min_tail)
    _, k = _best(alpha, dist)
    left = pos[np.maximum(k - 1, 0)]
    right = pos[np.minimum(k + 1, pos.size - 1)]
    return _refine(logs, cc, cl, left, right, pos[k], min_tail)


def _resample_peak(lam: np.ndarray, logs: np.ndarray, cc: np.ndarray, cl: np.ndarray,
                   counts: np.ndarray, last: int, min_tail: int) -> np.ndarray:
    """``peak``: the resample's own log-histogram (100 bins over its range) and window."""
    b, n_all = counts.shape
    rows = np.arange(b)
    drawn = counts > 0
    first = np.argmax(drawn, axis=1)
    top = n_all - 1 - np.argmax(drawn[:, ::-1], axis=1)
    l10 = logs / math.log(10)
    lo10, hi10 = l10[first], l10[top]
    width = np.where(hi10 > lo10, (hi10 - lo10) / 100.0, 1.0)
    bins = np.clip(((l10[None, :] - lo10[:, None]) / width[:, None]).astype(np.int64), 0, 99)
    hist = np.bincount((bins + 100 * np.arange(b)[:, None]).ravel(),
                       weights=counts.ravel(), minlength=100 * b).reshape(b, 100)
    x_peak = 10 ** (lo10 + np.argmax(hist, axis=1) * width)
    lo = np.searchsorted(lam, 0.95 * x_peak, side="left")
    hi = np.minimum(np.searchsorted(lam, 1.5 * x_peak, side="right") - 1, last)
    empty = lo > hi
    lo, hi = np.where(empty, 0, lo), np.where(empty, 0, hi)
    pos = _grid(lo, hi, COARSE)
    alpha, dist = _alpha_ks(logs, cc, cl, pos, min_tail)
    _, k = _best(alpha, dist)
    left = pos[rows, np.maximum(k - 1, 0)]
    right = pos[rows, np.minimum(k + 1, COARSE - 1)]
    best = _refine(logs, cc, cl, left, right, pos[rows, k], min_tail)
    return np.where(empty, np.nan, best)


# One resample path per xmin rule: every FitMethod member has its own entry (a new member
# without one raises in _resample_path instead of running as another rule).
RESAMPLE_PATHS: dict[FitMethod, Callable[..., np.ndarray]] = {
    FitMethod.KS: _resample_ks,
    FitMethod.MEDIAN: _resample_median,
    FitMethod.PEAK: _resample_peak,
}


def _resample_path(method: str) -> Callable[..., np.ndarray]:
    """The resample path of the xmin rule ``method`` (a FitMethod value or member).

    Returns:
        The function of ``method``'s entry.

    Raises:
        ValueError: ``method`` is not a FitMethod value, or has no resample path.
    """
    return FitMethod.entry(RESAMPLE_PATHS, method, "bootstrap resample path for xmin method")


def _resample_alphas(
    lam: np.ndarray, method: str, last: int, min_tail: int, counts: np.ndarray
) -> np.ndarray:
    """The alpha of each resample (rows of ``counts``) by the xmin rule ``method``."""
    path = _resample_path(method)
    b, n_all = counts.shape
    logs = np.log(lam)
    cc = np.zeros((b, n_all + 1), dtype=np.int32)
    np.cumsum(counts, axis=1, out=cc[:, 1:])
    cl = np.zeros((b, n_all + 1))
    np.cumsum(counts * logs, axis=1, out=cl[:, 1:])
    return path(lam, logs, cc, cl, counts, last, min_tail)


def bootstrap_interval(
    lam: np.ndarray,
    method: str,
    last: int,
    min_tail: int,
    level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    draws: int | None = None,
) -> tuple[float, float, int] | None:
    """Percentile bootstrap interval of alpha, xmin chosen again on every resample.

    Efron & Tibshirani (1993), the percentile interval; deterministic for a given ``seed``.
    With ``draws`` = m < N each resample draws m of the N eigenvalues (the m-out-of-n
    bootstrap, Bickel, Goetze & van Zwet 1997): its percentiles are those of an estimate from m
    eigenvalues, for the caller to rescale.

    Args:
        lam: the N nonzero eigenvalues, ascending (float64, shape (N,)).
        method: the xmin rule (``ks``, ``median``, ``peak``).
        last: the largest xmin index the point fit may use (its tail keeps ``min_tail``
            distinct values).
        min_tail: the fewest distinct values of a tail.
        level: the interval's level, in (0, 1).
        n_resamples: resamples drawn, at least 10.
        seed: seed of the resampling.
        draws: eigenvalues drawn per resample, 1..N; ``None``: N.

    Returns:
        ``(low, high, resamples that gave an alpha)``, or None when fewer than half of them
        did.

    Raises:
        ValueError: a ``level`` outside (0, 1), ``n_resamples`` < 10 or ``draws`` outside 1..N.
    """
    n_all = lam.size
    m = n_all if draws is None else draws
    if not 1 <= m <= n_all:
        raise ValueError(f"draws must be in 1..{n_all}, got {draws}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 10:
        raise ValueError(f"n_resamples must be at least 10, got {n_resamples}")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(n_all, (COARSE + FINE) * POINTS))
    alphas = []
    for start in range(0, n_resamples, per_chunk):
        b = min(per_chunk, n_resamples - start)
        picks = rng.integers(0, n_all, size=(b, m)) + n_all * np.arange(b)[:, None]
        counts = np.bincount(picks.ravel(), minlength=b * n_all).reshape(b, n_all)
        counts = counts.astype(np.int32)
        alphas.append(_resample_alphas(lam, method, last, min_tail, counts))
    values = np.concatenate(alphas)
    values = values[np.isfinite(values)]
    if values.size < n_resamples / 2:
        return None
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high), int(values.size)
