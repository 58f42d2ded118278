"""One math layer, two libraries: spectracli.spectral on numpy arrays and on torch tensors.

Each function is run on the same matrix as a numpy array and as a torch tensor and checked
against a dense numpy float64 SVD (the independent truth) and against each other. Tolerances:
eigvalsh of a Gram matrix is backward stable, |d lambda| <= c * eps * k * lambda_max (c = 50
here); the SVD fallback |d sigma| <= c * eps * max(m, n) * sigma_max. numpy and torch run
different LAPACK builds, so they agree to those bounds, not bit for bit.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from dense_truths import constructed

from spectracli.spectral import esd, farms_esd, matrix_metrics, squared_singular_values
from spectracli.spectral.arrays import dtype_name, float_dtype, namespace, to_numpy
from spectracli.spectral.esd import all_finite, gram
from spectracli.spectral.metrics import rank_tolerance, storage_eps

EPS = np.finfo(np.float64).eps


def both(w: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    return w, torch.from_numpy(w.copy())


@pytest.mark.parametrize("shape", [(60, 60), (90, 30), (30, 90), (3, 40, 25)])
def test_squared_singular_values_numpy_and_torch_match_dense_svd(shape):
    w = np.random.default_rng(2).standard_normal(shape)
    truth = np.sort(np.linalg.svd(w, compute_uv=False) ** 2, axis=-1)
    k = min(shape[-2:])
    for x in both(w):
        got = squared_singular_values(x)
        assert namespace(got) is namespace(x)  # results stay in the caller's library
        np.testing.assert_allclose(
            to_numpy(got), truth, rtol=0, atol=50 * EPS * k * truth.max()
        )


def test_svd_fallback_runs_in_both_libraries():
    # kappa = 1e7: the Gram path cannot resolve sigma_min (GRAM_RELIABLE), svdvals is used.
    s = np.geomspace(2.0, 2e-7, 30)
    w = np.stack([constructed(50, 30, s, seed=1), constructed(50, 30, s[::-1] * 0 + 1.0)])
    for x in both(w):
        lam = to_numpy(squared_singular_values(x))
        bound = 50 * EPS * 50 * s[0]
        np.testing.assert_allclose(np.sqrt(lam[0]), np.sort(s), rtol=0, atol=bound)
        np.testing.assert_allclose(lam[1], np.ones(30), rtol=0, atol=1e-13)


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_low_precision_storage_is_solved_in_float64(storage):
    w = np.random.default_rng(3).standard_normal((40, 20)).astype(storage)
    truth = np.sort(np.linalg.svd(w.astype(np.float64), compute_uv=False) ** 2)
    for x in both(w):
        lam = squared_singular_values(x)
        assert dtype_name(lam.dtype) == "float64"
        np.testing.assert_allclose(to_numpy(lam), truth, rtol=0, atol=50 * EPS * 20 * truth[-1])


def test_blocked_gram_equals_one_product(monkeypatch):
    esd_module = sys.modules["spectracli.spectral.esd"]  # the package's `esd` is the function
    w = np.random.default_rng(4).standard_normal((2, 70, 9)).astype(np.float32)
    whole = np.einsum("bij,bik->bjk", w.astype(np.float64), w.astype(np.float64))
    monkeypatch.setattr(esd_module, "BLOCK_ELEMENTS", 50)  # blocks of 2 rows
    for x in both(w):
        np.testing.assert_allclose(to_numpy(gram(x, "float64")), whole, rtol=1e-13, atol=1e-12)


def test_farms_esd_numpy_and_torch_pool_the_same_windows():
    w = np.random.default_rng(5).standard_normal((130, 70))
    (lam_np, grid_np), (lam_t, grid_t) = (farms_esd(x, window=30, steps=4) for x in both(w))
    assert grid_np == grid_t
    r, c = grid_np.rows, grid_np.cols
    truth = np.sort(np.concatenate([
        np.linalg.svd(w[i : i + r, j : j + c], compute_uv=False) ** 2
        for i in grid_np.row_offsets for j in grid_np.col_offsets
    ]))
    for lam in (lam_np, lam_t):
        np.testing.assert_allclose(to_numpy(lam), truth, rtol=0, atol=50 * EPS * 30 * truth[-1])


def test_metrics_are_the_same_from_numpy_and_torch_eigenvalues():
    s = np.array([4.0, 2.0, 1.0, 0.5, 0.0])
    w = constructed(12, 5, s)
    lam = squared_singular_values(w)
    a = matrix_metrics(lam, (12, 5), "float32")
    b = matrix_metrics(torch.from_numpy(lam), (12, 5), torch.float32)
    assert a == b  # the few numbers per matrix are computed once, in numpy float64
    assert a.numerical_rank == 4 and a.rank_deficient
    assert a.sigma_max == pytest.approx(4.0, rel=1e-13)
    tol_np = rank_tolerance(lam, (12, 5), "bfloat16")
    tol_t = rank_tolerance(torch.from_numpy(lam), (12, 5), torch.bfloat16)
    assert float(tol_np[0]) == pytest.approx(float(tol_t[0]), rel=1e-15)
    assert float(tol_np[0]) == pytest.approx(0.5 * 2.0**-7 * np.sqrt(np.sum(s**2)), rel=1e-12)


def test_storage_eps_accepts_names_and_both_libraries_dtypes():
    for dtype in ("float16", "torch.float16", torch.float16, np.float16, np.dtype("float16")):
        assert storage_eps(dtype) == 2.0**-10
    assert storage_eps(torch.bfloat16) == torch.finfo(torch.bfloat16).eps
    assert storage_eps(torch.float8_e5m2) == torch.finfo(torch.float8_e5m2).eps
    assert storage_eps(torch.int8) == storage_eps("Q4_K") == np.finfo(np.float32).eps


def test_all_finite_and_esd_in_both_libraries():
    w = np.diag([3.0, 2.0, 1.0])
    for x in both(w):
        assert all_finite(x)
        np.testing.assert_allclose(to_numpy(esd(x)), [1.0, 4.0, 9.0], rtol=1e-15)
        np.testing.assert_allclose(to_numpy(esd(x, normalize=True)), [1 / 3, 4 / 3, 3.0])
    bad = w.copy()
    bad[1, 2] = np.nan
    assert not any(all_finite(x) for x in both(bad))


def test_bad_dtype_and_method_raise_value_errors():
    with pytest.raises(ValueError, match="floating dtype"):
        float_dtype(namespace(np.zeros(1)), "int32")
    with pytest.raises(ValueError, match="method"):
        squared_singular_values(np.eye(2), method="qr")


def test_spectral_math_does_not_import_torch():
    code = (
        "import sys, numpy as np; from spectracli.spectral import esd, farms_esd, matrix_metrics;"
        "lam = esd(np.eye(3)); matrix_metrics(lam, (3, 3)); farms_esd(np.eye(8), window=4);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
