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
in blocks. A fit is ``ok`` only on a tail of at least ``min_tail`` distinct values (at the
precision the weights were stored in) whose KS distance is below the Kolmogorov critical value;
otherwise ``fit_status`` names why (:func:`fit_power_law`) and alpha, when it can be computed at
all, is reported with that status.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from spectracli.options import FitMethod
from spectracli.spectral.bootstrap import (
    DEFAULT_RESAMPLES,
    MAX_BOOTSTRAP,
    analytic_interval,
    bootstrap_interval,
    standard_error,
)


@dataclass
class PowerLawFit:
    """Continuous power-law MLE fit of an ESD tail (see docs/metrics.md)."""

    alpha: float | None
    xmin: float | None
    tail_size: int
    ks_distance: float | None
    alpha_weighted: float | None
    log_alpha_norm: float | None
    fit_status: str  # ok | too_few_eigenvalues | flat_spectrum | degenerate_tail | no_power_law
    fit_method: str  # "ks" | "median" | "peak"
    n_eigenvalues: int
    fit_reason: str | None = None  # why the status is not ok, in words
    n_distinct_tail: int | None = None  # distinct tail values at the stored precision
    ks_critical: float | None = None  # the KS bound of "ok" for this tail size
    alpha_se: float | None = None  # (alpha - 1) / sqrt(tail_size)
    alpha_ci: list[float] | None = None  # [low, high] at ci_level
    ci_level: float | None = None
    ci_method: str | None = None  # "bootstrap" (xmin re-chosen per resample) | "analytic"
    ci_resamples: int | None = None  # bootstrap resamples that gave an alpha

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (the JSON report's fit keys)."""
        return asdict(self)


XMIN_METHODS = FitMethod.values()
# Eigenvalues below this fraction of lambda_max are numerically zero for the fit.
ZERO_FLOOR = 1e-12
# Scan at most this many xmin candidates on a first pass; refine around the best one.
MAX_CANDIDATES = 512
# Significance of the KS bound below which a fit is ``ok`` (see ks_critical).
KS_LEVEL = 0.05


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


def ks_critical(n: int, level: float = KS_LEVEL) -> float:
    """Kolmogorov critical distance for a sample of ``n`` at significance ``level``.

    c(level) / (sqrt(n) + 0.12 + 0.11 / sqrt(n)), c = sqrt(-ln(level / 2) / 2) (1.358 at 5 %),
    the asymptotic Kolmogorov quantile with Stephens' (1970) small-sample correction (within
    about 1 % of the exact critical values for n >= 5).

    Returns:
        The critical KS distance: a tail fitted with a smaller distance is not rejected.

    Example:
        >>> round(ks_critical(100), 4)  # 1.358 / (10 + 0.12 + 0.011)
        0.1341
    """
    c = math.sqrt(-math.log(level / 2.0) / 2.0)
    root = math.sqrt(n)
    return c / (root + 0.12 + 0.11 / root)


def distinct_from(sigma: np.ndarray, resolution: float) -> np.ndarray:
    """For ascending singular values, how many distinct values each suffix sigma[i:] holds.

    Two values are the same when they fall in the same bucket floor(sigma / resolution) (exact
    equality when ``resolution`` is 0).

    Returns:
        An int64 array of ``sigma.size``: entry i counts the distinct values of sigma[i:].
    """
    if sigma.size == 0:
        return np.zeros(0, dtype=np.int64)
    keys = np.floor(sigma / resolution) if resolution > 0 else sigma
    change = np.concatenate([keys[1:] != keys[:-1], [True]])  # last of each run of equal keys
    return np.cumsum(change[::-1])[::-1].astype(np.int64)


def _check_fit_settings(method: str, min_tail: int, n_groups: int, ks_level: float,
                        ci_level: float, ci_resamples: int) -> None:
    """The settings checks of :func:`fit_power_law` (its Raises), in its order."""
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    if ci_resamples != 0 and ci_resamples < 10:
        raise ValueError(f"ci_resamples must be 0 (analytic) or at least 10, got {ci_resamples}")
    if method not in XMIN_METHODS:
        raise ValueError(f"xmin method must be one of {', '.join(XMIN_METHODS)}, got {method!r}")
    if min_tail < 2:
        raise ValueError(f"min_tail must be at least 2, got {min_tail}")
    if n_groups < 1:
        raise ValueError(f"n_groups must be at least 1, got {n_groups}")
    if not 0 < ks_level < 1:
        raise ValueError(f"ks_level must be in (0, 1), got {ks_level}")


def fit_power_law(
    eigs: np.ndarray,
    method: str = "ks",
    min_tail: int = 10,
    *,
    sigma_zero: float | None = None,
    sigma_resolution: float | None = None,
    n_groups: int = 1,
    ks_level: float = KS_LEVEL,
    ci_level: float = 0.95,
    ci_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    independent: float = 1.0,
) -> PowerLawFit:
    """Fit a power law to the upper tail of an ESD; see the module docstring for the rules.

    Uncertainty (fits with status ``ok`` or ``no_power_law``): ``alpha_se`` = (alpha - 1) /
    sqrt(independent x tail_size), and ``alpha_ci`` at ``ci_level``: a percentile bootstrap of
    ``ci_resamples`` resamples that re-runs the xmin rule on each, its percentiles' distances
    from alpha on ln(alpha - 1) widened by 1 / sqrt(independent) (:mod:`spectracli.spectral.
    bootstrap`, seeded by ``seed``: the same input gives the same interval; beyond
    ``MAX_BOOTSTRAP`` nonzero eigenvalues each resample draws that many and the percentiles are
    rescaled the same way), or the analytic alpha +- z se when ``ci_resamples`` is 0 (with
    ``independent`` < 1: 1 + (alpha - 1) exp(+-z / sqrt(independent x tail_size)), the same se on
    ln(alpha - 1)); ``ci_method`` says which.

    ``fit_status`` is ``ok`` or one of (``fit_reason`` says why in words; alpha is still
    reported when it can be computed, but it is not a fit to act on):

    - ``too_few_eigenvalues``: fewer than ``min_tail`` resolved (nonzero) eigenvalues (per
      group): alpha of all of them, if any two differ.
    - ``flat_spectrum``: every resolved singular value within ``sigma_resolution`` of the others.
    - ``degenerate_tail``: no candidate tail holds ``min_tail`` distinct values (``median``: the
      median's tail does not).
    - ``no_power_law``: the KS distance of the chosen tail is at or above the Kolmogorov
      critical value :func:`ks_critical` (tail size, ``ks_level``).

    Args:
        eigs: eigenvalues lambda = sigma^2 (any order, shape (N,)).
        method: the xmin rule: ``ks``, ``median`` or ``peak`` (module doc).
        min_tail: the fewest distinct eigenvalues a tail of an ``ok`` fit holds (per group).
        sigma_zero: singular values at or below it are zero at the precision the weights were
            stored in (the rank tolerance; default sigma_max * N * eps(float64)); they are
            left out.
        sigma_resolution: singular values closer than this are the same value (default: exact
            equality).
        n_groups: the ESD pools this many equal-size spectra (FARMS windows); the fit needs
            ``min_tail`` resolved eigenvalues per group.
        ks_level: significance of the KS bound of ``ok``.
        ci_level: the level of ``alpha_ci``.
        ci_resamples: bootstrap resamples (0: the analytic interval).
        seed: seed of the bootstrap.
        independent: the share of the eigenvalues that are independent, in (0, 1]: 1 for one
            matrix; for overlapping FARMS windows, the windows' worth of distinct entries over
            the windows pooled (:func:`spectracli.spectral.farms.independent_windows`). The
            uncertainty counts the tail at that share (the fit itself is unchanged).

    Returns:
        The fit: alpha, xmin, tail size, KS distance and their status; alpha_se and alpha_ci
        for fits with status ``ok`` or ``no_power_law``.

    Raises:
        ValueError: an unknown ``method``, ``min_tail`` < 2, ``n_groups`` < 1, a ``ks_level`` or
            ``ci_level`` outside (0, 1), ``ci_resamples`` neither 0 nor >= 10, ``independent``
            outside (0, 1], or NaN/Inf eigenvalues.

    Example:
        >>> import numpy as np
        >>> u = (np.arange(2000) + 0.5) / 2000
        >>> lam = (1 - u) ** (-1 / (3.0 - 1))  # quantiles of a Pareto law with alpha = 3
        >>> fit = fit_power_law(lam, "median")
        >>> (fit.fit_status, round(fit.alpha, 2), fit.tail_size)
        ('ok', 3.0, 1000)
    """
    _check_fit_settings(method, min_tail, n_groups, ks_level, ci_level, ci_resamples)
    if not 0 < independent <= 1:
        raise ValueError(f"independent must be in (0, 1], got {independent}")
    fitter = _Fitter.of(eigs, sigma_zero, float(sigma_resolution or 0.0), method, ks_level)
    early = fitter.too_few_or_flat(n_groups, min_tail)
    if early is not None:
        return early
    lam, distinct = fitter.lam, fitter.distinct
    valid = np.nonzero(distinct >= min_tail)[0]  # xmin candidates with enough distinct values
    if valid.size == 0:
        return fitter.whole("degenerate_tail", f"{int(distinct[0])} distinct nonzero values at "
                            f"the stored precision, fewer than the minimum tail {min_tail}")
    last = int(valid[-1])  # distinct counts fall with i: candidates are 0..last
    chosen = _choose_xmin(fitter, last, min_tail)
    if isinstance(chosen, PowerLawFit):
        return chosen
    i, a, d = chosen
    n_tail = lam.size - i
    crit = ks_critical(n_tail, ks_level)
    if d >= crit:
        fit = fitter.result("no_power_law", f"KS distance {d:.3g} is at or above the "
                            f"{ks_level:.0%} critical value {crit:.3g} for a tail of {n_tail}",
                            i, a, d, int(distinct[i]))
    else:
        fit = fitter.result("ok", None, i, a, d, int(distinct[i]))
    if fit.alpha is not None:
        _add_uncertainty(fit, lam, method, last, min_tail, (ci_level, ci_resamples, seed),
                         independent)
    return fit


@dataclass
class _Fitter:
    """The resolved ESD of one fit and how its results are written.

    ``lam``: the nonzero eigenvalues at the stored precision, ascending; ``lam_max`` and
    ``n_all`` are of the ESD as given; ``distinct``: :func:`distinct_from` of sqrt(lam).
    """

    lam: np.ndarray
    lam_max: float
    n_all: int
    resolution: float
    method: str
    ks_level: float
    distinct: np.ndarray

    @classmethod
    def of(cls, eigs: np.ndarray, sigma_zero: float | None, resolution: float, method: str,
           ks_level: float) -> _Fitter:
        """Sort ``eigs``, clip negatives to 0 and drop the zeros at the stored precision.

        Returns:
            The fitter of the resolved eigenvalues.

        Raises:
            ValueError: ``eigs`` holds NaN or Inf values.
        """
        lam = np.sort(np.asarray(eigs, dtype=np.float64).reshape(-1))
        if not np.all(np.isfinite(lam)):
            raise ValueError("eigs holds NaN or Inf values")
        n_all = lam.size
        lam = np.clip(lam, 0.0, None)
        lam_max = float(lam[-1]) if n_all else 0.0
        if sigma_zero is None:
            sigma_zero = math.sqrt(lam_max) * n_all * np.finfo(np.float64).eps
        zero = max(sigma_zero**2, ZERO_FLOOR * lam_max)
        lam = lam[lam > zero]
        return cls(lam, lam_max, n_all, resolution, method, ks_level,
                   distinct_from(np.sqrt(lam), resolution))

    def result(self, status: str, reason: str | None, i: int | None = None,
               alpha: float | None = None, d: float | None = None,
               distinct: int | None = None) -> PowerLawFit:
        """The fit of the tail from index ``i`` with exponent ``alpha`` and KS distance ``d``.

        Returns:
            The fit with its status; without a finite alpha only the status, the reason and
            the counts are set.
        """
        lam = self.lam
        if alpha is not None and not math.isfinite(alpha):
            alpha = None
        tail = int(lam.size - i) if i is not None else 0
        xmin = float(lam[i]) if i is not None and alpha is not None else None
        log_norm = None
        if alpha is not None:
            # log10 sum lambda^alpha, in log space so large lambda^alpha cannot overflow.
            terms = alpha * np.log(lam)
            top = terms.max()
            log_norm = float((top + np.log(np.sum(np.exp(terms - top)))) / math.log(10))
        return PowerLawFit(
            alpha=alpha,
            xmin=xmin,
            tail_size=tail if alpha is not None else 0,
            ks_distance=d if alpha is not None else None,
            alpha_weighted=alpha * math.log10(self.lam_max) if alpha is not None else None,
            log_alpha_norm=log_norm if log_norm is not None and math.isfinite(log_norm) else None,
            fit_status=status,
            fit_method=self.method,
            n_eigenvalues=self.n_all,
            fit_reason=reason,
            n_distinct_tail=distinct if alpha is not None else None,
            ks_critical=ks_critical(tail, self.ks_level) if alpha is not None and tail else None,
        )

    def whole(self, status: str, reason: str) -> PowerLawFit:
        """Not ok: alpha of all resolved eigenvalues (xmin = the smallest), when defined."""
        lam = self.lam
        if lam.size < 2 or self.distinct[0] < 2:
            return self.result(status, reason)
        a = float(_alphas(lam, np.array([0]))[0])
        d = float(ks_distances(lam, np.array([0]), np.array([a]))[0])
        return self.result(status, reason, 0, a, d, int(self.distinct[0]))

    def too_few_or_flat(self, n_groups: int, min_tail: int) -> PowerLawFit | None:
        """The ``too_few_eigenvalues`` or ``flat_spectrum`` fit, when the ESD is one.

        Returns:
            That fit, or None when the ESD can be fitted.
        """
        lam = self.lam
        per_group = lam.size / n_groups
        if lam.size == 0:
            return self.result("too_few_eigenvalues",
                               "all eigenvalues are zero at the stored precision")
        if per_group < min_tail:
            what = (f"{lam.size} nonzero eigenvalues" if n_groups == 1
                    else f"{per_group:.3g} nonzero eigenvalues per window")
            return self.whole("too_few_eigenvalues",
                              f"{what}, fewer than the minimum tail {min_tail}")
        sigma = np.sqrt(lam)
        if sigma[-1] - sigma[0] <= self.resolution:
            return self.whole("flat_spectrum", f"all {lam.size} nonzero singular values are "
                              f"equal within the stored precision ({self.resolution:.3g})")
        return None


def _xmin_median(fitter: _Fitter, last: int,
                 min_tail: int) -> tuple[int, float, float] | PowerLawFit:
    """``median``: xmin = the median eigenvalue (TempBalance's PL_Alpha_Hill)."""
    lam, distinct = fitter.lam, fitter.distinct
    i = lam.size // 2
    a = float(_alphas(lam, np.array([i]))[0])
    d = float(ks_distances(lam, np.array([i]), np.array([a]))[0])
    if i > last:
        return fitter.result("degenerate_tail", f"the median's tail holds "
                             f"{int(distinct[i])} distinct values, fewer than the minimum "
                             f"tail {min_tail}", i, a, d, int(distinct[i]))
    return i, a, d


def _xmin_ks(fitter: _Fitter, last: int,
             min_tail: int) -> tuple[int, float, float] | PowerLawFit:
    """``ks``: the Clauset scan over ``0..last`` minimising the KS distance."""
    return _scan(fitter.lam, 0, last)


def _xmin_peak(fitter: _Fitter, last: int,
               min_tail: int) -> tuple[int, float, float] | PowerLawFit:
    """``peak``: the KS scan within [0.95, 1.5] x the log-histogram peak (AlphaPruning)."""
    lam = fitter.lam
    lo_x, hi_x = _peak_bounds(lam)
    cand = np.nonzero((lam >= lo_x) & (lam <= hi_x))[0]
    cand = cand[cand <= last]
    if cand.size == 0:
        return fitter.whole("degenerate_tail", "no eigenvalue within [0.95, 1.5] x the "
                            "log-histogram peak leaves a tail of the minimum size")
    return _scan(lam, int(cand[0]), int(cand[-1]))


# One xmin rule per FitMethod member: a new member without an entry raises in _xmin_rule
# instead of running as another rule.
XMIN_RULES: dict[FitMethod, Callable[[_Fitter, int, int],
                                     tuple[int, float, float] | PowerLawFit]] = {
    FitMethod.KS: _xmin_ks,
    FitMethod.MEDIAN: _xmin_median,
    FitMethod.PEAK: _xmin_peak,
}


def _xmin_rule(method: str) -> Callable[[_Fitter, int, int],
                                        tuple[int, float, float] | PowerLawFit]:
    """The xmin rule of ``method`` (a FitMethod value or member).

    Returns:
        The function of ``method``'s entry.

    Raises:
        ValueError: ``method`` is not a FitMethod value, or has no xmin rule.
    """
    return FitMethod.entry(XMIN_RULES, method, "xmin rule for method")


def _choose_xmin(fitter: _Fitter, last: int,
                 min_tail: int) -> tuple[int, float, float] | PowerLawFit:
    """xmin by the fitter's rule among the candidates ``0..last`` (module doc).

    Returns:
        ``(index, alpha, KS distance)`` of the chosen tail, or the ``degenerate_tail`` fit when
        the rule leaves no tail of ``min_tail`` distinct values.

    Raises:
        ValueError: the fitter's method has no rule in ``XMIN_RULES``.
    """
    return _xmin_rule(fitter.method)(fitter, last, min_tail)


def _add_uncertainty(fit: PowerLawFit, lam: np.ndarray, method: str, last: int, min_tail: int,
                     ci: tuple[float, int, int], independent: float) -> None:
    """Set ``alpha_se`` and ``alpha_ci`` of a fit with an alpha (bootstrap or analytic).

    ``ci``: (level, resamples, seed). The tail counts at ``independent`` x its size; the
    bootstrap draws at most ``MAX_BOOTSTRAP`` eigenvalues per resample (:func:`_widened`).
    """
    assert fit.alpha is not None
    ci_level, ci_resamples, seed = ci
    n_tail = fit.tail_size * independent
    fit.alpha_se = standard_error(fit.alpha, n_tail)
    fit.ci_level = ci_level
    interval = None
    draws = min(lam.size, MAX_BOOTSTRAP)  # beyond it, m out of n: the percentiles of m draws
    if ci_resamples:
        interval = bootstrap_interval(lam, method, last, min_tail, ci_level, ci_resamples, seed,
                                      draws)
    if interval is not None:
        low, high = _widened(fit.alpha, interval[:2], independent * lam.size / draws)
        # A percentile interval can miss its own point estimate when the resampled fits jump
        # between xmin choices (Gaussian noise: alpha 29, percentiles [3.1, 18.7]); the
        # reported interval always contains alpha, which only widens it.
        fit.alpha_ci = [min(low, fit.alpha), max(high, fit.alpha)]
        fit.ci_method, fit.ci_resamples = "bootstrap", interval[2]
    elif independent < 1:
        z = NormalDist().inv_cdf(0.5 + ci_level / 2.0)
        fit.alpha_ci = [1.0 + (fit.alpha - 1.0) * math.exp(s * z / math.sqrt(n_tail))
                        for s in (-1.0, 1.0)]
        fit.ci_method = "analytic"
    else:
        fit.alpha_ci = list(analytic_interval(fit.alpha, n_tail, ci_level))
        fit.ci_method = "analytic"


def _widened(alpha: float, ends: tuple[float, float], ratio: float) -> tuple[float, float]:
    """Bootstrap percentiles of m drawn eigenvalues rescaled to ``ratio`` x m independent ones.

    The MLE's relative error (alpha_hat - 1) / (alpha - 1) has a spread of 1 / sqrt(n)
    (Clauset et al. 2009, eq. 3.2), so on ln(alpha - 1) the percentiles' distances from the
    estimate scale as 1 / sqrt(n): from m to ratio x m they change by 1 / sqrt(ratio) (the
    m-out-of-n scaling, Bickel, Goetze & van Zwet 1997): wider for pooled overlapping windows
    (ratio < 1), narrower for an ESD subsampled for cost (ratio > 1). On that scale the ends stay
    above 1, as every alpha of a power law does. ``ratio`` = 1: the ends unchanged.

    Returns:
        (low, high).
    """
    if ratio == 1:
        return ends
    widen = 1.0 / math.sqrt(ratio)
    return tuple(1.0 + (alpha - 1.0) * ((end - 1.0) / (alpha - 1.0)) ** widen for end in ends)


def alpha_warning(alpha: float | None, label: str = "alpha") -> str | None:
    """A heuristic note (not a verdict) when alpha falls outside the usual [2, 6] range."""
    if alpha is None or 2.0 <= alpha <= 6.0:
        return None
    side = "below 2 (very heavy tail)" if alpha < 2 else "above 6 (light tail, random-like)"
    return f"{label} {alpha:.2f} is {side}; heuristic range [2, 6], not a verdict on training"
