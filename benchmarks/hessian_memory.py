"""Peak memory and HVPs of top-1 and top-5 on a 4.8M-parameter MLP: the old fixed 40-vector
Lanczos basis, the basis cap that follows k, n and free memory (``basis_cap``), and a plain
power iteration, each in a fresh process (peak RSS = the process's VmHWM).

    python benchmarks/hessian_memory.py [--samples 512] [--threads 1]

Prints one row per run: HVPs, wall seconds, peak RSS (GB), the eigenvalues and, for the
Lanczos runs, the largest relative difference to the old 40-vector run (the accuracy kept).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIMS = (784, 2048, 1536, 10)


def _child(kind: str, k: int, samples: int, threads: int) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks.workloads import _workload
    from spectracli.hessian import HessianConfig, HessianOperator, analyze

    torch.set_num_threads(threads)
    model, x, y = _workload(DIMS, 0, samples, teacher_hidden=64)
    t0 = time.perf_counter()
    if kind == "power":
        # Power iteration on the same operator (relative change of the Rayleigh quotient < 1e-4).
        op = HessianOperator(model, [(x, y)], "cross_entropy")
        v = torch.randn(op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        lam, n_hvp = 0.0, 0
        while n_hvp < 300:
            hv = op.matvec(v / v.norm())
            n_hvp += 1
            new = float(hv @ (v / v.norm()))
            v = hv
            if abs(new - lam) <= 1e-4 * abs(new):
                lam = new
                break
            lam = new
        out = {"eigenvalues": [lam], "hvps": n_hvp, "max_basis": 1}
    else:
        cfg = HessianConfig(k=k, max_basis=40 if kind == "basis40" else None)
        res = analyze(model, (x, y), "cross_entropy", cfg)
        out = {"eigenvalues": res.eigenvalues, "hvps": res.hvp_count,
               "max_basis": res.settings["max_basis"], "converged": all(res.converged)}
    out["wall_s"] = time.perf_counter() - t0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out["peak_rss_gb"] = int(line.split()[1]) * 1024 / 1e9
    out["n_params"] = sum(p.numel() for p in model.parameters())
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.samples, args.threads)
        return
    print(f"MLP {DIMS}, {args.samples} samples, float32 HVPs, {args.threads} thread(s)")
    print(f"{'run':<26}{'HVPs':>6}{'wall s':>9}{'peak RSS GB':>13}{'basis':>7}  eigenvalues")
    for k in (1, 5):
        ref = None
        for kind in ("basis40", "cap", "power") if k == 1 else ("basis40", "cap"):
            cmd = [sys.executable, __file__, "--child", kind, str(k), "--samples",
                   str(args.samples), "--threads", str(args.threads)]
            got = json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                            check=True).stdout.strip().splitlines()[-1])
            ev = got["eigenvalues"]
            note = ""
            if kind == "basis40":
                ref = ev
            elif kind == "cap" and ref:
                diff = max(abs(a - b) / abs(b) for a, b in zip(ev, ref, strict=True))
                note = f"  (max rel. diff to basis 40: {diff:.1e})"
            label = {"basis40": "Lanczos, 40-vector basis", "cap": "Lanczos, basis_cap",
                     "power": "power iteration"}[kind]
            print(f"{label + f' top-{k}':<26}{got['hvps']:>6}{got['wall_s']:>9.1f}"
                  f"{got['peak_rss_gb']:>13.2f}{got['max_basis']:>7}  "
                  f"{', '.join(f'{v:.6g}' for v in ev)}{note}")


if __name__ == "__main__":
    main()
