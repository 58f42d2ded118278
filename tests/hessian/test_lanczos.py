"""Lanczos on dense symmetric matrices: eigenvalues against torch.linalg.eigvalsh (float64)."""

from __future__ import annotations

import pytest
import torch
from dense_truths import symmetric_with_eigenvalues

from spectracli.hessian.lanczos import lanczos
from spectracli.hessian.linop import DenseOperator, as_operator

# Tiny products: one thread (tests/conftest.py) avoids OpenMP spin-waits on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def spiked() -> torch.Tensor:
    """Hessian-like: 6 outliers over a bulk around zero with negative eigenvalues."""
    gen = torch.Generator().manual_seed(1)
    bulk = torch.randn(194, generator=gen, dtype=torch.float64) * 0.3
    outliers = torch.tensor([40.0, 25.0, 18.0, 12.0, 9.0, 7.0], dtype=torch.float64)
    negative = torch.tensor([-3.0, -2.0, -1.5, -1.2], dtype=torch.float64)
    return symmetric_with_eigenvalues(torch.cat([outliers, bulk, negative]))


def _rel_err(got: list[float], ref: torch.Tensor) -> float:
    got_t = torch.tensor(got, dtype=torch.float64)
    return float(((got_t - ref).abs() / ref.abs()).max())


def test_largest_match_eigvalsh_to_1e_8(spiked):
    ref = torch.linalg.eigvalsh(spiked).flip(0)[:5]
    res = lanczos(DenseOperator(spiked), k=5, tol=1e-10)
    assert res.all_converged
    assert _rel_err(res.eigenvalues, ref) < 1e-8
    assert res.eigenvalues == sorted(res.eigenvalues, reverse=True)


def test_smallest_find_negative_curvature(spiked):
    ref = torch.linalg.eigvalsh(spiked)[:3].flip(0)  # descending order, as reported
    res = lanczos(DenseOperator(spiked), k=3, which="smallest", tol=1e-10)
    assert res.all_converged
    assert _rel_err(res.eigenvalues, ref) < 1e-8
    assert res.eigenvalues[-1] == pytest.approx(-3.0, rel=1e-8)


def test_both_ends_in_one_run(spiked):
    ev = torch.linalg.eigvalsh(spiked)
    ref = torch.cat([ev.flip(0)[:2], ev[:2].flip(0)])
    res = lanczos(DenseOperator(spiked), k=2, which="both", tol=1e-10)
    assert res.all_converged and _rel_err(res.eigenvalues, ref) < 1e-8


def test_restarts_with_small_basis_give_the_same_answer(spiked):
    ref = torch.linalg.eigvalsh(spiked).flip(0)[:4]
    res = lanczos(DenseOperator(spiked), k=4, tol=1e-10, max_basis=8)
    assert res.n_restarts > 0 and res.max_basis == 8
    assert res.all_converged and _rel_err(res.eigenvalues, ref) < 1e-8


def test_reported_residuals_are_the_true_ones(spiked):
    res = lanczos(DenseOperator(spiked), k=4, tol=1e-6, max_basis=10,
                  return_vectors=True)
    vecs = res.eigenvectors
    theta = torch.tensor(res.eigenvalues, dtype=torch.float64)
    true = (spiked @ vecs.T - vecs.T * theta).norm(dim=0) / theta.abs()
    assert torch.allclose(vecs @ vecs.T, torch.eye(4, dtype=torch.float64), atol=1e-10)
    # Estimates and true residuals agree to rounding (absolute 1e-12 relative to ||A|| = 40).
    assert torch.allclose(torch.tensor(res.residuals, dtype=torch.float64), true, atol=1e-12)


def test_low_rank_operator_and_tiny_dimension():
    low = symmetric_with_eigenvalues(torch.cat([torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64),
                             torch.zeros(47, dtype=torch.float64)]))
    res = lanczos(DenseOperator(low), k=3, tol=1e-10)
    assert res.all_converged and _rel_err(res.eigenvalues, torch.tensor([5.0, 3.0, 1.0])) < 1e-8
    small = symmetric_with_eigenvalues(torch.tensor([4.0, -1.0, 2.0], dtype=torch.float64))
    res = lanczos(DenseOperator(small), k=3)
    assert res.eigenvalues == pytest.approx([4.0, 2.0, -1.0], rel=1e-12)


def test_warm_start_from_the_top_eigenvector_converges_at_once(spiked):
    _, vecs = torch.linalg.eigh(spiked)
    res = lanczos(DenseOperator(spiked), k=1, tol=1e-8, v0=vecs[:, -1], deflate=False)
    assert res.n_matvecs <= 2 and res.eigenvalues[0] == pytest.approx(40.0, rel=1e-10)
    # Verifying the multiplicity costs one deflated run from a random vector, reported apart.
    checked = lanczos(DenseOperator(spiked), k=1, tol=1e-8, v0=vecs[:, -1])
    assert checked.multiplicity_verified and checked.n_deflations == 1
    assert checked.n_matvecs - checked.deflation_matvecs <= 2
    assert checked.eigenvalues[0] == pytest.approx(40.0, rel=1e-10)


def test_unconverged_pairs_are_flagged(spiked):
    res = lanczos(DenseOperator(spiked), k=5, tol=1e-12, max_matvecs=4)
    assert res.n_matvecs == 4 and not res.all_converged


@pytest.mark.parametrize(
    "kwargs, match",
    [({"which": "middle"}, "which"), ({"k": 0}, "k must"), ({"tol": 0.0}, "tol"),
     ({"max_basis": 3, "k": 5}, "max_basis")],
)
def test_invalid_arguments(kwargs, match):
    a = torch.eye(20, dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        lanczos(DenseOperator(a), **kwargs)


def test_an_unknown_which_is_worded_like_every_choice_error():
    from spectracli.errors import SpectraError

    with pytest.raises(SpectraError) as info:
        lanczos(DenseOperator(torch.eye(20, dtype=torch.float64)), which="middle")
    assert str(info.value) == "which must be one of 'largest', 'smallest', 'both'; got 'middle'"
    assert info.value.params == ("which",)


@pytest.mark.parametrize("which, scipy_which", [("largest", "LA"), ("smallest", "SA")])
def test_agrees_with_scipy_eigsh_and_numpy_eigvalsh(spiked, which, scipy_which):
    import numpy as np
    from scipy.sparse.linalg import LinearOperator as ScipyOperator
    from scipy.sparse.linalg import eigsh

    a = spiked.numpy()
    n = a.shape[0]
    ref_np = np.linalg.eigvalsh(a)
    ref_np = ref_np[::-1][:4] if which == "largest" else ref_np[:4][::-1]
    ref_sp = eigsh(ScipyOperator((n, n), matvec=lambda v: a @ v, dtype=np.float64), k=4,
                   which=scipy_which, tol=1e-12, return_eigenvectors=False)
    ref_sp = np.sort(ref_sp)[::-1]
    res = lanczos(DenseOperator(spiked), k=4, which=which, tol=1e-10)
    assert res.all_converged
    np.testing.assert_allclose(res.eigenvalues, ref_np, rtol=1e-8)
    np.testing.assert_allclose(res.eigenvalues, ref_sp, rtol=1e-8)


def test_float32_operator_reaches_float32_accuracy(spiked):
    ref = torch.linalg.eigvalsh(spiked).flip(0)[:3]
    res = lanczos(DenseOperator(spiked.float()), k=3, tol=1e-5)
    assert res.all_converged and _rel_err(res.eigenvalues, ref) < 1e-5


def test_plain_function_needs_as_operator(spiked):
    with pytest.raises(TypeError, match="as_operator"):
        lanczos(lambda v: spiked @ v, k=2)
    res = lanczos(as_operator(lambda v: spiked @ v, spiked.shape[0]), k=2, tol=1e-10)
    assert res.eigenvalues == pytest.approx([40.0, 25.0], rel=1e-9)
