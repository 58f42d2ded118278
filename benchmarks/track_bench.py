"""``spectracli track --hessian`` over a short SGD run: warm-started vs cold Lanczos, end to end.

Run: ``python benchmarks/track_bench.py [--steps 10] [--k 5] [--threads 1] [--dtype float64]
[--tol 1e-10]``

Writes ``--steps + 1`` checkpoints (step 0 = the seeded init, then one full-batch SGD step each,
lr 0.05, mean cross-entropy) of the MLP 784-256-256-10 (269,322 params, 2048 samples) of
benchmarks/workloads.py into a temporary run directory, then runs ``spectracli.track.track_run``
on it twice with the top-k Hessian (default float64 HVPs, tol 1e-10): warm-started (each solve
from the previous checkpoint's Ritz vectors) and cold (``warm_start=False``). Printed per step:
the HVPs of each, split into the Krylov run and the multiplicity check (deflated runs from
random vectors), the largest relative difference of the eigenvalues and the smallest overlap of
consecutive top-k eigenspaces; then the totals and times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workloads import mlp_270k_workload  # noqa: E402
from spectracli.analyze import AnalyzeConfig  # noqa: E402
from spectracli.hessian import HessianConfig  # noqa: E402
from spectracli.track import TrackConfig, track_run  # noqa: E402


def write_run(root: Path, steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    model, x, y = mlp_270k_workload()
    for step in range(steps + 1):
        if step:
            model.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= lr * p.grad
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(root / f"step_{step:03d}.safetensors"))
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float64", help="HVP precision: float64 | float32")
    ap.add_argument("--tol", type=float, default=1e-10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); MLP 784-256-256-10 (269,322 "
          f"params), 2048 samples, top-{args.k}, {args.dtype} HVPs, tol {args.tol:g}, "
          f"{args.steps} SGD steps (lr 0.05)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        x, y = write_run(root, args.steps, 0.05)
        reports = {}
        times = {}
        for label, warm in (("warm", True), ("cold", False)):
            config = TrackConfig(
                analyze=AnalyzeConfig(fit="median", farms=False, store_esd=False), cache=False,
                hessian=HessianConfig(k=args.k, dtype=args.dtype, tol=args.tol, batch_size=512),
                model=lambda: mlp_270k_workload()[0], data=(x, y), warm_start=warm,
            )
            t0 = time.perf_counter()
            reports[label] = track_run(root, config).to_dict()
            times[label] = time.perf_counter() - t0
    totals = {"warm": [0, 0], "cold": [0, 0]}

    def split(h: dict) -> tuple[int, int]:
        """(Krylov run, multiplicity check) HVPs; the check starts from random vectors."""
        check = int(h["settings"].get("deflation_hvps") or 0)
        return h["hvp_count"] - check, check

    for sw, sc in zip(reports["warm"]["steps"], reports["cold"]["steps"], strict=True):
        hw, hc = sw["hessian"], sc["hessian"]
        diff = max(abs(a - b) / abs(b) for a, b in zip(hw["eigenvalues"], hc["eigenvalues"],
                                                       strict=True))
        (wr, wc), (cr, cc) = split(hw), split(hc)
        for key, (run, check) in (("warm", (wr, wc)), ("cold", (cr, cc))):
            totals[key][0] += run
            totals[key][1] += check
        overlap = f"{min(hw['overlap']):.4f}" if hw["overlap"] else "   -  "
        print(f"  step {sw['step']:3d}: HVPs warm {wr:3d} + {wc:3d} check, cold {cr:3d} + "
              f"{cc:3d} check | lambda_max {hw['eigenvalues'][0]:.6f} | max rel diff "
              f"{diff:.1e} | min overlap {overlap} | converged "
              f"{all(hw['converged']) and all(hc['converged'])}")
    w, c = totals["warm"], totals["cold"]
    print(f"  total HVPs: warm {sum(w)} ({w[0]} + {w[1]} check), cold {sum(c)} ({c[0]} + "
          f"{c[1]} check): {100 * (1 - sum(w) / sum(c)):.0f}% fewer in all, "
          f"{100 * (1 - w[0] / c[0]):.0f}% fewer in the Krylov runs; time warm "
          f"{times['warm']:.0f} s, cold {times['cold']:.0f} s")


if __name__ == "__main__":
    main()
