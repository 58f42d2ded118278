"""1 vs 2 ranks under ``torchrun`` (gloo, CPU, one thread per rank) for analyze and hessian.

- analyze: the MiniLM-shaped synthetic checkpoint of ``analyze_bench.py`` (38 matrices, a
  30522 x 384 embedding), ``--jobs 1``: layers sharded over the ranks;
- hessian: the MLP 784-256-256-10 (269,322 parameters, 2048 samples) of ``workloads.py``, top-3
  eigenvalues, float64: batches sharded over the ranks.

Each run is a fresh ``python -m torch.distributed.run --nproc-per-node N -m spectracli ...`` with
``OMP_NUM_THREADS=1``; prints the median wall time of each, the 1/2 ratio, and checks that the
2-rank report equals the 1-rank one (analyze: every layer's numbers; hessian: eigenvalues to
1e-10 relative). Run:

    python benchmarks/distributed_bench.py [--repeats 1] [--only analyze|hessian]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "bench_out" / "distributed_bench"

MODEL_FILE = f'''
import sys
sys.path.insert(0, {str(HERE)!r})
from workloads import mlp_270k_workload

_W = mlp_270k_workload(n_samples=2048)


def build():
    return _W[0]


def data():
    return _W[1], _W[2]
'''


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(nproc: int, args: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_port()), "-m", "spectracli",
           *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=OUT)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def compare(name: str, args: list[str], repeats: int, check) -> None:
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for n in (1, 2):  # alternating, so drift hits both alike
            times[n].append(run(n, [*args, "--output", f"{name}_{n}.json"]))
    one, two = (statistics.median(times[n]) for n in (1, 2))
    same = check(json.loads((OUT / f"{name}_1.json").read_text()),
                 json.loads((OUT / f"{name}_2.json").read_text()))
    print(f"{name:8s} 1 rank {one:7.2f} s   2 ranks {two:7.2f} s   speed-up {one / two:4.2f}x   "
          f"2-rank report equals 1-rank: {same}")


def same_layers(a: dict, b: dict) -> bool:
    def strip(r: dict) -> list[dict]:
        return [{k: v for k, v in layer.items() if k != "rank"} for layer in r["layers"]]

    return strip(a) == strip(b) and b["settings"]["world_size"] == 2


def same_eigenvalues(a: dict, b: dict) -> bool:
    return all(abs(x - y) <= 1e-10 * abs(x) for x, y in
               zip(a["eigenvalues"], b["eigenvalues"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=("analyze", "hessian"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"cores available: {len(os.sched_getaffinity(0))}; one thread per rank")
    if args.only in (None, "analyze"):
        sys.path.insert(0, str(HERE))
        from analyze_bench import build_checkpoint

        ckpt = HERE.parent / "bench_out" / "analyze_bench" / "transformer.safetensors"
        if not ckpt.exists():
            build_checkpoint(ckpt)
        compare("analyze", ["analyze", str(ckpt), "--jobs", "1", "--device", "cpu",
                            "--format", "json"], args.repeats, same_layers)
    if args.only in (None, "hessian"):
        (OUT / "mlp.py").write_text(MODEL_FILE)
        compare("hessian", ["hessian", "--model", "mlp.py:build", "--data", "mlp.py:data",
                            "--loss", "cross_entropy", "--top-k", "3", "--dtype", "float64",
                            "--batch-size", "256", "--device", "cpu", "--threads", "1",
                            "--format", "json"], args.repeats, same_eigenvalues)


if __name__ == "__main__":
    main()
