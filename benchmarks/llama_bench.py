"""``spectracli analyze`` on Llama-1.1B-shaped bf16 checkpoints: FARMS layouts, time and memory.

Builds (once, under bench_out/llama/) a Hugging Face sharded safetensors checkpoint in bf16 with
the geometry of TinyLlama-1.1B: hidden 2048, intermediate 5632, 32 query heads and 4 key/value
heads (k/v projections 256 x 2048), vocabulary 32000 (embedding and untied head 32000 x 2048),
RMSNorm vectors, ``--layers`` decoder layers (22 for the whole 1.1B model, 1 for the one-layer
checkpoint of the issue), seeded Gaussian weights scaled by 1/sqrt(fan_in), and a config.json.

Then runs ``spectracli analyze DIR -f json -o ...`` as a whole process for each of ``--runs``
(``nofarms``: --no-farms; ``bounded``: the default FARMS layout; ``released``: --farms-grid
released) and prints wall time, CPU time, peak RSS (a lean wrapper's ru_maxrss, see
scale_bench.py) and with ``--per-shape`` the in-process time of one tensor of each matrix shape.

    python benchmarks/llama_bench.py --layers 1 --runs nofarms bounded released
    python benchmarks/llama_bench.py --layers 22 --runs bounded     # the whole 1.1B model
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_bench import run_rusage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HIDDEN, INTER, KV, VOCAB = 2048, 5632, 256, 32000
RUN_FLAGS = {"nofarms": ["--no-farms"], "bounded": [], "released": ["--farms-grid", "released"]}


def layout(n_layers: int) -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (HIDDEN,)),
                (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
                (p + "self_attn.k_proj.weight", (KV, HIDDEN)),
                (p + "self_attn.v_proj.weight", (KV, HIDDEN)),
                (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
                (p + "post_attention_layernorm.weight", (HIDDEN,)),
                (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
                (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
                (p + "mlp.down_proj.weight", (HIDDEN, INTER))]
    return out + [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]


def build(out_dir: Path, n_layers: int, shard_bytes: float = 2e9) -> int:
    """Write shards, index and config.json (one shard in memory at a time); return bytes."""
    import torch
    from safetensors.torch import save_file

    tensors = layout(n_layers)
    total = sum(2 * math.prod(s) for _, s in tensors)
    free = shutil.disk_usage(ROOT).free
    if total > free / 2:
        raise SystemExit(f"need {total / 1e9:.1f} GB, only {free / 1e9:.1f} GB free on disk")
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensors:
        if groups[-1] and size + 2 * math.prod(shape) > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += 2 * math.prod(shape)
    weight_map = {}
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        shard = {}
        for name, shape in group:
            t = torch.ones(shape) if len(shape) == 1 else (
                torch.randn(shape, generator=gen) / math.sqrt(shape[1]))
            shard[name] = t.to(torch.bfloat16)
            weight_map[name] = fname
        save_file(shard, str(out_dir / fname))
    (out_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (out_dir / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": INTER,
        "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": VOCAB,
        "num_hidden_layers": n_layers, "tie_word_embeddings": False}))
    return total


def per_shape(ckpt: Path, runs: list[str]) -> None:
    """In-process analysis time of one tensor of each shape, one thread, per run."""
    import time

    import torch
    from safetensors import safe_open

    import spectracli

    torch.set_num_threads(1)
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())["weight_map"]
    first: dict[tuple[int, ...], str] = {}
    for name, shape in layout(1):
        if len(shape) == 2 and name in index:
            first.setdefault(shape, name)
    options = {"nofarms": {"farms": False}, "bounded": {}, "released": {"farms_grid": "released"}}
    print(f"\nper matrix shape, one tensor, 1 thread (s): {' '.join(f'{r:>9s}' for r in runs)}")
    for shape, name in first.items():
        with safe_open(str(ckpt / index[name]), framework="pt") as f:
            tensor = f.get_tensor(name)
        times = []
        for run in runs:
            t0 = time.perf_counter()
            spectracli.analyze({name: tensor}, threads=1, **options[run])
            times.append(time.perf_counter() - t0)
        label = "x".join(map(str, shape))
        print(f"{label:>42s} {' '.join(f'{t:9.2f}' for t in times)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--runs", nargs="+", default=["nofarms", "bounded"],
                        choices=sorted(RUN_FLAGS))
    parser.add_argument("--jobs", type=int, default=None, help="analyze --jobs")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    parser.add_argument("--per-shape", action="store_true",
                        help="also time one tensor of each shape in-process")
    args = parser.parse_args()
    ckpt = ROOT / "bench_out" / "llama" / f"layers{args.layers}"
    if not (ckpt / "model.safetensors.index.json").is_file():
        total = build(ckpt, args.layers)
        print(f"built {ckpt} ({total / 1e9:.2f} GB bf16)")
    try:
        for run in args.runs:
            report = ckpt.parent / f"{ckpt.name}-{run}.json"
            cmd = [sys.executable, "-m", "spectracli", "analyze", str(ckpt), "-f", "json",
                   "-o", str(report), *RUN_FLAGS[run]]
            if args.jobs:
                cmd += ["--jobs", str(args.jobs)]
            res = run_rusage(cmd, ckpt.parent / f"{run}.stdout")
            n = len(json.loads(report.read_text())["layers"])
            print(f"{run:9s} wall {res['wall_s']:7.1f} s  cpu {res['cpu_s']:7.1f} s  "
                  f"peak RSS {res['peak_rss_mb']:6.0f} MiB  ({n} matrices)", flush=True)
        if args.per_shape:
            per_shape(ckpt, args.runs)
    finally:
        if not args.keep:
            shutil.rmtree(ckpt, ignore_errors=True)


if __name__ == "__main__":
    main()
