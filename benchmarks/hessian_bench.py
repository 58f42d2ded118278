"""Hessian benchmark: HVP cost, Lanczos HVP count / wall time, and accuracy against dense truth.

Run: ``.venv/bin/python benchmarks/hessian_bench.py [--quick] [--device cpu|cuda]``

1. HVP cost on the MLP 784-256-256-10 (269,322 params, 2048 samples): one gradient,
   forward-over-reverse and reverse-over-reverse HVPs (the latter with a fresh graph per product
   and with the kept first-backward graph, the default when it fits), float32 and float64 (median
   of repeats, modes interleaved so that machine load hits them alike).
2. Accuracy on the shrunken MLP (740 params): top-5 by Lanczos against ``torch.func.hessian`` +
   ``eigvalsh`` in float64; float32 and float64 HVPs; default and tight tolerances. Also Hutch++
   against the dense trace.
3. Top-5 on the 270k MLP: HVPs and wall time at the default tolerances; accuracy against a
   float64 Lanczos solve at tol 1e-11 (the dense 269k x 269k Hessian does not fit).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workloads import mlp_270k_workload, shrunken_mlp_workload  # noqa: E402
from spectracli.hessian.hutchpp import hutchpp  # noqa: E402
from spectracli.hessian.lanczos import lanczos  # noqa: E402
from spectracli.hessian.losses import cross_entropy  # noqa: E402
from spectracli.hessian.operators import HessianOperator  # noqa: E402

DT = {"float32": torch.float32, "float64": torch.float64}


def _batches(x, y, bs):
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, x.shape[0], bs)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hvp_cost(device: str, repeats: int, batch_size: int) -> None:
    model, x, y = mlp_270k_workload()
    batches = _batches(x, y, batch_size)
    ops = {}
    for dt in ("float32", "float64"):
        for mode in ("forward-over-reverse", "reverse-over-reverse", "reverse-over-reverse kept"):
            ops[(dt, mode)] = HessianOperator(
                model, batches, cross_entropy, dtype=DT[dt], device=device,
                hvp_mode=mode.split()[0], graph_cache_bytes=2**31 if "kept" in mode else 0,
            )
    v = torch.randn(ops[("float32", "forward-over-reverse")].n, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0)).to(device)
    times: dict[str, list[float]] = {}
    for op in ops.values():  # warm-up
        op.matvec(v)
    for _ in range(repeats):
        for key, op in ops.items():
            _sync(device)
            t = time.perf_counter()
            op.matvec(v)
            _sync(device)
            times.setdefault(f"HVP {key[0]} {key[1]}", []).append(time.perf_counter() - t)
        for dt in ("float32", "float64"):
            op = ops[(dt, "reverse-over-reverse")]
            _sync(device)
            t = time.perf_counter()
            op.loss_and_grad()
            _sync(device)
            times.setdefault(f"gradient {dt}", []).append(time.perf_counter() - t)
    print(f"\n[1] HVP cost, MLP 269,322 params, 2048 samples, batch {batch_size}, {device} "
          f"(median of {repeats})")
    for key, ts in times.items():
        print(f"  {key:45s} {statistics.median(ts):.4f} s")


def _top5_run(op: HessianOperator, tol: float, seed: int = 0):
    op.matvecs = 0
    t = time.perf_counter()
    res = lanczos(op, 5, tol=tol, seed=seed)
    return res, time.perf_counter() - t


def _err(got, ref) -> float:
    got = torch.tensor(got, dtype=torch.float64)
    return float(((got - ref).abs() / ref.abs()).max())


def shrunken_accuracy() -> None:
    model, x, y = shrunken_mlp_workload()
    batches = _batches(x, y, 100)
    op64 = HessianOperator(model, batches, cross_entropy, dtype=torch.float64)
    flat = op64.flat_params()

    def full_loss(f):
        return cross_entropy(torch.func.functional_call(model, op64.unflatten(f),
                                                        (x.double(),)), y)

    t = time.perf_counter()
    dense = torch.func.hessian(full_loss)(flat)
    t_dense = time.perf_counter() - t
    ev = torch.linalg.eigvalsh(dense)
    ref = ev.flip(0)[:5]
    print(f"\n[2] shrunken MLP ({op64.n} params, {x.shape[0]} samples): dense Hessian "
          f"{t_dense:.2f} s; top-5 {[round(float(e), 6) for e in ref]}")
    for dt, tol in (("float64", 1e-6), ("float64", 1e-10), ("float32", 1e-4), ("float32", 1e-6)):
        op = HessianOperator(model, batches, cross_entropy, dtype=DT[dt])
        res, wall = _top5_run(op, tol)
        print(f"  Lanczos top-5 {dt} HVPs tol {tol:.0e}: {res.n_matvecs:3d} HVPs, "
              f"{wall:.3f} s, converged {res.all_converged}, max rel err "
              f"{_err(res.eigenvalues, ref):.1e}")
    true_trace = float(dense.trace())
    for m in (30, 99):
        est = hutchpp(op64, m, seed=0)
        print(f"  Hutch++ {m} HVPs: {est.estimate:.4f} +- {est.stderr:.4f} (exact "
              f"{true_trace:.4f}, error {abs(est.estimate - true_trace) / est.stderr:.2f} "
              "stderr)")


def full_top5(device: str, batch_size: int) -> None:
    model, x, y = mlp_270k_workload()
    batches = _batches(x, y, batch_size)
    op64 = HessianOperator(model, batches, cross_entropy, dtype=torch.float64, device=device)
    t = time.perf_counter()
    truth = lanczos(op64, 5, tol=1e-11, seed=123)
    print(f"\n[3] MLP 269,322 params, 2048 samples, {device}: reference float64 tol 1e-11: "
          f"{truth.n_matvecs} HVPs, {time.perf_counter() - t:.1f} s, top-5 "
          f"{[round(v, 6) for v in truth.eigenvalues]}")
    ref = torch.tensor(truth.eigenvalues, dtype=torch.float64)
    for dt, tol in (("float32", 1e-4), ("float64", 1e-6), ("float64", 1e-4)):
        op = HessianOperator(model, batches, cross_entropy, dtype=DT[dt], device=device)
        res, wall = _top5_run(op, tol)
        print(f"  top-5 {dt} HVPs tol {tol:.0e}: {res.n_matvecs} HVPs, {wall:.2f} s, "
              f"converged {res.all_converged}, max rel err {_err(res.eigenvalues, ref):.1e}, "
              f"max residual {max(res.residuals):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip [3]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--only", choices=("1", "2", "3"), default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 avoids OpenMP spinning on a loaded machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.machine()}, threads {torch.get_num_threads()}, "
          f"device {args.device}")
    if args.only in (None, "1"):
        hvp_cost(args.device, 2 if args.quick else 5, args.batch_size)
    if args.only in (None, "2"):
        shrunken_accuracy()
    if args.only in (None, "3") and not args.quick:
        full_top5(args.device, args.batch_size)


if __name__ == "__main__":
    main()
