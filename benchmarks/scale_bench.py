"""Peak memory of ``spectracli analyze`` on a sharded checkpoint larger than its memory budget.

Builds (once, under bench_out/scale/) a Hugging Face style sharded safetensors checkpoint of
transformer-shaped float32 matrices: a 250,002 x 768 token embedding and an untied LM head of the
same shape (XLM-R's vocabulary; the largest tensors, 768 MB each), then as many encoder blocks of
BERT-base shapes (q, k, v, o 768 x 768; FFN 3072 x 768 and 768 x 3072; two LayerNorm vectors) as
reach ``--gb`` gigabytes, written in shards of ``--shard-gb`` with a
``model.safetensors.index.json``. The values are seeded Gaussians scaled by 1/sqrt(fan_in).

Then runs ``spectracli analyze DIR --format json --output ...`` as a whole process and reads its
own peak RSS (ru_maxrss, through a lean wrapper process), next to the budget ``3 x largest
tensor + 300 MB`` and the RSS of a bare ``python -c "import torch"`` for scale. The disk is
checked first (``shutil.disk_usage``) and the checkpoint shrunk to fit in half the free space.

Usage::

    .venv/bin/python benchmarks/scale_bench.py [--gb 4] [--shard-gb 1] [--no-farms]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_out" / "scale"
FLOAT32_BYTES = 4


def layout(n_layers: int, d_model: int, d_ff: int, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes of the checkpoint, in file order (BERT/LLaMA-like naming)."""
    tensors: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, d_model))]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        tensors += [
            (p + "input_layernorm.weight", (d_model,)),
            (p + "self_attn.q_proj.weight", (d_model, d_model)),
            (p + "self_attn.k_proj.weight", (d_model, d_model)),
            (p + "self_attn.v_proj.weight", (d_model, d_model)),
            (p + "self_attn.o_proj.weight", (d_model, d_model)),
            (p + "post_attention_layernorm.weight", (d_model,)),
            (p + "mlp.up_proj.weight", (d_ff, d_model)),
            (p + "mlp.down_proj.weight", (d_model, d_ff)),
        ]
    tensors += [("model.norm.weight", (d_model,)), ("lm_head.weight", (vocab, d_model))]
    return tensors


def nbytes(shape: tuple[int, ...]) -> int:
    return math.prod(shape) * FLOAT32_BYTES


def layers_for(total_bytes: float, d_model: int, d_ff: int, vocab: int) -> int:
    fixed = sum(nbytes(s) for _, s in layout(0, d_model, d_ff, vocab))
    per_layer = sum(nbytes(s) for _, s in layout(1, d_model, d_ff, vocab)) - fixed
    return max(1, int((total_bytes - fixed) // per_layer))


def build_sharded_checkpoint(
    out_dir: Path, n_layers: int, d_model: int = 768, d_ff: int = 3072, vocab: int = 250_002,
    shard_bytes: float = 1e9, seed: int = 0,
) -> dict[str, Any]:
    """Write the shards and index into ``out_dir``; return sizes. Holds one shard in memory."""
    import torch
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = layout(n_layers, d_model, d_ff, vocab)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensors:
        if groups[-1] and size + nbytes(shape) > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += nbytes(shape)
    gen = torch.Generator().manual_seed(seed)
    weight_map: dict[str, str] = {}
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        shard = {}
        for name, shape in group:
            if len(shape) == 1:
                shard[name] = torch.ones(shape)
            else:
                shard[name] = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
            weight_map[name] = fname
        tmp = out_dir / (fname + ".tmp")
        save_file(shard, str(tmp))
        tmp.rename(out_dir / fname)
        del shard
    total = sum(nbytes(s) for _, s in tensors)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    largest = max(tensors, key=lambda t: nbytes(t[1]))
    return {"n_layers": n_layers, "n_tensors": len(tensors), "n_shards": len(groups),
            "total_bytes": total, "largest_tensor": largest[0],
            "largest_tensor_bytes": nbytes(largest[1]),
            "n_matrices": sum(1 for _, s in tensors if len(s) == 2)}


# Linux keeps ru_maxrss across execve, so a child forked from this (large, checkpoint-building)
# process would report at least our RSS. A small wrapper forks the command from itself instead
# and reports its one child's rusage.
MEASURE = """
import json, os, resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1], "wb"),
                     stderr=open(sys.argv[1] + ".stderr", "wb"))
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall_s": time.perf_counter() - t0, "peak_rss_mb": u.ru_maxrss / 1024,
                  "cpu_s": u.ru_utime + u.ru_stime}))
"""


def run_rusage(cmd: list[str], stdout: Path) -> dict[str, float]:
    """Wall time, CPU time and the command's own peak RSS (MiB), measured by a lean wrapper."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(stdout), *cmd], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        tail = Path(str(stdout) + ".stderr").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {res['rc']}): {tail}")
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.0, help="checkpoint size to build (GB)")
    parser.add_argument("--shard-gb", type=float, default=1.0)
    parser.add_argument("--no-farms", action="store_true", help="pass --no-farms to analyze")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    ckpt_dir = OUT / "checkpoint"
    meta_path = OUT / "checkpoint.json"
    want = args.gb * 1e9
    free = shutil.disk_usage(OUT).free
    if want > free / 2:
        want = free / 2
        print(f"only {free / 1e9:.1f} GB free: building {want / 1e9:.1f} GB instead", flush=True)
    n_layers = layers_for(want, 768, 3072, 250_002)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if args.rebuild or meta is None or meta.get("n_layers") != n_layers:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        t0 = time.perf_counter()
        meta = build_sharded_checkpoint(ckpt_dir, n_layers, shard_bytes=args.shard_gb * 1e9)
        meta["build_s"] = time.perf_counter() - t0
        meta_path.write_text(json.dumps(meta, indent=1))
    print(f"checkpoint: {meta['total_bytes'] / 1e9:.2f} GB in {meta['n_shards']} shards, "
          f"{meta['n_matrices']} matrices, largest tensor {meta['largest_tensor']} "
          f"{meta['largest_tensor_bytes'] / 2**20:.0f} MiB", flush=True)

    bare = run_rusage([sys.executable, "-c", "import torch, safetensors"], OUT / "bare.out")
    exe = Path(sys.executable).with_name("spectracli")
    cmd = [str(exe), "analyze", str(ckpt_dir), "--format", "json", "--output",
           str(OUT / "report.json")]
    if args.no_farms:
        cmd.append("--no-farms")
    res = run_rusage(cmd, OUT / "analyze.out")
    report = json.loads((OUT / "report.json").read_text())
    largest_mb = meta["largest_tensor_bytes"] / 2**20
    budget_mb = 3 * largest_mb + 300
    summary = {
        "checkpoint": meta, "command": " ".join(cmd[1:]), "bare_import_rss_mb":
        bare["peak_rss_mb"], **res, "largest_tensor_mb": largest_mb, "budget_mb": budget_mb,
        "rss_over_largest": res["peak_rss_mb"] / largest_mb,
        "within_budget": res["peak_rss_mb"] <= budget_mb,
        "n_layers_analysed": len(report["layers"]), "n_skipped": len(report["skipped"]),
        "report_timing": report.get("timing"), "cpus": os.cpu_count(),
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"analyze: wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s, peak RSS "
          f"{res['peak_rss_mb']:.0f} MiB (= {summary['rss_over_largest']:.2f} x the largest "
          f"tensor of {largest_mb:.0f} MiB); budget 3 x largest + 300 MiB = {budget_mb:.0f} MiB: "
          f"{'met' if summary['within_budget'] else 'MISSED'}; bare `import torch` "
          f"{bare['peak_rss_mb']:.0f} MiB; {summary['n_layers_analysed']} layers analysed, "
          f"{summary['n_skipped']} skipped")


if __name__ == "__main__":
    main()
