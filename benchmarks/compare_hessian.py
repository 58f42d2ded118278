"""spectracli hessian vs PyHessian, hessian-eigenthings and curvlinops + scipy eigsh.

Same model, same data, same loss for everyone: the workloads of benchmarks/workloads.py (MLP
784-256-256-10, 269,322 parameters, 2048 teacher-labelled samples, seed 0; and its shrunken
740-parameter copy with 256 samples), the Hessian of the mean cross-entropy over ALL samples.

Truths, computed here independently of every tool compared:

- shrunken copy: the dense float64 Hessian (``torch.func.hessian``) and ``numpy.linalg.eigvalsh``;
- full MLP: scipy ``eigsh`` (ARPACK, tol 1e-12) on float64 forward-over-reverse HVPs written
  here in ten lines, cached under bench_out/compare_hessian/.

For each tool: top-5 eigenvalues, HVP count, wall time of the eigen computation (imports and
workload construction excluded, operator construction included), and the largest relative error
against the truth in the tool's own order (power iteration finds the largest |lambda|, so those
anchors are compared with the top-5 by magnitude). The anchors run in their own venv
(benchmarks/anchors/setup_env.sh) through benchmarks/anchors/hessian_anchors.py; spectracli runs
here. spectracli and curvlinops + eigsh (the target's yardstick) are then re-run ``--reps``
times, alternating, each in a fresh process (both pay their first-call warm-up), for the
wall-time ratio. Threads: torch's default for everyone; nothing is pinned.

Usage::

    bash benchmarks/anchors/setup_env.sh
    .venv/bin/python benchmarks/compare_hessian.py --reps 3

Writes bench_out/compare_hessian/summary.json and tables.md and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.workloads import (  # noqa: E402
    mlp_270k_workload,
    n_params,
    shrunken_mlp_workload,
)

OUT = ROOT / "bench_out" / "compare_hessian"
ANCHORS_PY = ROOT / "bench_out" / "anchors-venv" / "bin" / "python"
K = 5
WORKLOADS = {
    "shrunken": lambda: shrunken_mlp_workload(seed=0, n_samples=256),
    "mlp_270k": lambda: mlp_270k_workload(seed=0, n_samples=2048),
}


# --------------------------------------------------------------------------- truths


def _float64_problem(workload: str) -> tuple[Any, dict[str, torch.Tensor], torch.Tensor,
                                               torch.Tensor]:
    from torch.func import functional_call

    model, x, y = WORKLOADS[workload]()
    model = model.double()
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x.double(),)), y)

    return loss, params, x, y


def dense_truth(workload: str) -> dict[str, list[float]]:
    """All eigenvalues of the dense float64 Hessian (only for the shrunken copy)."""
    from torch.func import hessian

    loss, params, _, _ = _float64_problem(workload)
    names = list(params)
    flat = torch.cat([params[k].reshape(-1) for k in names])
    sizes = [params[k].numel() for k in names]

    def loss_flat(v: torch.Tensor) -> torch.Tensor:
        parts = torch.split(v, sizes)
        return loss({k: t.reshape(params[k].shape) for k, t in zip(names, parts, strict=True)})

    h = hessian(loss_flat)(flat).numpy()
    lam = np.linalg.eigvalsh((h + h.T) / 2)
    return _orders(lam)


def _orders(lam: np.ndarray) -> dict[str, list[float]]:
    lam = np.asarray(lam, dtype=np.float64)
    return {"algebraic": sorted(lam.tolist(), reverse=True)[:K],
            "magnitude": sorted(lam.tolist(), key=abs, reverse=True)[:K]}


def iterative_truth(workload: str) -> dict[str, Any]:
    """Top-5 (algebraic and by magnitude) by ARPACK on float64 HVPs, tol 1e-12."""
    from scipy.sparse.linalg import LinearOperator, eigsh
    from torch.func import grad, jvp

    loss, params, _, _ = _float64_problem(workload)
    names = list(params)
    sizes = [params[k].numel() for k in names]
    n = sum(sizes)
    g = grad(loss)
    count = {"hvp": 0}

    def hvp(v: np.ndarray) -> np.ndarray:
        count["hvp"] += 1
        parts = torch.split(torch.from_numpy(np.ascontiguousarray(v).reshape(-1)), sizes)
        tangent = {k: t.reshape(params[k].shape) for k, t in zip(names, parts, strict=True)}
        out = jvp(g, (params,), (tangent,))[1]
        return torch.cat([out[k].reshape(-1) for k in names]).numpy()

    op = LinearOperator((n, n), matvec=hvp, dtype=np.float64)
    v0 = np.random.default_rng(1).standard_normal(n)
    t0 = time.perf_counter()
    la = eigsh(op, k=K, which="LA", tol=1e-12, v0=v0, return_eigenvectors=False)
    lm = eigsh(op, k=K, which="LM", tol=1e-12, v0=v0, return_eigenvectors=False)
    sa = eigsh(op, k=1, which="SA", tol=1e-10, v0=v0, return_eigenvectors=False)
    return {"algebraic": sorted(la.tolist(), reverse=True),
            "magnitude": sorted(lm.tolist(), key=abs, reverse=True),
            "lambda_min": float(sa[0]), "hvp": count["hvp"], "wall_s": time.perf_counter() - t0,
            "method": "scipy eigsh (ARPACK) on float64 forward-over-reverse HVPs, tol 1e-12"}


def truth(workload: str) -> dict[str, Any]:
    path = OUT / f"truth_{workload}.json"
    if path.exists():
        return json.loads(path.read_text())
    if workload == "shrunken":
        res: dict[str, Any] = dense_truth(workload)
        res["method"] = "dense float64 torch.func.hessian + eigvalsh"
    else:
        res = iterative_truth(workload)
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    return res


def rel_error(values: list[float], ref: list[float]) -> float:
    return max(abs(a - b) / abs(b) for a, b in zip(values, ref, strict=True))


# --------------------------------------------------------------------------- runs


def run_spectracli(workload: str, dtype: str, tol: float | None = None) -> dict[str, Any]:
    from spectracli.hessian import HessianConfig, analyze

    model, x, y = WORKLOADS[workload]()
    config = HessianConfig(k=K, dtype=dtype, tol=tol)
    t0 = time.perf_counter()
    res = analyze(model, (x, y), "cross_entropy", config)
    wall = time.perf_counter() - t0
    return {"tool": "spectracli", "run": f"spectracli_{dtype}",
            "method": f"Lanczos, full reorth., {dtype} HVPs, tol {config.resolved_tol():g}",
            "eigenvalues": sorted(res.eigenvalues, reverse=True)[:K], "order": "algebraic",
            "hvp": res.hvp_counts.get("lanczos", res.hvp_count), "hvp_total": res.hvp_count,
            "wall_s": wall, "converged": list(res.converged), "timing": res.timing,
            "n_batches": res.settings.get("n_batches")}


def convergence(workload: str = "mlp_270k", steps: range = range(14, 34, 2)) -> str:
    """Error against the truth after exactly N Lanczos products (tol unreachable, so N is the
    budget), for float32 and float64 HVPs: how many products 1e-6 relative really needs here.
    Products are memoised on the input vector (the Krylov sequence is the same for every N)."""
    import hashlib

    from spectracli.hessian import HessianConfig, lanczos
    from spectracli.hessian.api import build_operator
    from spectracli.hessian.linop import as_operator

    ref = truth(workload)["algebraic"]
    model, x, y = WORKLOADS[workload]()
    lines = ["| Lanczos products | max rel. error, float32 HVPs | max rel. error, float64 HVPs | "
             "max rel. residual |", "|---|---|---|---|"]
    rows: dict[int, list[str]] = {n: [] for n in steps}
    for dtype in ("float32", "float64"):
        op, _ = build_operator(model, (x, y), "cross_entropy", HessianConfig(k=K, dtype=dtype))
        cache: dict[str, torch.Tensor] = {}

        def matvec(v: torch.Tensor, op: Any = op, cache: dict = cache) -> torch.Tensor:
            key = hashlib.sha1(v.cpu().numpy().tobytes()).hexdigest()
            if key not in cache:
                cache[key] = op.matvec(v)
            return cache[key].clone()  # lanczos works in place on what it gets

        for n in steps:
            r = lanczos(as_operator(matvec, op.n, dtype=op.dtype), K, tol=1e-15,
                        max_matvecs=n, seed=0)
            rows[n].append(f"{rel_error(r.eigenvalues, ref):.1e}")
            if dtype == "float64":
                rows[n].append(f"{max(r.residuals):.1e}")
    for n in steps:
        lines.append(f"| {n} | " + " | ".join(rows[n]) + " |")
    return "\n".join(lines)


def run_anchors(workload: str, only: str = "", uneven: bool = False) -> list[dict[str, Any]]:
    out = OUT / f"anchors_{workload}.json"
    cmd = [str(ANCHORS_PY), str(ROOT / "benchmarks/anchors/hessian_anchors.py"),
           "--workload", workload, "--out", str(out)]
    if only:
        cmd += ["--only", only]
    if uneven:
        cmd.append("--uneven-batches")
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(out.read_text())["runs"]


def table(workload: str, runs: list[dict[str, Any]], ref: dict[str, Any]) -> str:
    lines = [f"Truth ({ref['method']}): top-5 "
             + ", ".join(f"{v:.8g}" for v in ref["algebraic"])
             + ("; by magnitude " + ", ".join(f"{v:.8g}" for v in ref["magnitude"])
                if ref["magnitude"] != ref["algebraic"] else ""),
             "",
             "| tool | method | HVPs | wall s | max rel. error | top-5 |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        err = rel_error(r["eigenvalues"], ref[r.get("order", "algebraic")])
        r["rel_error"] = err
        lines.append(f"| {r['tool']} | {r['method']} | {r['hvp']} | {r['wall_s']:.2f} | "
                     f"{err:.1e} | {', '.join(f'{v:.6g}' for v in r['eigenvalues'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3,
                        help="alternating re-runs of spectracli and curvlinops+eigsh (full MLP)")
    parser.add_argument("--convergence", action="store_true",
                        help="only print error vs number of Lanczos products (full MLP)")
    parser.add_argument("--skip-anchors", action="store_true",
                        help="reuse the anchors' last results under bench_out/compare_hessian")
    args = parser.parse_args()
    if args.convergence:
        print(convergence())
        return
    if not ANCHORS_PY.exists() and not args.skip_anchors:
        sys.exit("anchors venv missing: run `bash benchmarks/anchors/setup_env.sh` first")
    OUT.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    texts = []
    for workload in ("shrunken", "mlp_270k"):
        model, _, _ = WORKLOADS[workload]()
        ref = truth(workload)
        print(f"[{workload}] truth: {ref['algebraic']}", flush=True)
        if args.skip_anchors:
            anchors = json.loads((OUT / f"anchors_{workload}.json").read_text())["runs"]
        else:
            anchors = run_anchors(workload, uneven=workload == "shrunken")
        ours = [run_spectracli(workload, "float32"), run_spectracli(workload, "float64")]
        for r in ours:
            print(f"[{workload}] {r['method']}: hvp {r['hvp']} wall {r['wall_s']:.2f} s "
                  f"{r['eigenvalues']}", flush=True)
        runs = ours + anchors
        text = (f"### {workload} ({n_params(model)} parameters)\n\n" + table(workload, runs, ref))
        texts.append(text)
        summary[workload] = {"truth": ref, "runs": runs}

    # Alternating re-runs for the wall-time target (full MLP): ours (both dtypes) vs curvlinops.
    walls: dict[str, list[float]] = {"spectracli_float32": [], "spectracli_float64": [],
                                     "curvlinops_eigsh": []}
    for rep in range(args.reps):
        order = ["spectracli_float32", "curvlinops_eigsh", "spectracli_float64"]
        if rep % 2:
            order.reverse()
        for job in order:
            if job == "curvlinops_eigsh":
                if args.skip_anchors:
                    continue
                r = run_anchors("mlp_270k", only="curvlinops_eigsh")[0]
            else:
                # A fresh process, like the anchor's: both pay their first-call warm-up.
                one = OUT / "one.json"
                subprocess.run([sys.executable, __file__, "--one", job.split("_")[1],
                                str(one)], check=True, cwd=ROOT)
                r = json.loads(one.read_text())
            walls[job].append(r["wall_s"])
            print(f"rep {rep} {job:20s} wall {r['wall_s']:.2f} s hvp {r['hvp']}", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items() if v}
    ratios = {}
    if "curvlinops_eigsh" in med:
        for dt in ("float32", "float64"):
            ratios[f"spectracli_{dt}_over_curvlinops_wall"] = (
                med[f"spectracli_{dt}"] / med["curvlinops_eigsh"])
    summary["alternating"] = {"walls": walls, "median": med, "ratios": ratios}
    lines = ["| run (full MLP, alternating) | median wall s | all runs s |", "|---|---|---|"]
    for k, v in walls.items():
        if v:
            lines.append(f"| {k} | {med[k]:.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
    lines.append("")
    for k, v in ratios.items():
        lines.append(f"- {k}: {v:.2f} (target <= 0.5)")
    texts.append("\n".join(lines))
    text = "\n\n".join(texts)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    (OUT / "tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        Path(sys.argv[3]).write_text(json.dumps(run_spectracli("mlp_270k", sys.argv[2])))
    else:
        main()
