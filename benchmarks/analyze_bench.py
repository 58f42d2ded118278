"""Whole-process cost of ``spectracli analyze`` against the bare eigen-solve floor.

Builds a transformer-shaped safetensors checkpoint (6 blocks of a 384-wide encoder: q, k, v, o,
two FFN matrices, plus a 30522 x 384 embedding: 38 matrices, like all-MiniLM-L6-v2), then times
in fresh processes, alternating, ``--repeats`` times each:

- floor: ``import torch`` + load every matrix + float64 ``eigvalsh`` of its Gram matrix, nothing
  else (the least any tool must do to get the spectra), with torch's default threads and OpenMP
  wait policy, its fastest setting here (OMP_WAIT_POLICY=PASSIVE slows its 2-thread solves);
- spectracli analyze --no-farms, and spectracli analyze (full + FARMS fits), JSON to a file.

Prints median wall time and peak RSS of each and the ratios. ``--methods`` also times, in this
process, the candidate ways to get the spectra of the same 38 matrices (float64 ``svdvals`` vs
``eigvalsh`` of the Gram matrix, 1 vs 2 threads): the measurement behind the default.
``--bootstrap`` prints instead the cost of the alpha_ci bootstrap (CPU share in process, and the
whole process with ``--ci-resamples 0`` vs the default). Run:

    python benchmarks/analyze_bench.py [--repeats 3] [--threads N] [--methods | --bootstrap]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "bench_out" / "analyze_bench"

FLOOR = textwrap.dedent(
    """
    import sys, time
    t0 = time.perf_counter()
    import torch
    from safetensors import safe_open
    if len(sys.argv) > 2:
        torch.set_num_threads(int(sys.argv[2]))
    with safe_open(sys.argv[1], framework="pt") as f:
        for name in f.keys():
            w = f.get_tensor(name).double()
            g = w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T
            torch.linalg.eigvalsh(g)
    print(time.perf_counter() - t0)
    """
)

# Runs a command and prints its own children's peak RSS (KiB) after it: one child per wrapper.
MEASURE = textwrap.dedent(
    """
    import resource, subprocess, sys, time
    t0 = time.perf_counter()
    subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """
)


def build_checkpoint(path: Path) -> dict[str, tuple[int, ...]]:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    d, ff = 384, 1536
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (30522, d),
        "embeddings.position_embeddings.weight": (512, d),
    }
    for i in range(6):
        p = f"encoder.layer.{i}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense"):
            shapes[p + m + ".weight"] = (d, d)
        shapes[p + "intermediate.dense.weight"] = (ff, d)
        shapes[p + "output.dense.weight"] = (d, ff)
    tensors = {k: torch.randn(*s, generator=g) / s[-1] ** 0.5 for k, s in shapes.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return shapes


def time_methods(ckpt: Path, repeats: int) -> None:
    """In-process: svdvals vs Gram eigvalsh on every matrix, with 1 and 2 threads."""
    import time

    import torch
    from safetensors.torch import load_file

    from spectracli.spectral.esd import gram

    mats = [t.double() for t in load_file(str(ckpt)).values()]
    ways = {
        "svdvals": lambda w: torch.linalg.svdvals(w),
        "gram + eigvalsh": lambda w: torch.linalg.eigvalsh(gram(w)),
    }
    print(f"{'method':18s} {'threads':>7s} {f'seconds (min of {repeats})':>22s}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, fn in ways.items():
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                for w in mats:
                    fn(w)
                best = min(best, time.perf_counter() - t0)
            print(f"{name:18s} {threads:7d} {best:22.3f}")


def measure(cmd: list[str]) -> tuple[float, float]:
    res = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True,
                         check=True)
    wall, rss = res.stdout.split()
    return float(wall), int(rss) / 1024.0


def bootstrap_cost(ckpt: Path, repeats: int) -> None:
    """CPU seconds of the alpha_ci bootstrap against the rest of analyze, in this process.

    CPU time (not wall) so that other jobs on a shared machine do not blur the share; one layer
    worker, so every fit is counted once. Also the whole process with and without the bootstrap.
    """
    import time

    import spectracli.spectral.powerlaw as powerlaw
    from spectracli.analyze import AnalyzeConfig, analyze_checkpoint

    spent = [0.0, 0]
    original = powerlaw.bootstrap_interval

    def timed(*a, **k):
        t0 = time.process_time()
        try:
            return original(*a, **k)
        finally:
            spent[0] += time.process_time() - t0
            spent[1] += 1

    powerlaw.bootstrap_interval = timed
    analyze_checkpoint(ckpt, AnalyzeConfig(threads=1, ci_resamples=0))  # warm up
    shares, totals, fits = [], [], 0
    for _ in range(repeats):
        spent[:] = [0.0, 0]
        t0 = time.process_time()
        analyze_checkpoint(ckpt, AnalyzeConfig(threads=1, store_esd=False))
        total = time.process_time() - t0
        totals.append(total)
        shares.append(spent[0] / (total - spent[0]))
        fits = spent[1]
    powerlaw.bootstrap_interval = original
    share = statistics.median(shares)
    print(f"bootstrap (200 resamples, {fits} fits): {share * statistics.median(totals):.2f} CPU s "
          f"= {share:.1%} of analyze's other CPU time in process "
          f"({1e3 * share * statistics.median(totals) / max(fits, 1):.1f} ms per fit)")
    cmd = [sys.executable, "-m", "spectracli", "analyze", str(ckpt), "--format", "json",
           "--output", str(OUT / "report_ci.json"), "--device", "cpu"]
    walls: dict[str, list[float]] = {"--ci-resamples 0": [], "default (200)": []}
    for _ in range(repeats):
        walls["--ci-resamples 0"].append(measure([*cmd, "--ci-resamples", "0"])[0])
        walls["default (200)"].append(measure(cmd)[0])
    base = statistics.median(walls["--ci-resamples 0"])
    full = statistics.median(walls["default (200)"])
    print(f"whole process: {base:.2f} s with the analytic interval, {full:.2f} s with the "
          f"bootstrap ({full / base - 1:+.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--methods", action="store_true", help="also time svdvals vs Gram")
    parser.add_argument("--bootstrap", action="store_true",
                        help="only the cost of the alpha_ci bootstrap")
    args = parser.parse_args()
    ckpt = OUT / "transformer.safetensors"
    if not ckpt.exists():
        build_checkpoint(ckpt)
    if args.bootstrap:
        bootstrap_cost(ckpt, args.repeats)
        return
    if args.methods:
        time_methods(ckpt, args.repeats)
    threads = [str(args.threads)] if args.threads else []
    spectracli = [sys.executable, "-m", "spectracli", "analyze", str(ckpt), "--format", "json",
                  "--output", str(OUT / "report.json"), "--device", "cpu"]
    if args.threads:
        spectracli += ["--jobs", str(args.threads)]
    runs = {
        "floor (import+load+eigvalsh)": [sys.executable, "-c", FLOOR, str(ckpt), *threads],
        "spectracli analyze --no-farms": [*spectracli, "--no-farms"],
        "spectracli analyze (full+FARMS)": spectracli,
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, cmd in runs.items():  # alternating, so drift hits every variant alike
            results[name].append(measure(cmd))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v))
           for k, v in results.items()}
    floor = med["floor (import+load+eigvalsh)"][0]
    nofarms = med["spectracli analyze --no-farms"][0]
    print(f"checkpoint: {ckpt} ({ckpt.stat().st_size / 2**20:.0f} MiB, 38 matrices)")
    print(f"{'run':34s} {'wall s':>8s} {'peak RSS MiB':>13s} {'x floor':>8s}")
    for name, (wall, rss) in med.items():
        print(f"{name:34s} {wall:8.2f} {rss:13.0f} {wall / floor:8.2f}")
    print(f"FARMS overhead: {med['spectracli analyze (full+FARMS)'][0] / nofarms:.2f}x "
          "the --no-farms run")
    report = json.loads((OUT / "report.json").read_text())
    print(f"in-process timing of the last run: {report['timing']}")


if __name__ == "__main__":
    main()
