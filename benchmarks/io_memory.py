"""Peak resident memory of streaming every tensor of a checkpoint through spectracli.io.

Builds one checkpoint of N float32 matrices in each format in a temporary directory, then, in a
fresh process per case, opens it, loads every tensor one at a time, touches its data (a sum) and
drops it. Prints peak RSS (VmHWM) and wall time next to the floor: a process that only
imports torch and spectracli.io. A streaming reader should sit near floor + one tensor; a reader
that keeps pages mapped or reads the file whole grows to floor + file size.

    .venv/bin/python benchmarks/io_memory.py            # 24 matrices of 2048 x 2048 (384 MiB)
    .venv/bin/python benchmarks/io_memory.py --n 8 --dim 1024
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys, time
import torch
from spectracli.io import open_checkpoint
case, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
total = 0.0
if case == "floor":
    pass
elif case == "raw-safe_open-mmap":
    from safetensors import safe_open
    with safe_open(path, framework="pt", device="cpu") as f:
        for k in f.keys():
            t = f.get_tensor(k); total += float(t.sum()); del t
else:
    with open_checkpoint(path) as ckpt:
        for h in ckpt.handles():
            t = h.load(); total += float(t.sum()); del t
dt = time.perf_counter() - t0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(int(hwm) / 1024, dt)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="number of matrices")
    ap.add_argument("--dim", type=int, default=2048, help="each matrix is dim x dim float32")
    args = ap.parse_args()

    import numpy as np
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {f"layers.{i}.weight": torch.randn(args.dim, args.dim, generator=g)
               for i in range(args.n)}
    size_mib = sum(t.numel() * 4 for t in tensors.values()) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        save_file(tensors, d / "m.safetensors")
        torch.save(tensors, d / "m.pt")
        torch.save(tensors, d / "legacy.pt", _use_new_zipfile_serialization=False)
        np.savez(d / "m.npz", **{k: v.numpy() for k, v in tensors.items()})
        del tensors
        cases = [
            ("floor", d / "m.safetensors", "import torch + spectracli.io only"),
            ("safetensors", d / "m.safetensors", "ours: pread backend"),
            ("raw-safe_open-mmap", d / "m.safetensors", "safe_open default mmap, for contrast"),
            ("pytorch-zip", d / "m.pt", "ours: torch.load mmap=True"),
            ("pytorch-legacy", d / "legacy.pt", "ours: legacy pickle, read whole"),
            ("npz", d / "m.npz", "ours: np.load per key"),
        ]
        print(f"checkpoint: {args.n} x ({args.dim} x {args.dim}) float32 = {size_mib:.0f} MiB")
        print(f"{'case':<22}{'peak RSS MiB':>14}{'over floor':>12}{'time s':>9}  note")
        floor = None
        for case, path, note in cases:
            out = subprocess.run([sys.executable, "-c", CHILD, case, str(path)],
                                 check=True, capture_output=True, text=True).stdout.split()
            rss, dt = float(out[0]), float(out[1])
            floor = rss if floor is None else floor
            print(f"{case:<22}{rss:>14.0f}{rss - floor:>12.0f}{dt:>9.2f}  {note}")


if __name__ == "__main__":
    main()
