"""Coverage of alpha_ci on matrices with a known power-law ESD, per xmin rule and size.

W = U diag(sqrt(lambda)) V^T with U, V random orthogonal and lambda drawn from a Pareto law of
density ~ x^-alpha on [1, inf), for alpha 2.5, 3.5 and 5: the ESD of W is lambda. For each
(size, rule, alpha) it fits ``--seeds`` matrices and prints how often the interval at
``--level`` covers the true alpha, the median width and the share of fits with status ok.
Run (the fast version is tests/spectral/test_alpha_ci.py):

    python benchmarks/alpha_ci_coverage.py [--seeds 100] [--sizes 200 1000] [--level 0.95]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from spectracli.spectral import fit_power_law, squared_singular_values

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.dense_truths import pareto_matrix  # noqa: E402  (one Pareto-spectrum generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--rules", nargs="+", default=["ks", "median", "peak"])
    parser.add_argument("--level", type=float, default=0.95)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'size':>5s} {'rule':>6s} {'alpha':>5s} {'covered':>8s} {'width':>7s} {'ok':>5s}")
    for n in args.sizes:
        spectra = {(a, s): squared_singular_values(pareto_matrix(a, n, n, s)).numpy()
                   for a in (2.5, 3.5, 5.0) for s in range(args.seeds)}
        for rule in args.rules:
            for alpha in (2.5, 3.5, 5.0):
                covered = ok = 0
                widths = []
                for seed in range(args.seeds):
                    fit = fit_power_law(spectra[alpha, seed], rule, ci_level=args.level,
                                        seed=seed)
                    ok += fit.fit_status == "ok"
                    if fit.alpha_ci is None:
                        continue
                    low, high = fit.alpha_ci
                    covered += low <= alpha <= high
                    widths.append(high - low)
                print(f"{n:5d} {rule:>6s} {alpha:5.1f} {covered / args.seeds:8.1%} "
                      f"{statistics.median(widths):7.3f} {ok / args.seeds:5.0%}")


if __name__ == "__main__":
    main()
