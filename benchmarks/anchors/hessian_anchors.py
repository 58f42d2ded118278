"""Top-5 Hessian eigenvalues by PyHessian, hessian-eigenthings and curvlinops + scipy eigsh.

Runs inside the anchors venv (benchmarks/anchors/setup_env.sh), with the same torch as the project,
on the deterministic workloads of benchmarks/workloads.py (bit-identical weights and data). Each
anchor is run with its documented defaults (and PyHessian also at tol 1e-6); every Hessian-vector
product is counted by wrapping the anchor's own product function, and only the eigen computation
is timed (workload construction and imports excluded, as for spectracli).

All anchors see the whole data set as ONE batch of all samples, so every one computes the same
matrix: the Hessian of the mean loss. ``--uneven-batches`` adds hessian-eigenthings on uneven
batches, whose ``full_dataset`` averages per-batch means with equal weights (a different matrix).

Usage: anchors-venv/bin/python hessian_anchors.py --workload mlp_270k|shrunken --out OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.workloads import mlp_270k_workload, shrunken_mlp_workload  # noqa: E402

K = 5


def _workload(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    if name == "mlp_270k":
        return mlp_270k_workload(seed=0, n_samples=2048)
    return shrunken_mlp_workload(seed=0, n_samples=256)


def _top(values: Any, by_magnitude: bool = False) -> list[float]:
    """The K largest of what an anchor returned (algebraic, or by magnitude for power iteration,
    which converges to the eigenvalue of largest |lambda|), in that order."""
    key = abs if by_magnitude else None
    return sorted((float(v) for v in values), key=key, reverse=True)[:K]


def run_pyhessian(workload: str, tol: float) -> dict[str, Any]:
    import importlib

    # pyhessian/__init__ rebinds the name ``pyhessian.hessian`` to the class: take the module.
    ph = importlib.import_module("pyhessian.hessian")
    ph = sys.modules["pyhessian.hessian"]

    model, x, y = _workload(workload)
    count = {"hvp": 0}
    original = ph.hessian_vector_product

    def counted(*args: Any, **kwargs: Any) -> Any:
        count["hvp"] += 1
        return original(*args, **kwargs)

    ph.hessian_vector_product = counted
    torch.manual_seed(0)  # PyHessian draws its start vectors from the global RNG
    t0 = time.perf_counter()
    # One batch of all samples: PyHessian keeps the create_graph gradient and reuses it.
    comp = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    vals, _ = comp.eigenvalues(maxIter=100, tol=tol, top_n=K)
    wall = time.perf_counter() - t0
    ph.hessian_vector_product = original
    return {"tool": "PyHessian 0.1", "method": f"power iteration + deflation, tol {tol:g}",
            "eigenvalues": _top(vals, True), "order": "magnitude",
            "hvp": count["hvp"], "wall_s": wall, "converged": None}


def _eigenthings_operator(model: torch.nn.Module, batches: list[Any]) -> Any:
    from hessian_eigenthings import HessianOperator, supervised_loss

    return HessianOperator(model, batches, supervised_loss(torch.nn.functional.cross_entropy))


def _count_matvec(op: Any) -> dict[str, int]:
    count = {"hvp": 0}
    original = op.matvec

    def counted(v: torch.Tensor) -> torch.Tensor:
        count["hvp"] += 1
        return original(v)

    op.matvec = counted
    return count


def run_eigenthings(workload: str, method: str, uneven: bool = False) -> dict[str, Any]:
    from hessian_eigenthings import deflated_power_iteration, lanczos

    model, x, y = _workload(workload)
    if uneven:
        # e.g. 256 samples as 100 + 100 + 56: the plain mean of batch means over-weights the last.
        batches = list(zip(x.split(100), y.split(100), strict=True))
    else:
        batches = [(x, y)]
    op = _eigenthings_operator(model, batches)
    count = _count_matvec(op)
    t0 = time.perf_counter()
    if method == "lanczos":
        res = lanczos(op, k=K, which="LA", seed=0)
        label = "Lanczos, defaults (max_iter = 2k)"
    elif method == "lanczos_long":
        res = lanczos(op, k=K, which="LA", seed=0, max_iter=min(80, op.size - 1),
                      reorthogonalize=True)
        label = "Lanczos, 80 steps, full reorthogonalisation"
    else:
        res = deflated_power_iteration(op, k=K, seed=0)
        label = "deflated power iteration, defaults"
    wall = time.perf_counter() - t0
    if uneven:
        label += ", uneven batches 100+100+...+rest"
    top = _top(res.eigenvalues.tolist(), method == "power")
    return {"tool": "hessian-eigenthings 1.0.0a5", "method": label,
            "eigenvalues": top, "hvp": count["hvp"], "wall_s": wall,
            "converged": [bool(c) for c in res.converged.tolist()],
            "order": "magnitude" if method == "power" else "algebraic"}


def run_curvlinops(workload: str) -> dict[str, Any]:
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator, eigsh

    model, x, y = _workload(workload)
    params = [p for p in model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    hop = HessianLinearOperator(model, torch.nn.CrossEntropyLoss(), params, [(x, y)],
                                check_deterministic=False)
    sop = hop.to_scipy(dtype=np.float32)
    count = {"hvp": 0}

    def matvec(v: np.ndarray) -> np.ndarray:
        count["hvp"] += 1
        return sop.matvec(v)

    op = LinearOperator(sop.shape, matvec=matvec, dtype=np.float32)
    rng = np.random.default_rng(0)
    vals = eigsh(op, k=K, which="LA", v0=rng.standard_normal(sop.shape[0]).astype(np.float32),
                 return_eigenvectors=False)
    wall = time.perf_counter() - t0
    return {"tool": "curvlinops 3.0.1 + scipy eigsh", "method": "ARPACK eigsh, which=LA, tol 0",
            "eigenvalues": _top(vals), "hvp": count["hvp"], "wall_s": wall, "converged": None,
            "order": "algebraic"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("mlp_270k", "shrunken"), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--uneven-batches", action="store_true")
    parser.add_argument("--only", default="", help="comma list of runs (default: all)")
    args = parser.parse_args()
    # PyHessian calls backward(create_graph=True), which warns on every call.
    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
    runs = {
        "pyhessian_default": lambda: run_pyhessian(args.workload, 1e-3),
        "pyhessian_tol1e-6": lambda: run_pyhessian(args.workload, 1e-6),
        "eigenthings_lanczos": lambda: run_eigenthings(args.workload, "lanczos"),
        "eigenthings_power": lambda: run_eigenthings(args.workload, "power"),
        "curvlinops_eigsh": lambda: run_curvlinops(args.workload),
    }
    if args.uneven_batches:
        runs["eigenthings_uneven"] = lambda: run_eigenthings(args.workload, "lanczos_long",
                                                             uneven=True)
    names = args.only.split(",") if args.only else list(runs)
    unknown = [n for n in names if n not in runs]
    if unknown:
        parser.error(f"unknown anchor run(s) {unknown}; choose from {list(runs)}")
    results = []
    for name in names:
        res = runs[name]()
        res["run"] = name
        print(f"{res['tool']:32s} {res['method'][:48]:48s} hvp={res['hvp']:4d} "
              f"wall={res['wall_s']:.2f}s top={[f'{v:.6g}' for v in res['eigenvalues']]}",
              flush=True)
        results.append(res)
    Path(args.out).write_text(json.dumps({"workload": args.workload, "runs": results,
                                          "torch": torch.__version__,
                                          "threads": torch.get_num_threads()}, indent=1))


if __name__ == "__main__":
    main()
