"""Realistic report dicts built from small random matrices, for the renderer and plot tests.

The numbers are computed here from the matrices (singular values by numpy, a Hill/MLE power-law
fit with xmin at the median eigenvalue, FARMS windows pooled), so the reports look like the ones
``analyze`` writes, without depending on it. A Hessian report is built from a dense symmetric
matrix with known eigenvalues.
"""

from __future__ import annotations

import math

import numpy as np

from spectracli.results import (
    AnalysisReport,
    EsdSample,
    FarmsResult,
    LayerResult,
    PowerLawFit,
    SkippedTensor,
)


def hill_fit(lam: np.ndarray, method: str = "median") -> PowerLawFit:
    """alpha = 1 + n / sum ln(lambda_j / xmin) over the tail from the median eigenvalue."""
    # Eigenvalues below lambda_max * 1e-12 are numerically zero: not part of any tail.
    lam = np.sort(lam[lam > lam.max(initial=0.0) * 1e-12])
    if lam.size < 4:
        return PowerLawFit(None, None, 0, None, None, None, "too_few_eigenvalues", method,
                           int(lam.size), fit_reason="fewer than 4 positive eigenvalues")
    i = lam.size // 2
    xmin = float(lam[i])
    tail = lam[i:]
    s = float(np.sum(np.log(tail / xmin)))
    if s <= 0:
        return PowerLawFit(None, xmin, int(tail.size), None, None, None,
                           "degenerate_tail", method, int(lam.size))
    alpha = 1.0 + tail.size / s
    cdf = 1.0 - (tail / xmin) ** (1.0 - alpha)
    ks = float(np.max(np.abs(cdf - np.arange(tail.size) / tail.size)))
    lmax = float(lam[-1])
    return PowerLawFit(
        alpha=float(alpha),
        xmin=xmin,
        tail_size=int(tail.size),
        ks_distance=ks,
        alpha_weighted=float(alpha * math.log10(lmax)),
        log_alpha_norm=float(math.log10(np.sum(lam**alpha))),
        fit_status="ok",
        fit_method=method,
        n_eigenvalues=int(lam.size),
    )


def esd_sample(lam: np.ndarray) -> EsdSample:
    lam = np.sort(lam)
    return EsdSample(values=[float(v) for v in lam], count=int(lam.size), quantiles=False)


def farms(w: np.ndarray, size: int = 16, steps: int = 3) -> FarmsResult:
    rows, cols = w.shape
    s = min(size, rows, cols)
    offs_r = sorted({min(k * max(1, (rows - s) // (steps - 1)), rows - s) for k in range(steps)})
    offs_c = sorted({min(k * max(1, (cols - s) // (steps - 1)), cols - s) for k in range(steps)})
    pooled = [
        np.linalg.svd(w[r:r + s, c:c + s], compute_uv=False) ** 2 for r in offs_r for c in offs_c
    ]
    lam = np.concatenate(pooled)
    return FarmsResult(
        fit=hill_fit(lam),
        window_rows=s,
        window_cols=s,
        n_windows=len(pooled),
        grid=(len(offs_r), len(offs_c)),
        esd=esd_sample(lam),
    )


def layer_from_matrix(
    name: str, w: np.ndarray, kind: str = "linear", shape: list[int] | None = None
) -> LayerResult:
    sv = np.linalg.svd(w, compute_uv=False)
    lam = sv**2
    m, n = w.shape
    q = max(m, n) / min(m, n)
    sigma2 = float(np.median(lam)) / (1.0 + q**-0.5) ** 2 * 0.9
    edge = sigma2 * (1.0 + q**-0.5) ** 2 * max(m, n)
    tol = sv[0] * max(m, n) * np.finfo(float).eps
    rank = int(np.sum(sv > tol))
    deficient = rank < sv.size
    p = lam[lam > 0] / lam.sum()
    return LayerResult(
        name=name,
        kind=kind,
        shape=shape or [m, n],
        matrix_shape=[m, n],
        n_matrices=1,
        dtype="float32",
        status="ok",
        n_eigenvalues=int(lam.size),
        sigma_max=float(sv[0]),
        sigma_min=float(sv[-1]),
        condition_number=math.inf if deficient else float(sv[0] / sv[-1]),
        rank_deficient=bool(deficient),
        lambda_max=float(lam[0]),
        frobenius_norm=float(np.sqrt(lam.sum())),
        stable_rank=float(lam.sum() / lam[0]),
        entropy=float(-(p * np.log(p)).sum() / math.log(max(rank, 2))),
        numerical_rank=rank,
        mp_sigma2=sigma2,
        mp_bulk_edge=float(edge / max(m, n)),
        num_spikes=int(np.sum(lam > edge / max(m, n))),
        fit=hill_fit(lam),
        farms=farms(w),
        esd=esd_sample(lam),
    )


def build_analyze_report(seed: int = 0, n_extra: int = 0) -> dict:
    """An analyze report with the cases the renderers must handle.

    - ``fc1.weight`` / ``fc2.weight`` / ``head.weight``: Gaussian linear layers (head heavy-tailed);
    - ``conv.weight``: a conv2d kernel (pooled slices);
    - ``low_rank.weight``: rank deficient (condition number inf);
    - ``tiny.weight``: a failed power-law fit;
    - ``broken.weight``: status ``nonfinite``, no metrics;
    - ``n_extra`` more linear layers ``extra.<i>.weight`` for many-layer layouts.
    """
    rng = np.random.default_rng(seed)
    layers = [
        layer_from_matrix("fc1.weight", rng.standard_normal((96, 64)) / 8),
        layer_from_matrix("fc2.weight", rng.standard_normal((64, 48)) / 8),
    ]
    conv = rng.standard_normal((32, 16, 3, 3)) / 6
    conv_layer = layer_from_matrix("conv.weight", conv.transpose(2, 3, 0, 1).reshape(-1, 16),
                                   kind="conv2d", shape=[32, 16, 3, 3])
    conv_layer.matrix_shape = [32, 16]
    conv_layer.n_matrices = 9
    layers.append(conv_layer)
    low = rng.standard_normal((40, 3)) @ rng.standard_normal((3, 40))
    low_layer = layer_from_matrix("low_rank.weight", low)
    low_layer.warnings.append("rank deficient: numerical rank 3 of 40")
    layers.append(low_layer)
    heavy = rng.standard_t(df=2.5, size=(48, 32)) / 4
    layers.append(layer_from_matrix("head.weight", heavy))
    tiny = layer_from_matrix("tiny.weight", rng.standard_normal((3, 2)))
    tiny.fit = hill_fit(np.array([1.0]))
    tiny.farms = None
    layers.append(tiny)
    layers.append(
        LayerResult(
            name="broken.weight", kind="linear", shape=[8, 8], matrix_shape=[8, 8],
            n_matrices=1, dtype="float16", status="nonfinite",
            warnings=["3 non-finite entries; layer not analysed"],
        )
    )
    for i in range(n_extra):
        layers.append(
            layer_from_matrix(f"extra.{i}.weight", rng.standard_normal((40, 24)) / (i + 2))
        )
    report = AnalysisReport(
        tool_version="0.1.0",
        created="2026-11-22T05:00:00+00:00",
        source={"path": "model<1>.safetensors", "format": "safetensors",
                "size_bytes": 123456, "n_tensors": 12, "base": None},
        settings={"fit": "median", "farms": True, "farms_window": 16, "farms_ratio": 1.0,
                  "farms_steps": 3, "min_size": 2, "normalize": False},
        layers=layers,
        skipped=[
            SkippedTensor("fc1.bias", [96], "1-D tensor (bias or norm): no matrix"),
            SkippedTensor("pos_ids", [1, 64], "integer dtype int64"),
        ],
        timing={"total_s": 0.5, "solve_s": 0.2},
    )
    return report.to_dict()


def build_hessian_report(k: int = 8, seed: int = 0) -> dict:
    """A Hessian report whose eigenvalues are exactly those of a dense symmetric test matrix."""
    rng = np.random.default_rng(seed)
    n = 60
    spectrum = np.concatenate([[50.0, 20.0, 9.0, 4.0], rng.uniform(-0.05, 0.5, n - 4)])
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    h = (q * spectrum) @ q.T
    eig = np.sort(np.linalg.eigvalsh(h))[::-1]
    grid = np.linspace(-1.0, 55.0, 400)
    # Gaussian-smoothed spectral density of h (the exact version of what SLQ estimates).
    width = 0.3
    dens = np.exp(-((grid[:, None] - eig[None, :]) ** 2) / (2 * width**2)).sum(axis=1)
    dens = dens / (n * width * math.sqrt(2 * math.pi))
    return {
        "schema_version": 1,
        "kind": "hessian",
        "tool_version": "0.1.0",
        "created": "2026-11-22T05:00:00+00:00",
        "source": {"model": "sample_models/digits.py:build_mlp",
                   "checkpoint": "digits_mlp.safetensors", "data": "digits.npz"},
        "operator": "hessian",
        "settings": {"k": k, "tol": 1e-6, "dtype": "float64", "batch_size": 512, "lr": 0.05},
        "eigenvalues": [float(v) for v in eig[:k]],
        "residuals": [1e-9 * (i + 1) for i in range(k)],
        "converged": [True] * (k - 1) + [False],
        "hvp_count": 31,
        "n_params": 50890,
        "n_samples": 1500,
        "loss": 0.0421,
        "grad_norm": 0.0137,
        "condition_number": None,
        "lambda_max": float(eig[0]),
        "lambda_min": float(eig[k - 1]),
        "hvp_counts": {"lanczos": 31},
        "edge_of_stability": 0.05 * float(eig[0]) / 2,  # lr * lambda_max / 2 with lr = 0.05
        "timing": {"total_s": 1.5},
        "trace": {"estimate": float(np.trace(h)), "stderr": 0.8, "n_matvecs": 99},
        "density": {
            "grid": [float(v) for v in grid],
            "values": [float(v) for v in dens],
            "bulk_edge": 0.5,
            "n_outliers": 4,
            "outliers": [50.0, 20.0, 9.0, 4.0],
        },
    }
