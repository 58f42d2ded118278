"""FARMS window solves: time of the released grid, and float32 vs float64 fits.

Two parts (``--part speed``, ``--part accuracy``, or both):

1. speed: the pooled FARMS ESD (``released`` grid, 2000-row windows x ``--scale``) of one bf16
   matrix of each shape (default the Llama-1.1B q/o 2048 x 2048 and gate/up 5632 x 2048, 100
   windows each), by
   - ``direct``: every window's Gram matrix and eigvalsh in float64, as farms_esd did before
     (windows stacked in 64 MB chunks; the "before" of docs/benchmarks.md);
   - ``shared64`` / ``shared32``: :func:`spectracli.spectral.farms.farms_spectrum`, window Gram
     matrices from shared strips (float64), eigvalsh in float64 / float32;
   - ``shared32x2``: float32 with ``--workers`` threads solving windows;
   each as a torch tensor and as a numpy array (``--libs``), with wall and process CPU seconds
   and the largest difference to ``direct`` relative to lambda_max.
2. accuracy: on heavy-tailed W = U diag(sqrt(lambda)) V^T (Pareto lambda with density ~ x^-a,
   a = 2.5, 3.5, 5) and Gaussian matrices of the same shapes, the FARMS fit (``ks``, min tail 10,
   analytic interval) of the float64 and float32 ESDs: alpha, xmin, alpha_ci, the measured
   |d alpha|, the first-order bound :func:`~spectracli.spectral.farms.float32_alpha_bound` and
   whether analyze keeps the float32 fit (bound <= tolerance) or re-solves in float64.

BLAS/LAPACK run on one thread per solve (torch.set_num_threads(1); OPENBLAS/MKL/OMP_NUM_THREADS=1
are set before numpy loads), as in ``spectracli analyze`` on the CPU.

    python benchmarks/farms_solve_bench.py                       # scale 1: 2048 and 5632 x 2048
    python benchmarks/farms_solve_bench.py --scale 0.25 --part accuracy --seeds 0 1
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from farms_grid_study import pareto_matrix  # noqa: E402

from spectracli.spectral.farms import (  # noqa: E402
    farms_grid,
    farms_spectrum,
    float32_alpha_bound,
    float32_alpha_tolerance,
    independent_windows,
)
from spectracli.spectral.powerlaw import fit_power_law  # noqa: E402


def direct_farms(w: torch.Tensor, window: int, steps: int) -> np.ndarray:
    """The "before": each window's Gram matrix and eigvalsh in float64, 64 MB chunks."""
    grid = farms_grid(w.shape[0], w.shape[1], window, 1.0, steps)
    per_chunk = max(1, 8_000_000 // (grid.rows * grid.cols))
    offsets = [(i, j) for i in grid.row_offsets for j in grid.col_offsets]
    out = []
    for start in range(0, len(offsets), per_chunk):
        part = offsets[start : start + per_chunk]
        x = torch.stack([w[i : i + grid.rows, j : j + grid.cols] for i, j in part]).double()
        g = x.transpose(-2, -1) @ x if grid.rows >= grid.cols else x @ x.transpose(-2, -1)
        out.append(torch.linalg.eigvalsh(g).reshape(-1))
    return np.sort(np.clip(torch.cat(out).numpy(), 0.0, None))


def timed(fn):  # noqa: ANN001, ANN201
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def speed(scale: float, libs: list[str], workers: int, shapes: list[tuple[int, int]]) -> None:
    window = max(2, round(2000 * scale))
    print(f"released grid, window {window}, bf16 Gaussian matrices; seconds wall / CPU")
    g = torch.Generator().manual_seed(0)
    for m, n in shapes:
        m, n = max(8, round(m * scale)), max(8, round(n * scale))
        w = (torch.randn(m, n, generator=g) / n**0.5).to(torch.bfloat16)
        grid = farms_grid(m, n, window, 1.0, 10)
        ref, wall, cpu = timed(lambda w=w: direct_farms(w, window, 10))
        top = ref[-1]
        print(f"{m}x{n} ({grid.n_windows} windows of {grid.rows}x{grid.cols})")
        print(f"  {'torch direct f64':24s} {wall:7.1f} {cpu:7.1f}", flush=True)
        for lib in libs:
            x = w if lib == "torch" else w.float().numpy()
            runs = {"shared64": ("float64", 1), "shared32": ("float32", 1),
                    f"shared32x{workers}": ("float32", workers)}
            for label, (dtype, nw) in runs.items():
                spec, wall, cpu = timed(lambda x=x, d=dtype, nw=nw: farms_spectrum(
                    x, window, 1.0, 10, dtype=d, layout="released", workers=nw))
                lam = np.asarray(spec.lam)
                err = float(np.abs(lam - ref).max() / top)
                print(f"  {lib + ' ' + label:24s} {wall:7.1f} {cpu:7.1f}   "
                      f"max|d lambda|/lambda_max {err:.1e} (bound {spec.error / top:.1e})",
                      flush=True)


def accuracy(scale: float, seeds: list[int], fit: str) -> None:
    h, i = round(2048 * scale), round(5632 * scale)
    window = max(2, round(2000 * scale))
    print(f"\nfloat32 vs float64 FARMS fits ({fit}), released grid, window {window}")
    print(f"{'matrix':22s} {'alpha64':>8s} {'alpha32':>8s} {'|d alpha|':>9s} {'bound':>8s} "
          f"{'tol':>6s} {'keep32':>6s} {'xmin rel':>8s} {'tail64/32':>13s} {'ci64':>17s} "
          f"{'lmax/xmin':>9s}")
    kept = total = 0
    for seed in seeds:
        for name, (m, n) in (("q", (h, h)), ("up", (i, h))):
            mats = {f"pareto{a}": pareto_matrix(a, m, n, seed) for a in (2.5, 3.5, 5.0)}
            gen = torch.Generator().manual_seed(100 + seed)
            mats["gauss"] = torch.randn(m, n, generator=gen) / n**0.5
            for label, w in mats.items():
                w = w.to(torch.bfloat16)
                fits = {}
                for dtype in ("float64", "float32"):
                    spec = farms_spectrum(w, window, 1.0, 10, dtype=dtype, layout="released")
                    lam = spec.lam.numpy()
                    fits[dtype] = (lam, spec, fit_power_law(
                        lam, fit, 10, n_groups=spec.grid.n_windows, ci_resamples=0))
                (l64, _, f64), (l32, s32, f32) = fits["float64"], fits["float32"]
                bound = float32_alpha_bound(l32, f32.xmin, f32.alpha, s32.error)
                share = independent_windows(s32.grid) / s32.grid.n_windows
                tol = float32_alpha_tolerance(f32.alpha, f32.tail_size, share)
                keep = bound <= tol
                kept += keep
                total += 1
                print(f"{label + ' ' + name + f' s{seed}':22s} {f64.alpha:8.4f} {f32.alpha:8.4f} "
                      f"{abs(f32.alpha - f64.alpha):9.1e} {bound:8.1e} {tol:6.3f} "
                      f"{'yes' if keep else 'f64':>6s} {abs(f32.xmin / f64.xmin - 1):8.1e} "
                      f"{f64.tail_size:>6d}/{f32.tail_size:<6d} "
                      f"[{f64.alpha_ci[0]:7.3f},{f64.alpha_ci[1]:7.3f}] "
                      f"{l64[-1] / f64.xmin:9.1f}", flush=True)
    print(f"float32 fit kept on {kept} of {total} matrices (the rest re-solved in float64)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "accuracy", "both"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="shape scale (1: Llama-1.1B)")
    parser.add_argument("--libs", nargs="+", default=["torch", "numpy"],
                        choices=["torch", "numpy"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--fit", default="ks", choices=["ks", "median", "peak"])
    parser.add_argument("--shapes", nargs="+", default=["2048x2048", "5632x2048"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("speed", "both"):
        shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes]
        speed(args.scale, args.libs, args.workers, shapes)  # type: ignore[arg-type]
    if args.part in ("accuracy", "both"):
        accuracy(args.scale, args.seeds, args.fit)


if __name__ == "__main__":
    main()
