"""Hutch++ on dense symmetric matrices: estimates against the exact trace (float64)."""

from __future__ import annotations

import pytest
import torch
from dense_truths import linear_mse_hessian, symmetric_with_eigenvalues

from spectracli.hessian.hutchpp import hutchpp
from spectracli.hessian.linop import DenseOperator, as_operator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hessian_like() -> torch.Tensor:
    """Indefinite, 300 x 300: decaying outliers over a bulk around zero (trace known exactly)."""
    gen = torch.Generator().manual_seed(3)
    outliers = 50.0 * 0.7 ** torch.arange(12, dtype=torch.float64)
    bulk = torch.randn(288, generator=gen, dtype=torch.float64) * 0.2
    return symmetric_with_eigenvalues(torch.cat([outliers, bulk]))


def test_exact_when_the_sketch_spans_the_range():
    # Rank 5 and 6 sketch vectors: tr(Q^T A Q) is the whole trace, the deflated remainder is 0.
    top = torch.tensor([9.0, 4.0, -3.0, 2.0, 1.0], dtype=torch.float64)
    a = symmetric_with_eigenvalues(torch.cat([top, torch.zeros(95, dtype=torch.float64)]))
    op = DenseOperator(a)
    est = hutchpp(op, n_matvecs=18)
    assert est.estimate == pytest.approx(13.0, abs=1e-10)
    assert est.stderr < 1e-10 and est.n_matvecs == 18 == op.matvecs


def test_error_within_four_standard_errors(hessian_like):
    exact = float(torch.trace(hessian_like))
    est = hutchpp(DenseOperator(hessian_like), n_matvecs=60, seed=1)
    assert abs(est.estimate - exact) <= 4 * est.stderr
    assert est.n_sketch == 20 and est.n_probes == 20


def test_two_standard_error_interval_covers_in_most_seeds(hessian_like):
    # A +-2 stderr interval (20 probes: t with 19 dof, nominal ~94 %) must cover the exact trace
    # in at least 24 of 30 seeds (binomial: fails with probability < 0.01 if the stderr is right).
    exact = float(torch.trace(hessian_like))
    covered = 0
    for seed in range(30):
        est = hutchpp(DenseOperator(hessian_like), n_matvecs=60, seed=seed)
        covered += abs(est.estimate - exact) <= 2 * est.stderr
    assert covered >= 24


def test_beats_hutchinson_on_a_decaying_spectrum(hessian_like):
    # Same 60 products: Hutch++'s error is O(1/m), plain Hutchinson's O(1/sqrt m). Mean absolute
    # error over 20 seeds must be at least 3x lower.
    exact = float(torch.trace(hessian_like))
    n = hessian_like.shape[0]
    errs_pp, errs_h = [], []
    for seed in range(20):
        errs_pp.append(abs(hutchpp(DenseOperator(hessian_like), 60, seed=seed).estimate - exact))
        gen = torch.Generator().manual_seed(seed)
        z = torch.randint(0, 2, (n, 60), generator=gen).double() * 2 - 1
        errs_h.append(abs(float((z * (hessian_like @ z)).sum(0).mean()) - exact))
    assert sum(errs_pp) * 3 < sum(errs_h)


def test_float32_operator_and_plain_function(hessian_like):
    exact = float(torch.trace(hessian_like))
    a32 = hessian_like.float()
    est32 = hutchpp(DenseOperator(a32), n_matvecs=60, seed=1)
    est64 = hutchpp(as_operator(lambda v: hessian_like @ v, 300), n_matvecs=60, seed=1)
    assert abs(est64.estimate - exact) <= 4 * est64.stderr
    # float32 products: the same estimate to float32 rounding of a 300-term sum.
    assert est32.estimate == pytest.approx(est64.estimate, rel=1e-5)


def test_invalid_arguments(hessian_like):
    with pytest.raises(ValueError, match="n_matvecs must be >= 6"):
        hutchpp(DenseOperator(hessian_like), n_matvecs=5)
    with pytest.raises(TypeError, match="as_operator"):
        hutchpp(lambda v: v, n_matvecs=6)


def test_exact_trace_when_the_budget_reaches_n(hessian_like):
    """With n_matvecs >= n, n unit-vector products give the trace itself (Hutch++ with
    n <= m < 3n products is only an estimate): the whole-model --trace as the blocks do it."""
    exact = float(torch.trace(hessian_like))
    n = hessian_like.shape[0]
    for m in (n, 2 * n):
        op = DenseOperator(hessian_like)
        est = hutchpp(op, n_matvecs=m, seed=3)
        assert est.exact and est.stderr == 0.0 and est.n_matvecs == n == op.matvecs
        assert est.estimate == pytest.approx(exact, rel=1e-13, abs=1e-12)
    small = DenseOperator(torch.diag(torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64)))
    assert hutchpp(small, n_matvecs=4).estimate == pytest.approx(4.0, abs=1e-15)
    assert not hutchpp(DenseOperator(hessian_like), n_matvecs=n - 1).exact


def test_whole_model_trace_is_exact_when_trace_hvps_reach_the_parameter_count():
    from spectracli.hessian import HessianConfig, analyze

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1, bias=False).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.zeros(16, dtype=torch.float64)
    out = analyze(model, (x, y), "mse", HessianConfig(k=1, dtype="float64", trace=True,
                                                      trace_hvps=6)).to_dict()
    # the Hessian of mse here is X^T X / N (the project's mse convention: 0.5 mean squared)
    truth = float(torch.trace(linear_mse_hessian(x)))
    assert out["trace"]["exact"] and out["trace"]["n_matvecs"] == 4
    assert out["trace"]["estimate"] == pytest.approx(truth, rel=1e-12)
