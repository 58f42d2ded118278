"""Every FitMethod member has its own xmin rule and bootstrap resample path (issue 18).

A member added to ``options.FitMethod`` without its own entry must raise, not run as another
rule (the old string switches ran anything unknown as ``peak``).
"""

import numpy as np
import pytest

from spectracli.options import FitMethod
from spectracli.spectral import bootstrap, powerlaw


def _pareto(n: int = 400, alpha: float = 2.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort((1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0)))


def test_every_member_has_its_own_xmin_rule_and_resample_path():
    assert set(powerlaw.XMIN_RULES) == set(FitMethod)
    assert set(bootstrap.RESAMPLE_PATHS) == set(FitMethod)
    assert len(set(powerlaw.XMIN_RULES.values())) == len(FitMethod)
    assert len(set(bootstrap.RESAMPLE_PATHS.values())) == len(FitMethod)
    for member in FitMethod:
        assert powerlaw._xmin_rule(member.value) is powerlaw.XMIN_RULES[member]
        assert bootstrap._resample_path(member.value) is bootstrap.RESAMPLE_PATHS[member]
        assert bootstrap._resample_path(member) is bootstrap.RESAMPLE_PATHS[member]


@pytest.mark.parametrize("member", list(FitMethod))
def test_each_member_fits_and_resamples(member):
    lam = _pareto()
    fit = powerlaw.fit_power_law(lam, method=member.value, ci_resamples=20, seed=1)
    assert fit.fit_method == member.value
    assert fit.alpha is not None and np.isfinite(fit.alpha)
    assert fit.ci_method == "bootstrap"


def test_member_without_rule_raises_instead_of_falling_through(monkeypatch):
    # A member with no entry (what a new FitMethod member would be) raises in both tables.
    monkeypatch.delitem(powerlaw.XMIN_RULES, FitMethod.PEAK)
    with pytest.raises(ValueError, match="no xmin rule for method 'peak'"):
        powerlaw.fit_power_law(_pareto(), method="peak", ci_resamples=0)
    monkeypatch.delitem(bootstrap.RESAMPLE_PATHS, FitMethod.PEAK)
    counts = np.ones((2, 400), dtype=np.int64)
    with pytest.raises(ValueError, match="no bootstrap resample path for xmin method 'peak'"):
        bootstrap._resample_alphas(_pareto(), "peak", 300, 10, counts)


def test_unknown_method_raises_in_both_dispatches():
    with pytest.raises(ValueError, match="no xmin rule"):
        powerlaw._xmin_rule("mle")
    with pytest.raises(ValueError, match="no bootstrap resample path"):
        bootstrap._resample_path("mle")
