"""Heavy-tail power-law fits of an ESD (Clauset, Shalizi & Newman 2009).

For eigenvalues sorted ascending and a candidate xmin = lambda_i, the tail is the n = N - i
eigenvalues from i on, and the continuous maximum-likelihood exponent is

    alpha = 1 + n / sum_{j >= i} ln(lambda_j / xmin),

with the Kolmogorov-Smirnov distance D = max_j |1 - (lambda_j / xmin)^(1 - alpha) - j / n|
(j = 0..n-1 over the tail). xmin is chosen by one of three named rules:

- ``ks``: Clauset's scan, the xmin minimising D over all candidates with a tail of at least
  ``min_tail`` eigenvalues (WeightWatcher scans with no minimum, so tiny tails can win).
- ``median``: xmin = the median eigenvalue, tail ~ N/2 (the Hill estimator ``PL_Alpha_Hill``
  of TempBalance).
- ``peak``: the KS scan restricted to xmin in [0.95 x_peak, 1.5 x_peak], where x_peak is the left
  edge of the fullest of 100 bins of log10(lambda) (AlphaPruning). The reference code compares a
  log10 bound with linear lambda; we convert x_peak to linear units and compare like with like.

Suffix sums of ln(lambda) give every candidate alpha in O(N); the KS distances are vectorised
in blocks. A fit that cannot be made says why in ``fit_status`` and carries no alpha.
"""

from __future__ import annotations

import math

import numpy as np

from spectracli.results import PowerLawFit

XMIN_METHODS = ("ks", "median", "peak")
# Eigenvalues below this fraction of lambda_max are numerically zero for the fit.
ZERO_FLOOR = 1e-12
# Scan at most this many xmin candidates on a first pass; refine around the best one.
MAX_CANDIDATES = 512


def _alphas(lam: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """MLE alpha for xmin = lam[i], i in idx, from suffix sums of log(lambda)."""
    logs = np.log(lam)
    suffix = np.concatenate([np.cumsum(logs[::-1])[::-1], [0.0]])
    n = lam.size - idx
    denom = suffix[idx] - n * logs[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, 1.0 + n / denom, np.inf)


def ks_distances(lam: np.ndarray, idx: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """KS distance of the fitted tail for each candidate xmin = lam[i] (i in idx, ascending)."""
    n_total = lam.size
    logs = np.log(lam)
    out = np.full(idx.size, np.inf)
    finite = np.isfinite(alphas)
    rows = 64
    for start in range(0, idx.size, rows):
        sl = slice(start, start + rows)
        ok = finite[sl]
        if not ok.any():
            continue
        i, a = idx[sl][ok], alphas[sl][ok]
        lo = int(i.min())  # columns before the smallest xmin in the block are in no tail
        j = np.arange(lo, n_total)[None, :] - i[:, None]
        n = (n_total - i)[:, None]
        # (lambda_j / xmin)^(1 - alpha) in log space. Columns left of a row's xmin (j < 0) are
        # not in its tail: clamping their log ratio to 0 keeps the exponent <= 0 (alpha > 1), so
        # exp cannot overflow there; they are zeroed below.
        ratio = np.maximum(logs[None, lo:] - logs[i][:, None], 0.0)
        fitted = 1.0 - np.exp((1.0 - a[:, None]) * ratio)
        gap = np.abs(fitted - j / n)
        gap[j < 0] = 0.0
        block = out[sl]
        block[ok] = gap.max(axis=1)
        out[sl] = block
    return out


def _scan(lam: np.ndarray, lo: int, hi: int) -> tuple[int, float, float]:
    """Best (index, alpha, D) by KS over candidate indices lo..hi inclusive (coarse, then fine)."""
    count = hi - lo + 1
    if count <= MAX_CANDIDATES:
        idx = np.arange(lo, hi + 1)
    else:
        idx = np.unique(np.linspace(lo, hi, MAX_CANDIDATES).round().astype(int))
    alphas = _alphas(lam, idx)
    d = ks_distances(lam, idx, alphas)
    best = int(np.argmin(d))
    if count > MAX_CANDIDATES:
        # Refine between the coarse neighbours of the best candidate, at full resolution.
        left = idx[max(best - 1, 0)]
        right = idx[min(best + 1, idx.size - 1)]
        fine = np.arange(left, right + 1)
        fa = _alphas(lam, fine)
        fd = ks_distances(lam, fine, fa)
        b = int(np.argmin(fd))
        return int(fine[b]), float(fa[b]), float(fd[b])
    return int(idx[best]), float(alphas[best]), float(d[best])


def _peak_bounds(lam: np.ndarray) -> tuple[float, float]:
    counts, edges = np.histogram(np.log10(lam), bins=100)
    x_peak = 10 ** edges[int(np.argmax(counts))]
    return 0.95 * x_peak, 1.5 * x_peak


def fit_power_law(
    eigs: np.ndarray,
    method: str = "ks",
    min_tail: int = 10,
) -> PowerLawFit:
    """Fit a power law to the upper tail of an ESD; see the module docstring for the rules."""
    if method not in XMIN_METHODS:
        raise ValueError(f"xmin method must be one of {', '.join(XMIN_METHODS)}, got {method!r}")
    if min_tail < 2:
        raise ValueError(f"min_tail must be at least 2, got {min_tail}")
    lam = np.sort(np.asarray(eigs, dtype=np.float64).reshape(-1))
    n_all = lam.size

    def failed(why: str) -> PowerLawFit:
        return PowerLawFit(None, None, 0, None, None, None, f"failed: {why}", method, n_all)

    if n_all == 0 or not np.all(np.isfinite(lam)):
        return failed("no finite eigenvalues")
    lam_max = lam[-1]
    if lam_max <= 0:
        return failed("all eigenvalues are zero")
    lam = lam[lam > ZERO_FLOOR * lam_max]
    if lam.size < min_tail:
        return failed(f"{lam.size} nonzero eigenvalues, fewer than the minimum tail {min_tail}")

    last = lam.size - min_tail  # largest xmin index leaving min_tail eigenvalues
    if method == "median":
        i = min(lam.size // 2, last)
        alpha = float(_alphas(lam, np.array([i]))[0])
        d = float(ks_distances(lam, np.array([i]), np.array([alpha]))[0])
    elif method == "ks":
        i, alpha, d = _scan(lam, 0, last)
    else:
        lo_x, hi_x = _peak_bounds(lam)
        cand = np.nonzero((lam >= lo_x) & (lam <= hi_x))[0]
        cand = cand[cand <= last]
        if cand.size == 0:
            return failed("no eigenvalue within [0.95, 1.5] x the log-histogram peak")
        i, alpha, d = _scan(lam, int(cand[0]), int(cand[-1]))
    if not math.isfinite(alpha):
        return failed("tail eigenvalues are all equal (alpha is infinite)")
    xmin = float(lam[i])
    # log10 sum lambda^alpha, in log space so large lambda^alpha cannot overflow.
    terms = alpha * np.log(lam)
    top = terms.max()
    log_alpha_norm = float((top + np.log(np.sum(np.exp(terms - top)))) / math.log(10))
    return PowerLawFit(
        alpha=alpha,
        xmin=xmin,
        tail_size=int(lam.size - i),
        ks_distance=d,
        alpha_weighted=alpha * math.log10(lam_max),
        log_alpha_norm=log_alpha_norm if math.isfinite(log_alpha_norm) else None,
        fit_status="ok",
        fit_method=method,
        n_eigenvalues=n_all,
    )


def alpha_warning(alpha: float | None, label: str = "alpha") -> str | None:
    """A heuristic note (not a verdict) when alpha falls outside the usual [2, 6] range."""
    if alpha is None or 2.0 <= alpha <= 6.0:
        return None
    side = "below 2 (very heavy tail)" if alpha < 2 else "above 6 (light tail, random-like)"
    return f"{label} {alpha:.2f} is {side}; heuristic range [2, 6], not a verdict on training"
