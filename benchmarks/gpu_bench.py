"""Per-shape solve times and HVP throughput on a device (CUDA when present, else the CPU).

Two parts, each timed after a warm-up with the device synchronised:

1. Weight spectra: for the matrix shapes of a Llama-1.1B layer (hidden 2048, intermediate 5632,
   256-wide k/v, 32000-row embedding), the plain ESD (``squared_singular_values``: Gram +
   eigvalsh, float64 and float32) and the FARMS windows (``farms_spectrum``: Gram matrices from
   shared strips, eigvalsh batched on CUDA) of the bounded grid in float64 and of the released
   grid in float64 and float32 windows (the working precision ``auto`` picks on CUDA, with the
   bound it measured, relative to lambda_max), in seconds per matrix.
2. Hessian: Hessian-vector products of ``spectracli.hessian.operators.HessianOperator`` on an MLP
   (``--hidden`` wide, ``--samples`` inputs) against one plain backward pass of the same loss:
   products per second and the ratio (an HVP costs a few backward passes).

    python benchmarks/gpu_bench.py                    # auto: cuda if available
    python benchmarks/gpu_bench.py --device cpu --scale 0.25 --repeats 1
"""

from __future__ import annotations

import argparse
import time

import torch

from spectracli.device import resolve_device
from spectracli.spectral import squared_singular_values
from spectracli.spectral.farms import farms_spectrum


def timed(fn, device: torch.device, repeats: int) -> float:  # noqa: ANN001
    """Best wall time of ``repeats`` calls after one warm-up, device synchronised."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def spectra(device: torch.device, scale: float, repeats: int) -> None:
    h, i, kv, vocab = (max(16, round(d * scale)) for d in (2048, 5632, 256, 32000))
    window = max(2, round(2000 * scale))
    shapes = {"q/o": (h, h), "k/v": (kv, h), "gate/up": (i, h), "down": (h, i),
              "embedding": (vocab, h)}
    print(f"device {device}, scale {scale}, FARMS window {window}")
    print(f"{'shape':>10s} {'rows x cols':>12s} {'esd f64':>9s} {'esd f32':>9s} "
          f"{'bounded f64':>12s} {'released f64':>13s} {'released f32':>13s} {'f32 bound':>10s}")
    g = torch.Generator().manual_seed(0)
    for label, (m, n) in shapes.items():
        w = (torch.randn(m, n, generator=g) / n**0.5).to(device=device, dtype=torch.bfloat16)
        t64 = timed(lambda w=w: squared_singular_values(w, dtype="float64"), device, repeats)
        t32 = timed(lambda w=w: squared_singular_values(w, dtype="float32"), device, repeats)

        def farms(w: torch.Tensor = w, layout: str = "released", dtype: str = "float64"):  # noqa: ANN202
            return farms_spectrum(w, window, layout=layout, dtype=dtype)

        tb = timed(lambda f=farms: f(layout="bounded"), device, repeats)
        tr64 = timed(lambda f=farms: f(), device, repeats)
        tr32 = timed(lambda f=farms: f(dtype="float32"), device, repeats)
        spec = farms(dtype="float32")
        rel = spec.error / float(spec.lam[-1])
        print(f"{label:>10s} {f'{m}x{n}':>12s} {t64:8.3f}s {t32:8.3f}s {tb:11.3f}s "
              f"{tr64:12.3f}s {tr32:12.3f}s {rel:10.1e}")


def hvps(device: torch.device, hidden: int, samples: int, repeats: int) -> None:
    from torch import nn

    from spectracli.hessian.operators import HessianOperator

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                          nn.Tanh(), nn.Linear(hidden, 10)).to(device)
    x = torch.randn(samples, 784, device=device)
    y = torch.randint(0, 10, (samples,), device=device)
    op = HessianOperator(model, [(x, y)], "cross_entropy", dtype=torch.float32, device=device)
    v = torch.randn(op.n, device=device, dtype=op.dtype)

    def backward() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    t_hvp = timed(lambda: op.matvec(v), device, repeats)
    t_bwd = timed(backward, device, repeats)
    print(f"\nMLP 784-{hidden}-{hidden}-10 ({op.n} parameters), {samples} samples, float32:")
    print(f"  HVP {t_hvp * 1e3:.1f} ms ({1 / t_hvp:.1f}/s), forward+backward {t_bwd * 1e3:.1f} ms,"
          f" HVP / backward {t_hvp / t_bwd:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scale", type=float, default=1.0, help="shape scale (1: Llama-1.1B)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--no-hvp", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: stable under load, see docs/benchmarks.md)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    spectra(device, args.scale, args.repeats)
    if not args.no_hvp:
        hvps(device, args.hidden, args.samples, args.repeats)


if __name__ == "__main__":
    main()
