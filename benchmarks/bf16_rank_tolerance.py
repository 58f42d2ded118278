"""Which rank tolerance fits weights stored in bfloat16 (and float16)?

A stored 16-bit matrix is W_s = W + E, with E the rounding of the float64 matrix W. A singular
value of W_s at or below ||E||_2 cannot be told from zero (Weyl: a rank-r W gives W_s whose
other singular values are all <= ||E||_2), and one above it is a singular value of W moved by at
most ||E||_2. So the right tolerance is the smallest that is always above ||E||_2. Two
candidates (docs/metrics.md):

- ``worst``: u ||W||_F (u = eps / 2): ||E||_2 <= ||E||_F <= u ||W||_F always (the current rule);
- ``stat``: 2 u rms(W) (sqrt m + sqrt n): twice the spectral norm of a random rounding error of
  relative size u (Bai-Yin edge), the "resolution" the power-law fit status already uses;
- ``sigma``: 2 u sigma_max: the rounding errors have independent signs and sizes up to u |W_ij|,
  so ||E||_2 concentrates near (u / sqrt 3) (max row norm + max column norm) (Bandeira & van
  Handel 2016, Ann. Probab. 44(4)), and every row and column norm is at most sigma_max;
- ``rowcol``: u (max row norm + max column norm), that estimate itself with a margin of sqrt 3
  (needs the matrix, not only its singular values).

For each matrix (Gaussian, low rank, power-law spectra with heavy rows and columns like trained
layers, and the shipped sample models' trained weights) this prints ||E||_2 against both
tolerances (``E/stat`` must stay below 1 for ``stat`` to be safe), the true smallest singular
value of W (float64), the stored matrix's smallest, and the numerical rank each tolerance
gives, beside the number of W's singular values above ||E||_2 (those the storage resolves).

    python benchmarks/bf16_rank_tolerance.py [--dtype bfloat16|float16] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def rounded(w: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """``w`` stored in ``dtype`` and read back as float64 (round to nearest even)."""
    return torch.from_numpy(w).to(dtype).to(torch.float64).numpy()


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def power_law(m: int, n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """U diag(sigma) V^T with sigma_i = i^-exponent, then a few rows and columns scaled x8 (the
    heavy rows and columns of trained layers, e.g. outlier features of LLMs)."""
    k = min(m, n)
    sigma = np.arange(1, k + 1, dtype=np.float64) ** -exponent
    w = orthogonal(m, rng)[:, :k] @ np.diag(sigma) @ orthogonal(n, rng)[:, :k].T
    w[rng.choice(m, 4, replace=False)] *= 8.0
    w[:, rng.choice(n, 4, replace=False)] *= 8.0
    return w


def cases(quick: bool, rng: np.random.Generator) -> list[tuple[str, np.ndarray, int]]:
    """(label, float64 W, true rank) for the matrices measured."""
    sizes = [(256, 256), (512, 128)] if quick else [(256, 256), (1024, 1024), (1024, 256)]
    out = []
    for m, n in sizes:
        out.append((f"gaussian {m}x{n}", rng.standard_normal((m, n)) * 0.02, min(m, n)))
        r = min(m, n) // 4
        low = rng.standard_normal((m, r)) @ rng.standard_normal((r, n)) * 0.02 / math.sqrt(r)
        out.append((f"rank {r} {m}x{n}", low, r))
        out.append((f"power-law 0.5 {m}x{n}", power_law(m, n, rng, 0.5), min(m, n)))
        out.append((f"power-law 1.0 {m}x{n}", power_law(m, n, rng, 1.0), min(m, n)))
    try:
        from safetensors.numpy import load_file

        for name in ("digits_mlp", "digits_cnn"):
            for key, w in load_file(str(ROOT / "sample_models" / f"{name}.safetensors")).items():
                if w.ndim == 2 and min(w.shape) >= 10:
                    out.append((f"{name} {key} {w.shape[0]}x{w.shape[1]}",
                                w.astype(np.float64), min(w.shape)))
    except (ImportError, OSError) as exc:  # the samples are optional here
        print(f"(sample models not read: {exc})", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--quick", action="store_true", help="smaller matrices")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    u = torch.finfo(dtype).eps / 2
    rng = np.random.default_rng(args.seed)
    header = (f"{'matrix':<34} {'||E||2':>9} {'E/worst':>8} {'E/stat':>7} {'E/sigma':>7} "
              f"{'smin W':>9} {'smin Ws':>9} {'rank':>5} {'resolved':>8} {'r worst':>7} "
              f"{'r stat':>6} {'r sigma':>7} {'E/rowcol':>8} {'r rowcol':>8}")
    print(f"storage {args.dtype}, u = {u:.3g}; tolerances: worst = u ||W||_F, "
          "stat = 2 u rms(W) (sqrt m + sqrt n), sigma = 2 u sigma_max, rowcol = u (max row + "
          "max column norm)")
    print(header)
    worst_ratio = sigma_ratio = rowcol_ratio = 0.0
    for label, w, true_rank in cases(args.quick, rng):
        ws = rounded(w, dtype)
        m, n = w.shape
        e_norm = float(np.linalg.norm(ws - w, 2))
        s_true = np.linalg.svd(w, compute_uv=False)
        s_stored = np.linalg.svd(ws, compute_uv=False)
        fro = float(np.linalg.norm(ws))
        worst = u * fro
        stat = 2 * u * fro / math.sqrt(m * n) * (math.sqrt(m) + math.sqrt(n))
        sigma = 2 * u * float(s_stored[0])
        rowcol = u * float(np.linalg.norm(ws, axis=1).max() + np.linalg.norm(ws, axis=0).max())
        rowcol_ratio = max(rowcol_ratio, e_norm / rowcol)
        worst_ratio = max(worst_ratio, e_norm / stat)
        sigma_ratio = max(sigma_ratio, e_norm / sigma)
        print(f"{label:<34} {e_norm:9.3g} {e_norm / worst:8.3f} {e_norm / stat:7.3f} "
              f"{e_norm / sigma:7.3f} {s_true[true_rank - 1]:9.3g} {s_stored[-1]:9.3g} "
              f"{true_rank:5d} {int((s_true > e_norm).sum()):8d} "
              f"{int((s_stored > worst).sum()):7d} {int((s_stored > stat).sum()):6d} "
              f"{int((s_stored > sigma).sum()):7d} {e_norm / rowcol:8.3f} "
              f"{int((s_stored > rowcol).sum()):8d}")
    print(f"largest ||E||_2 / stat: {worst_ratio:.3f}, / sigma: {sigma_ratio:.3f}, "
          f"/ rowcol: {rowcol_ratio:.3f} "
          "(a tolerance is safe while this stays below 1)")


if __name__ == "__main__":
    main()
