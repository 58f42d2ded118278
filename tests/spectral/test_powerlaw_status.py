"""Fit status: ok only on a resolved, distinct tail that passes the KS bound; the degenerate
layers of issue 11 get their named status, and nothing warns on the terminal."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.spectral import fit_power_law, squared_singular_values
from spectracli.spectral.metrics import precision_thresholds
from spectracli.spectral.powerlaw import distinct_from, ks_critical


@pytest.fixture(scope="module")
def degenerate_report(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(50, 50, dtype=torch.float64, generator=g))
    u, v = torch.randn(40, 1, generator=g), torch.randn(1, 30, generator=g)
    tensors = {
        "orth.weight": q.float().contiguous(),
        "rank1.weight": (u @ v).float(),
        "eye.weight": torch.eye(30, dtype=torch.float64),
        "gauss.weight": torch.randn(64, 48, generator=g),
    }
    path = tmp_path_factory.mktemp("degenerate") / "m.safetensors"
    save_file(tensors, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy/torch warning may reach the terminal
        report = analyze_checkpoint(path, AnalyzeConfig(threads=1, farms_window=16))
    return {layer.name: layer for layer in report.layers}


def test_float32_orthogonal_matrix_is_a_flat_spectrum(degenerate_report):
    layer = degenerate_report["orth.weight"]
    # Its singular values are 1 +- 4e-8: equal at float32 resolution (alpha was 3.4e7, "ok").
    assert layer.fit.fit_status == "flat_spectrum"
    # (Its 16 x 16 FARMS windows are not orthogonal: their pooled ESD is a real spectrum.)
    assert layer.numerical_rank == 50 and layer.condition_number == pytest.approx(1, abs=1e-6)


def test_float32_rank_one_layer_fits_nothing(degenerate_report):
    layer = degenerate_report["rank1.weight"]
    assert layer.numerical_rank == 1 and layer.rank_deficient
    assert layer.condition_number == math.inf
    assert layer.fit.fit_status == "too_few_eigenvalues" and layer.fit.alpha is None
    # FARMS: one nonzero eigenvalue per 16 x 16 window, pooled over many windows, is no ESD.
    assert layer.farms.fit.fit_status == "too_few_eigenvalues"
    assert "per window" in layer.farms.fit.fit_reason


def test_identity_is_flat_and_gaussian_is_fitted(degenerate_report):
    assert degenerate_report["eye.weight"].fit.fit_status == "flat_spectrum"
    gauss = degenerate_report["gauss.weight"].fit
    assert gauss.alpha is not None and gauss.fit_status in ("ok", "no_power_law")


def test_ks_critical_values_match_the_kolmogorov_tables():
    # Exact two-sided 5 % critical values of the one-sample KS statistic (Miller 1956).
    for n, exact in ((5, 0.56328), (10, 0.40925), (20, 0.29408), (40, 0.21012)):
        assert ks_critical(n, 0.05) == pytest.approx(exact, rel=0.01)


def test_no_power_law_when_the_ks_distance_is_above_the_bound():
    lam = np.random.default_rng(0).uniform(1.0, 2.0, 2000)  # a flat density: no power law
    fit = fit_power_law(lam, "median")
    assert fit.fit_status == "no_power_law" and fit.ks_distance >= fit.ks_critical
    assert fit.alpha is not None  # reported, marked by the status


def test_ks_scan_only_considers_tails_with_enough_distinct_values():
    rng = np.random.default_rng(1)
    # 200 spread eigenvalues plus 30 copies of the top: tails made of the copies are degenerate
    lam = np.concatenate([rng.pareto(2.0, 200) + 1.0, np.full(30, 50.0)])
    fit = fit_power_law(lam, "ks", min_tail=10)
    assert fit.n_distinct_tail >= 10
    assert fit_power_law(np.repeat([1.0, 2.0, 3.0], 20), "ks").fit_status == "degenerate_tail"


def test_distinct_values_at_a_resolution():
    sigma = np.array([1.0, 1.05, 1.09, 2.0, 3.0])
    assert list(distinct_from(sigma, 0.0)) == [5, 4, 3, 2, 1]
    assert list(distinct_from(sigma, 0.5)) == [3, 3, 3, 2, 1]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("rank", [1, 3])
def test_resolution_exceeds_the_rounding_noise_of_low_rank_matrices(dtype, rank):
    # The measurement behind precision_thresholds: sigma_{r+1} of a rounded rank-r matrix is
    # rounding noise, and stays below the resolution (2 u rms (sqrt m + sqrt n)).
    g = torch.Generator().manual_seed(rank)
    for shape in ((40, 30), (200, 100), (10, 300)):
        for scaled in (False, True):
            w = torch.randn(shape[0], rank, generator=g, dtype=torch.float64) @ torch.randn(
                rank, shape[1], generator=g, dtype=torch.float64)
            if scaled:  # very uneven rows
                w = w * torch.rand(shape[0], 1, generator=g, dtype=torch.float64) ** 4
            stored = w.to(dtype)
            lam = squared_singular_values(stored)
            sigma = lam.sqrt().flip(0)
            frob = float(stored.double().norm())
            zero, res = precision_thresholds(float(sigma[0]), frob, shape, 1, dtype)
            assert float(sigma[rank]) < res and float(sigma[rank]) <= zero
