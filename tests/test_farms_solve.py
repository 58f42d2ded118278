"""FARMS window solves: shared-strip Gram matrices, float32 solves and their error bound.

Truths: the Gram matrix X^T X of every window computed directly in float64, the eigenvalues of
each window by numpy's float64 eigvalsh (the pooled ESD as farms_esd computed it before), and
for the alpha bound the MLE alpha recomputed on perturbed eigenvalues.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectracli import analyze as analyze_module
from spectracli.spectral import farms
from spectracli.spectral.farms import (
    EPS32,
    FarmsGrid,
    farms_grid,
    farms_spectrum,
    float32_alpha_bound,
    window_grams,
)
from spectracli.spectral.powerlaw import fit_power_law

# (shape, window, steps): overlapping strips (running Gram updated), windows far apart
# (recomputed), wide matrices (transposed), a stack of slices, a column span shared by all.
CASES = [
    ((260, 256), 250, 10),
    ((700, 256), 100, 4),
    ((256, 700), 250, 10),
    ((3, 90, 40), 32, 5),
    ((64, 512), 50, 10),
]


def _direct(w: np.ndarray, grid: FarmsGrid) -> np.ndarray:
    """Every window's eigenvalues in float64 (numpy eigvalsh of X^T X), pooled, ascending."""
    out = []
    for m in w.reshape(-1, w.shape[-2], w.shape[-1]).astype(np.float64):
        for i in grid.row_offsets:
            for j in grid.col_offsets:
                x = m[i : i + grid.rows, j : j + grid.cols]
                out.append(np.linalg.eigvalsh(x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T))
    return np.sort(np.clip(np.concatenate(out), 0.0, None))


def _pareto(alpha: float, m: int, n: int, seed: int) -> np.ndarray:
    """W = U diag(sqrt(lambda)) V^T with Pareto lambda (density ~ x^-alpha): a known tail."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    lam = rng.random(k) ** (-1.0 / (alpha - 1.0))
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (u * np.sqrt(lam)) @ v.T


@pytest.mark.parametrize("store", ["bfloat16", "float32"])
def test_window_grams_are_the_direct_gram_matrices(store: str) -> None:
    rng = np.random.default_rng(0)
    for shape, window, steps in [((260, 256), 250, 10), ((700, 256), 100, 4), ((40, 700), 30, 10)]:
        w = torch.tensor(rng.standard_normal(shape)).to(getattr(torch, store))
        grid = farms_grid(*shape, window, 1.0, steps)
        ref = w.double().numpy()
        seen = set()
        for i, j, g in window_grams(w, grid):
            x = ref[i : i + grid.rows, j : j + grid.cols]
            direct = x.T @ x
            if store == "bfloat16":  # products of bf16 values and their sums are exact in f64
                np.testing.assert_array_equal(g.numpy(), direct)
            else:
                np.testing.assert_allclose(g.numpy(), direct, rtol=0, atol=1e-12 * np.abs(
                    direct).max())
            seen.add((i, j))
        assert seen == {(i, j) for i in grid.row_offsets for j in grid.col_offsets}


def test_window_grams_needs_the_long_side_as_rows() -> None:
    with pytest.raises(ValueError, match="grid.rows >= grid.cols"):
        next(window_grams(np.zeros((10, 40)), FarmsGrid(5, 10, (0,), (0,))))


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize(("shape", "window", "steps"), CASES)
def test_float64_windows_equal_the_direct_solves(lib: str, shape, window, steps) -> None:
    w = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    x = w if lib == "numpy" else torch.from_numpy(w)
    spec = farms_spectrum(x, window, 1.0, steps, dtype="float64", layout="released")
    ref = _direct(w, spec.grid)
    lam = np.asarray(spec.lam)
    # both are float64 eigvalsh of the same Gram matrices up to summation order: eps64 k lam_max
    k = min(spec.grid.rows, spec.grid.cols)
    assert np.abs(lam - ref).max() <= 2.3e-16 * k * ref[-1]
    assert spec.dtype == "float64" and spec.error == 0.0


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize(("shape", "window", "steps"), CASES)
def test_float32_windows_stay_within_their_error_bound(lib: str, shape, window, steps) -> None:
    w = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    x = w if lib == "numpy" else torch.from_numpy(w)
    spec = farms_spectrum(x, window, 1.0, steps, dtype="float32", layout="released")
    ref = _direct(w, spec.grid)
    lam = np.asarray(spec.lam)
    assert spec.dtype == "float32"
    assert spec.error >= farms.FLOAT32_SAFETY * EPS32 * ref[-1] * 0.999
    # sorted pooled lists: the i-th smallest moves no more than every eigenvalue does
    assert np.abs(lam - ref).max() <= spec.error
    # and the float32 solve is no exact copy of the float64 one (it did run in float32)
    assert np.abs(lam - ref).max() > 1e-3 * EPS32 * ref[-1]


def test_workers_and_batches_give_the_same_esd() -> None:
    w = torch.from_numpy(np.random.default_rng(3).standard_normal((3, 90, 40)))
    for dtype in ("float64", "float32"):
        one = farms_spectrum(w, 32, 1.0, 5, dtype=dtype, layout="released")
        for workers, batch in ((2, None), (1, 4), (3, 2)):
            other = farms_spectrum(w, 32, 1.0, 5, dtype=dtype, layout="released",
                                   workers=workers, batch=batch)
            torch.testing.assert_close(other.lam, one.lam, rtol=0, atol=0)
            assert other.error == one.error


def test_farms_spectrum_refuses_bad_settings() -> None:
    w = np.ones((20, 20))
    with pytest.raises(ValueError, match="float32 or float64"):
        farms_spectrum(w, 8, dtype="float16")
    with pytest.raises(ValueError, match="workers and batch >= 1"):
        farms_spectrum(w, 8, workers=0)


def test_alpha_bound_is_the_worst_perturbation() -> None:
    """Every eigenvalue moved by up to `error` (adversarially: the tail down and xmin up, or the
    reverse) moves the MLE alpha at the same tail by at most the bound, which is reached."""
    u = (np.arange(4000) + 0.5) / 4000
    lam = (1 - u) ** (-1 / (2.5 - 1))
    fit = fit_power_law(lam, "median", ci_resamples=0)
    i = lam.size // 2
    for rel in (1e-6, 1e-4):
        error = rel * lam[-1]
        bound = float32_alpha_bound(lam, fit.xmin, fit.alpha, error)
        worst = 0.0
        for sign in (1.0, -1.0):
            moved = lam.copy()
            moved[i + 1 :] -= sign * error
            moved[i] += sign * error
            tail = moved[i:]
            worst = max(worst, abs(1 + tail.size / np.sum(np.log(tail / tail[0])) - fit.alpha))
        assert worst <= bound * (1 + 1e-9)
        assert worst >= bound * (1 - 1e-9)
    assert float32_alpha_bound(lam, fit.xmin, fit.alpha, 2 * fit.xmin) == float("inf")


@pytest.mark.parametrize("kind", ["pareto2.5", "pareto4", "gauss"])
def test_float32_fit_moves_alpha_less_than_its_bound(kind: str) -> None:
    rng = np.random.default_rng(4)
    if kind == "gauss":
        w = rng.standard_normal((300, 128))
    else:
        w = _pareto(float(kind.removeprefix("pareto")), 300, 128, 4)
    x = torch.from_numpy(w).to(torch.bfloat16)
    fits = {}
    for dtype in ("float64", "float32"):
        spec = farms_spectrum(x, 120, 1.0, 10, dtype=dtype, layout="released")
        lam = spec.lam.numpy()
        fits[dtype] = (lam, spec, fit_power_law(lam, "ks", n_groups=spec.grid.n_windows,
                                                ci_resamples=0))
    (_, _, f64), (l32, s32, f32) = fits["float64"], fits["float32"]
    bound = float32_alpha_bound(l32, f32.xmin, f32.alpha, s32.error)
    assert f32.xmin == pytest.approx(f64.xmin, rel=1e-3)  # the same tail was chosen
    assert abs(f32.alpha - f64.alpha) <= bound
    share = farms.independent_windows(s32.grid) / s32.grid.n_windows
    assert bound <= farms.float32_alpha_tolerance(f32.alpha, f32.tail_size, share)  # kept


def test_analyze_keeps_float32_windows_within_the_bound_else_solves_float64(monkeypatch) -> None:
    import spectracli

    w = torch.from_numpy(_pareto(2.5, 240, 64, 5)).to(torch.bfloat16)
    options = dict(farms_grid="released", farms_window=60, ci_resamples=0, threads=1)

    def farms_of(**extra):  # noqa: ANN003, ANN202
        return spectracli.analyze({"w.weight": w}, **{**options, **extra}).layers[0].farms

    assert farms_of().solve_dtype == "float64"  # 60 x 60 windows: too small to pay
    monkeypatch.setattr(farms, "FLOAT32_MIN_SIZE_CPU", 32)
    auto, exact = farms_of(), farms_of(farms_precision="float64")
    assert auto.n_windows == 50  # 10 row x 5 column offsets: auto picks float32
    assert (auto.solve_dtype, exact.solve_dtype) == ("float32", "float64")
    assert exact.alpha_error_bound is None
    assert abs(auto.fit.alpha - exact.fit.alpha) <= auto.alpha_error_bound
    share = farms.independent_windows(farms.farms_grid(240, 64, 60)) / 50
    assert auto.alpha_error_bound <= farms.float32_alpha_tolerance(
        auto.fit.alpha, auto.fit.tail_size, share)
    # no tolerance at all: the first window refuses float32, every window is solved once, in
    # float64, and the float64 fit reported
    calls = []
    real = analyze_module.farms_spectrum
    monkeypatch.setattr(analyze_module, "farms_spectrum",
                        lambda *a, **k: calls.append(k["dtype"]) or real(*a, **k))
    monkeypatch.setattr(farms, "ALPHA_ATOL", 0.0)
    monkeypatch.setattr(farms, "ALPHA_SE_SHARE", 0.0)
    refused = farms_of()
    assert calls == ["float32"]  # asked for float32, decided float64 after the first window
    assert refused.solve_dtype == "float64" and refused.alpha_error_bound is None
    assert refused.fit.alpha == exact.fit.alpha
    # few windows (the bounded grid): float64 from the start
    bounded = farms_of(farms_grid="bounded")
    assert bounded.n_windows < farms.FLOAT32_MIN_WINDOWS and bounded.solve_dtype == "float64"


def test_window_dtype_per_device_and_window_count() -> None:
    assert farms.window_dtype("auto", 100, on_gpu=False) == "float32"
    assert farms.window_dtype("auto", 100, on_gpu=False, size=384) == "float64"  # scipy import
    assert farms.window_dtype("auto", 1, on_gpu=True, size=384) == "float32"
    assert farms.window_dtype("auto", 3, on_gpu=False) == "float64"
    assert farms.window_dtype("auto", 1, on_gpu=True) == "float32"
    assert farms.window_dtype("auto", 100, on_gpu=True, size=64) == "float64"
    assert farms.window_dtype("float64", 100, on_gpu=True) == "float64"
    with pytest.raises(ValueError, match="precision must be one of"):
        farms.window_dtype("half", 1, on_gpu=False)


def test_the_pooled_fit_is_checked_again_and_solved_in_float64_when_it_fails(monkeypatch) -> None:
    """The first window accepted float32 (tolerance inf), the pooled fit does not (0): analyze
    solves the windows again in float64 and reports that fit, as if asked for float64."""
    import spectracli

    w = torch.from_numpy(_pareto(2.5, 240, 64, 5)).to(torch.bfloat16)
    options = dict(farms_grid="released", farms_window=60, ci_resamples=0, threads=1)
    monkeypatch.setattr(farms, "FLOAT32_MIN_SIZE_CPU", 32)
    answers = iter([math.inf, 0.0])
    monkeypatch.setattr(analyze_module, "float32_alpha_tolerance", lambda *a: next(answers))
    calls = []
    real = analyze_module.farms_spectrum
    monkeypatch.setattr(analyze_module, "farms_spectrum",
                        lambda *a, **k: calls.append(k["dtype"]) or real(*a, **k))
    got = spectracli.analyze({"w.weight": w}, **options).layers[0].farms
    exact = spectracli.analyze({"w.weight": w}, farms_precision="float64",
                               **options).layers[0].farms
    assert calls == ["float32", "float64", "float64"]
    assert got.solve_dtype == "float64" and got.fit.alpha == exact.fit.alpha


@pytest.mark.parametrize("accept", [True, False])
def test_the_first_window_decides_the_precision_of_the_rest(accept: bool) -> None:
    """``decide`` sees the first window's float64 eigenvalues (equal to a direct eigvalsh of its
    Gram matrix) and the float32 error bound; refused, every window is float64 and the pooled
    ESD equals the float64 solve bit for bit."""
    w = torch.from_numpy(_pareto(3.0, 200, 90, 6)).to(torch.bfloat16)
    seen = []

    def decide(lam, error):  # noqa: ANN001, ANN202
        seen.append((lam.clone(), error))
        return accept

    spec = farms_spectrum(w, 80, 1.0, 10, dtype="float32", layout="released", decide=decide)
    exact = farms_spectrum(w, 80, 1.0, 10, dtype="float64", layout="released")
    (lam0, error), = seen
    grid = spec.grid
    first = w.double()[: grid.rows, : grid.cols]
    assert torch.equal(lam0, torch.linalg.eigvalsh(first.T @ first))
    assert error >= farms.EPS32 * float(lam0[-1])  # at least eps32 lambda_max of that window
    if accept:
        assert spec.dtype == "float32" and spec.error > 0
    else:
        assert spec.dtype == "float64" and spec.error == 0.0
        assert torch.equal(spec.lam, exact.lam)


def test_independent_windows_and_the_tolerance_in_closed_form() -> None:
    released = farms.farms_grid(2048, 2048, 2000)
    assert released.n_windows == 100
    # offsets 0, 5, ..., 45: the windows cover 2045 of the 2048 rows and columns
    assert farms.independent_windows(released) == pytest.approx(2045**2 / 2000**2)
    tall = farms.farms_grid(32000, 2048, 2000)
    # its 10 row windows of 2000 cover 20000 of the 32000 rows (and 2045 of the columns)
    assert farms.independent_windows(tall, 3) == pytest.approx(3 * 20000 * 2045 / 2000**2)
    five = farms.farms_grid(32000, 2048, 2000, layout="bounded")  # 5 disjoint windows
    assert farms.independent_windows(five) == pytest.approx(5.0)
    three = farms.farms_grid(5632, 2048, 2000, layout="bounded", budget=2)  # overlapping rows
    assert three.row_offsets == (0, 1816, 3632)
    assert farms.independent_windows(three) == pytest.approx(5632 * 2000 / 2000**2)
    one = farms.farms_grid(2048, 2048, 2000, layout="bounded")
    assert farms.independent_windows(one) == 1.0  # never more than the windows
    # se = (alpha - 1) / sqrt(share n): alpha 21, 400 eigenvalues of which a quarter independent
    assert farms.float32_alpha_tolerance(21.0, 400, 0.25) == pytest.approx(0.1 * 20 / 10)
    assert farms.float32_alpha_tolerance(2.0, 10**6) == farms.ALPHA_ATOL


def test_auto_solves_float64_where_float32_cannot_resolve_eigenvalues_the_fit_keeps(
    monkeypatch,
) -> None:
    """A rank-40 600 x 600 matrix plus 1e-4 noise, stored in float32 (its zero level far below
    the float32 solve error): 216 of each window's 256 eigenvalues are noise that float32 cannot
    tell from zero. Kept in float32 (before), the xmin scan ran over another set and chose
    another tail: alpha 41.6 from 47 eigenvalues, against 7.45 from 560 in float64 (a
    fresh-user report); now the first window sends every window to float64."""
    import spectracli

    monkeypatch.setattr(farms, "FLOAT32_MIN_SIZE_CPU", 256)  # windows of 256 would go float32
    r = np.random.default_rng(11)
    w = r.standard_normal((600, 40)) @ r.standard_normal((40, 600)) / 40
    w = (w + 1e-4 * r.standard_normal((600, 600))).astype(np.float32)
    options = dict(farms_grid="released", farms_window=256, ci_resamples=0)
    auto = spectracli.analyze({"x.weight": w}, **options).layers[0].farms
    exact = spectracli.analyze({"x.weight": w}, farms_precision="float64",
                               **options).layers[0].farms
    forced = spectracli.analyze({"x.weight": w}, farms_precision="float32",
                                **options).layers[0].farms
    assert auto.solve_dtype == "float64" and auto.fit.alpha == exact.fit.alpha
    assert abs(forced.fit.alpha - exact.fit.alpha) > 1  # what auto now avoids


@pytest.mark.parametrize("scale", [1e20, 1e-30])
def test_float32_windows_of_huge_or_tiny_weights_are_scaled_first(scale: float) -> None:
    """Weights of 1e20 (Gram entries 1e42, past float32's 3.4e38) or 1e-30 (1e-58, below its
    smallest subnormal): the window Gram matrices are divided by a power of two before the
    float32 solve, so the fit is the float64 one within its bound (before: LinAlgError at 1e20,
    a fit of zeros at 1e-30, from a fresh-user report)."""
    import spectracli

    w = (_pareto(2.5, 200, 200, 8) * scale).astype(np.float32)
    options = dict(farms_grid="released", farms_window=64, ci_resamples=0)
    f32 = spectracli.analyze({"x.weight": w}, farms_precision="float32",
                             **options).layers[0].farms
    f64 = spectracli.analyze({"x.weight": w}, farms_precision="float64",
                             **options).layers[0].farms
    assert f32.solve_dtype == "float32" and f32.fit.fit_status == f64.fit.fit_status
    assert abs(f32.fit.alpha - f64.fit.alpha) <= f32.alpha_error_bound
