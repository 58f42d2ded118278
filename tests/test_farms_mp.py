"""FARMS removes the aspect-ratio bias; the MP bulk edge and spikes on Gaussian matrices."""

import math

import numpy as np
import pytest
import torch

from spectracli.spectral import esd, farms_esd, farms_grid, fit_power_law, mp_fit
from spectracli.spectral.mp import mp_median


def test_grid_follows_the_released_rule():
    g = farms_grid(1000, 300, window=2000, ratio=1.0, steps=10)
    assert (g.rows, g.cols) == (300, 300)
    step = (1000 - 300) // 9
    assert g.row_offsets == tuple(min(i * step, 700) for i in range(10))
    assert g.col_offsets == (0,)  # a window as wide as the matrix: one column offset
    assert g.n_windows == 10
    wide = farms_grid(64, 512, window=32, ratio=2.0, steps=3)
    assert (wide.rows, wide.cols) == (32, 64)
    assert wide.row_offsets == (0, 16, 32) and wide.col_offsets == (0, 224, 448)


def test_square_matrix_with_full_window_is_the_full_esd():
    w = torch.randn(48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    lam, grid = farms_esd(w, window=2000)
    assert grid.n_windows == 1
    torch.testing.assert_close(lam, esd(w), rtol=1e-10, atol=1e-10)


def test_farms_pools_every_window_exactly():
    w = torch.randn(40, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    lam, grid = farms_esd(w, window=10, steps=3)
    parts = [
        np.linalg.svd(w[i : i + 10, j : j + 10].numpy(), compute_uv=False) ** 2
        for i in grid.row_offsets
        for j in grid.col_offsets
    ]
    ref = np.sort(np.concatenate(parts))
    # Gram eigvalsh: absolute error ~ eps * k * lambda_max per window (k = 10).
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(lam.numpy(), ref, rtol=0, atol=50 * eps * 10 * ref[-1])


def test_farms_removes_the_aspect_ratio_bias_on_gaussian_matrices():
    """Hu et al. 2025: Hill alpha of i.i.d. matrices drifts with Q; FARMS alpha does not.

    Measured in REFERENCES.md: full-matrix 2.13 (Q=1) .. 4.53 (Q=8); FARMS 64x64: 2.10-2.12.
    """
    torch.manual_seed(0)
    full, farms = [], []
    for q in (1, 2, 4, 8):
        w = torch.randn(256 * q, 256, dtype=torch.float64)
        full.append(fit_power_law(esd(w).numpy(), "median").alpha)
        lam, _ = farms_esd(w, window=64, steps=10)
        farms.append(fit_power_law(lam.numpy(), "median").alpha)
    assert all(b > a for a, b in zip(full, full[1:], strict=False))  # drifts upward with Q
    assert full[-1] - full[0] > 1.5
    assert max(farms) - min(farms) < 0.1  # sampling spread at these sizes is ~0.02
    assert farms[0] == pytest.approx(2.12, abs=0.1)


@pytest.mark.parametrize("q", [1, 2, 4])
def test_mp_bulk_edge_and_variance_on_gaussian_matrices(q):
    s2 = 0.25
    w = torch.randn(400 * q, 400, dtype=torch.float64, generator=torch.Generator().manual_seed(q))
    lam = esd(w * math.sqrt(s2)).numpy()
    fit = mp_fit(lam, 400 * q, 400)
    theory = 400 * q * s2 * (1 + q**-0.5) ** 2
    assert fit.sigma2 == pytest.approx(s2, rel=0.02)
    assert fit.bulk_edge == pytest.approx(theory, rel=0.02)
    assert lam[-1] == pytest.approx(theory, rel=0.05)  # finite-size edge fluctuation
    assert fit.num_spikes == 0


def test_a_planted_spike_is_counted_and_normalized_units_agree():
    g = torch.Generator().manual_seed(7)
    n, m = 600, 300
    w = torch.randn(n, m, dtype=torch.float64, generator=g)
    u = torch.randn(n, 1, dtype=torch.float64, generator=g)
    v = torch.randn(1, m, dtype=torch.float64, generator=g)
    spiked = w + 3.0 * u @ v / math.sqrt(m)  # far above the BBP threshold
    lam = esd(spiked).numpy()
    assert mp_fit(lam, n, m).num_spikes == 1
    norm = mp_fit(lam / n, n, m, normalized=True)
    assert norm.num_spikes == 1
    assert norm.bulk_edge == pytest.approx(mp_fit(lam, n, m).bulk_edge / n, rel=1e-12)


def test_mp_median_matches_a_large_gaussian_sample():
    w = torch.randn(2000, 1000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lam = esd(w).numpy() / 2000
    assert np.median(lam) == pytest.approx(mp_median(0.5), rel=0.01)


@pytest.mark.parametrize("y", [0.05, 0.25, 0.5, 1.0])
def test_mp_median_against_scipy_quadrature(y):
    from scipy import integrate, optimize

    a, b = (1 - y**0.5) ** 2, (1 + y**0.5) ** 2

    def cdf(x):
        f = lambda t: np.sqrt(max((b - t) * (t - a), 0.0)) / (2 * np.pi * y * t)  # noqa: E731
        return integrate.quad(f, a, x, limit=200)[0]

    ref = optimize.brentq(lambda x: cdf(x) - 0.5, a + 1e-12, b, xtol=1e-12)
    assert mp_median(y) == pytest.approx(ref, rel=1e-6)
