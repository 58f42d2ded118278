"""Is the FARMS alpha_ci honest? Its coverage across matrices drawn from one law.

FARMS pools the eigenvalues of overlapping windows; the released grid's 100 windows on a matrix
barely larger than the window share most of their entries, so the pooled tail repeats the same
information ~100 times. For each shape and Pareto exponent this draws ``--seeds`` matrices
W = U diag(sqrt(lambda)) V^T (lambda Pareto with density ~ x^-a, tests/dense_truths), fits the
released-grid FARMS ESD of each, and prints the spread of FARMS alpha across the draws (its real
sampling uncertainty) and how often each interval holds the mean FARMS alpha of all draws:

- ``pooled``: the analytic interval counting every pooled eigenvalue as independent (what
  spectracli reported before independent_windows);
- ``analytic``: the same, the tail counted at its independent share
  (``spectracli.spectral.farms.independent_windows`` / windows);
- ``bootstrap``: the percentile bootstrap (xmin chosen again per resample), its distances from
  alpha widened by 1 / sqrt(share): what ``spectracli analyze`` reports now.

A 95 % interval should hold the mean about 95 % of the time.

    python benchmarks/farms_ci_coverage.py                  # 256 x 256 and 704 x 256, window 250
    python benchmarks/farms_ci_coverage.py --seeds 50 --window 500 --shapes 512x512 1408x512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from spectracli.spectral.farms import farms_esd, independent_windows  # noqa: E402
from spectracli.spectral.powerlaw import fit_power_law  # noqa: E402
from tests.dense_truths import pareto_matrix  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--window", type=int, default=250)
    parser.add_argument("--shapes", nargs="+", default=["256x256", "704x256"])
    parser.add_argument("--alphas", type=float, nargs="+", default=[2.5, 3.5])
    args = parser.parse_args()
    print(f"released grid, window {args.window}, {args.seeds} matrices per row, 95 % intervals")
    print(f"{'matrix':16s} {'std':>6s}   coverage (median half-width): "
          f"{'pooled':>14s} {'analytic':>14s} {'bootstrap':>14s}")
    for shape in args.shapes:
        m, n = (int(x) for x in shape.split("x"))
        for a in args.alphas:
            rows = []
            for seed in range(args.seeds):
                w = pareto_matrix(a, m, n, seed=1000 + seed)
                lam, grid = farms_esd(w, window=args.window, layout="released")
                lam = np.asarray(lam)
                share = independent_windows(grid) / grid.n_windows
                fit = dict(method="ks", n_groups=grid.n_windows)
                boot = fit_power_law(lam, **fit, independent=share)
                honest = fit_power_law(lam, **fit, independent=share, ci_resamples=0)
                pooled = fit_power_law(lam, **fit, ci_resamples=0)
                rows.append((boot.alpha, pooled.alpha_ci, honest.alpha_ci, boot.alpha_ci))
            alphas = np.array([r[0] for r in rows])
            mean = alphas.mean()
            cells = []
            for k in (1, 2, 3):
                cover = np.mean([r[k][0] <= mean <= r[k][1] for r in rows])
                half = np.median([(r[k][1] - r[k][0]) / 2 for r in rows])
                cells.append(f"{cover:5.2f} ({half:6.3f})")
            print(f"{shape + f' a{a}':16s} {alphas.std(ddof=1):6.3f}   "
                  f"{cells[0]:>14s} {cells[1]:>14s} {cells[2]:>14s}", flush=True)


if __name__ == "__main__":
    main()
