"""Warm-started Lanczos across SGD steps, and the cost of the multiplicity check.

Run: ``python benchmarks/hessian_warm_start.py [--small] [--steps N] [--threads T]``

For each of ``--steps`` full-batch SGD steps (lr 0.05, mean cross-entropy) the top-k Hessian
eigenvalues (float64 HVPs) are computed twice: cold (seeded random start) and warm (started from
the previous step's Ritz vectors, ``v0=previous.eigenvectors``). Printed per step: HVPs of the
Krylov run and of the multiplicity check (deflated restarts, ``settings.deflation_hvps``) for
both, and the largest relative difference between the warm and cold eigenvalues.

Default workload: the MLP 784-256-256-10 (269,322 params, 2048 samples) of benchmarks/workloads.py,
top-5, tol 1e-10. ``--small``: the 147-parameter MLP of tests/hessian/test_lanczos_warm.py,
top-4, three seeds, one step each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workloads import mlp_270k_workload  # noqa: E402
from spectracli.hessian import eigenpairs  # noqa: E402


def _sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def _solve(model, x, y, k, tol, batch_size, v0=None):
    t = time.perf_counter()
    res = eigenpairs(model, (x, y), "cross_entropy", k=k, dtype="float64", tol=tol,
                     batch_size=batch_size, return_vectors=True, v0=v0)
    return res, time.perf_counter() - t


def _row(label: str, cold, warm, t_cold: float, t_warm: float) -> tuple[int, int]:
    d_c, d_w = cold.settings["deflation_hvps"], warm.settings["deflation_hvps"]
    diff = max(abs(a - b) / abs(b) for a, b in zip(warm.eigenvalues, cold.eigenvalues,
                                                   strict=True))
    print(f"  {label:10s} cold {cold.hvp_count - d_c:3d} + {d_c:3d} check = {cold.hvp_count:3d} "
          f"({t_cold:5.1f} s) | warm {warm.hvp_count - d_w:3d} + {d_w:3d} check = "
          f"{warm.hvp_count:3d} ({t_warm:5.1f} s) | max rel diff {diff:.1e} | converged "
          f"{all(cold.converged) and all(warm.converged)}")
    return cold.hvp_count, warm.hvp_count


def small() -> None:
    print("MLP 5-16-3 (147 params), 80 samples, top-4, float64 HVPs, tol 1e-10, one SGD step")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(80, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (80,), generator=gen)
    for seed in range(3):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()
        prev, _ = _solve(model, x, y, 4, 1e-10, 512)
        _sgd_step(model, x, y, 0.05)
        cold, t_c = _solve(model, x, y, 4, 1e-10, 512)
        warm, t_w = _solve(model, x, y, 4, 1e-10, 512, v0=prev.eigenvectors)
        _row(f"seed {seed}", cold, warm, t_c, t_w)


def mlp_270k(steps: int, k: int) -> None:
    model, x, y = mlp_270k_workload()
    model = model.double()
    x = x.double()
    print(f"MLP 784-256-256-10 (269,322 params), 2048 samples, top-{k}, float64 HVPs, "
          f"tol 1e-10, {steps} SGD steps (lr 0.05)")
    prev, _ = _solve(model, x, y, k, 1e-10, 512)
    totals = [0, 0]
    for step in range(1, steps + 1):
        _sgd_step(model, x, y, 0.05)
        cold, t_c = _solve(model, x, y, k, 1e-10, 512)
        warm, t_w = _solve(model, x, y, k, 1e-10, 512, v0=prev.eigenvectors)
        c, w = _row(f"step {step}", cold, warm, t_c, t_w)
        totals[0] += c
        totals[1] += w
        prev = warm
    print(f"  total HVPs: cold {totals[0]}, warm {totals[1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="the 147-parameter MLP only")
    ap.add_argument("--steps", type=int, default=3, help="SGD steps on the 269k MLP")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    if args.small:
        small()
    else:
        mlp_270k(args.steps, args.k)


if __name__ == "__main__":
    main()
