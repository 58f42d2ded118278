"""torchrun: 2 gloo processes on CPU give the single-process reports (spectracli.distributed).

Each launch runs ``python -m torch.distributed.run --nproc-per-node 2 -m spectracli ...`` in a
subprocess with a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spectracli import distributed
from spectracli.analyze import AnalyzeConfig, plan_cost, shard_items
from spectracli.io import open_checkpoint

TIMEOUT_S = 180
# Fields that say where or when a run happened, not what it found.
RUN_FIELDS = {"rank"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {"OMP_NUM_THREADS": "1", "SPECTRACLI_DIST_TIMEOUT": "120",
       "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def torchrun(args: list[str], tmp: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node nproc -m spectracli args`` on a free port, with a timeout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "spectracli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env={**os.environ, **ENV}, cwd=tmp)


def spectracli(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    """The same command in one process, in the same environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    return subprocess.run([sys.executable, "-m", "spectracli", *args], capture_output=True,
                          text=True, timeout=TIMEOUT_S, env={**env, **ENV}, cwd=tmp)


def write_sharded(root: Path) -> None:
    """Two safetensors shards with layers of very different sizes (and a fused-free MLP)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(3)
    shapes = {"embed.weight": (400, 48), "big.weight": (160, 120), "mid.weight": (60, 40),
              "small.weight": (24, 16), "tiny.weight": (12, 12), "wide.weight": (20, 300),
              "conv.weight": (16, 8, 3, 3)}
    tensors = {k: torch.randn(*s, generator=g) / s[-1] ** 0.5 for k, s in shapes.items()}
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:3],
              "model-00002-of-00002.safetensors": names[3:]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k].contiguous() for k in keys}, str(root / shard))
        weight_map.update({k: shard for k in keys})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))


def strip_run(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k not in ("created", "timing", "settings")}
    out["layers"] = [{k: v for k, v in layer.items() if k not in RUN_FIELDS}
                     for layer in report["layers"]]
    return out


def test_no_launcher_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.init()) == (0, 1, False)
    assert distributed.gather_object(5) == [5]
    t = torch.ones(3)
    assert distributed.all_reduce(t) is t


def test_shard_items_balances_by_cost_and_keeps_groups_whole(tmp_path):
    write_sharded(tmp_path)
    from spectracli.analyze import _load_groups, _plan

    config = AnalyzeConfig(farms_window=20)
    with open_checkpoint(tmp_path) as ckpt:
        handles = list(ckpt.handles())
        work, _ = _plan(handles, config, None, ckpt.config)
        items = _load_groups(work, {h.name: h for h in handles}, None, torch.device("cpu"))
    owner = shard_items(items, config, 2)
    costs = [plan_cost(p, config) for _, p in items]
    loads = [sum(c for c, r in zip(costs, owner, strict=True) if r == k) for k in (0, 1)]
    # greedy LPT: the makespan is within 4/3 of the best, and here never above max(cost, half+max)
    assert max(loads) <= max(max(costs), sum(costs) / 2 + max(costs)) and min(loads) > 0
    biggest = max(range(len(items)), key=costs.__getitem__)
    assert owner[biggest] == 0  # the largest first, to rank 0
    assert shard_items(items, config, 1) == [0] * len(items)


def test_analyze_under_torchrun_equals_one_process(tmp_path):
    """Same layers, same order, same numbers; each layer says which rank solved it; one file."""
    write_sharded(tmp_path)
    args = ["--format", "json", "--farms-window", "20", "--ci-resamples", "0", "--jobs", "1",
            "--device", "cpu"]
    out = tmp_path / "dist.json"
    done = torchrun(["analyze", str(tmp_path), *args, "--output", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    # the one-process run in the same environment (one BLAS thread), so the same bits are due
    done = spectracli(["analyze", str(tmp_path), *args, "--output", str(tmp_path / "one.json")],
                      tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    single = json.loads((tmp_path / "one.json").read_text())
    assert report["settings"]["world_size"] == 2 and single["settings"]["world_size"] == 1
    assert {layer["rank"] for layer in report["layers"]} == {0, 1}
    got, want = strip_run(report), strip_run(single)
    for a, b in zip(got["layers"], want["layers"], strict=True):
        assert a == b, [(k, a[k], b[k]) for k in a if a[k] != b[k]]
    assert got == want
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".json"].count("dist.json") == 1


def test_a_failing_rank_ends_the_job_with_one_line(tmp_path):
    """A shard cut short: every rank fails, exit 2, one line naming the first rank and the
    cause, no file, no hang (the launch has a timeout)."""
    write_sharded(tmp_path)
    shard = tmp_path / "model-00002-of-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 200])  # the last tensor's data cut short
    done = torchrun(["analyze", str(tmp_path), "--ci-resamples", "0", "--device", "cpu",
                     "--format", "json", "--output", str(tmp_path / "r.json")], tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("spectracli: error")]
    assert done.returncode != 0
    assert len(errors) == 1, done.stderr[-2000:]
    assert errors[0].startswith("spectracli: error: rank 0: ") and "truncated" in errors[0]
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("name", ["RANK", "WORLD_SIZE"])
def test_partial_launcher_env_is_not_distributed(monkeypatch, name):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv(name, "1" if name == "RANK" else "2")
    assert not distributed.launched() and distributed.world_size() == 1


LM_FILE = '''
import torch
from torch import nn

V, T = 7, 5


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(V, 4), nn.Tanh(), nn.Linear(4, V))


def pairs():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (11, T), generator=g)
    y = torch.randint(0, V, (11, T), generator=g)
    for i in range(11):  # padding of every length: batches of very different token counts
        y[i, T - i % T:] = -100
    return x, y
'''


def test_hessian_under_torchrun_equals_one_process(tmp_path):
    """Uneven shards (6 batches of 2, 1: rank 0 holds 3, rank 1 holds 3, with different token
    counts), token loss: eigenvalues, trace and SLQ nodes as one process to 1e-10 (float64)."""
    (tmp_path / "lm.py").write_text(LM_FILE)
    args = ["hessian", "--model", "lm.py:build", "--data", "lm.py:pairs", "--loss",
            "token_cross_entropy", "--top-k", "3", "--which", "both", "--dtype", "float64",
            "--batch-size", "2", "--trace", "--trace-hvps", "12", "--density",
            "--density-probes", "2", "--density-steps", "6", "--device", "cpu",
            "--format", "json"]
    done = torchrun([*args, "--output", "dist.json"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    done = spectracli([*args, "--output", "one.json"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    dist = json.loads((tmp_path / "dist.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    assert dist["settings"]["world_size"] == 2 and one["settings"]["world_size"] == 1
    assert dist["settings"]["n_batches"] == one["settings"]["n_batches"] == 6
    assert dist["n_tokens"] == one["n_tokens"] and dist["n_samples"] == one["n_samples"] == 11
    assert len(one["eigenvalues"]) == 6
    for key in ("eigenvalues",):
        assert dist[key] == pytest.approx(one[key], rel=0, abs=1e-10)
    assert dist["loss"] == pytest.approx(one["loss"], rel=1e-12)
    assert dist["trace"]["estimate"] == pytest.approx(one["trace"]["estimate"], abs=1e-10)


def test_a_rank_whose_batch_fails_is_named(tmp_path):
    """A non-finite input only in batch 1 (rank 1's): one line naming rank 1, exit 2."""
    (tmp_path / "mlp.py").write_text('''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def data():
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    x[2, 0] = float("nan")  # batch 1 of 4 (batch size 2): rank 1 holds it
    return x, torch.tensor([0, 1] * 4)
''')
    done = torchrun(["hessian", "--model", "mlp.py:build", "--data", "mlp.py:data",
                     "--batch-size", "2", "--top-k", "1", "--device", "cpu", "--format", "json",
                     "--output", "r.json"], tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("spectracli: error")]
    assert done.returncode != 0 and len(errors) == 1, done.stderr[-2000:]
    assert errors[0].startswith("spectracli: error: rank 1: "), errors
    assert not (tmp_path / "r.json").exists()


PYTHON_API = '''
import json, sys
import torch
import torch.distributed as dist
import spectracli

sys.path.insert(0, ".")
from lm import build, pairs

dist.init_process_group("gloo")
result = spectracli.hessian(build().double(), pairs(), "token_cross_entropy", k=2,
                           dtype="float64", batch_size=3, device="cpu")
if dist.get_rank() == 0:
    json.dump({"eigenvalues": result.eigenvalues,
               "world_size": result.settings["world_size"]}, open(sys.argv[1], "w"))
dist.barrier()
dist.destroy_process_group()
'''


def test_python_api_inside_a_process_group(tmp_path):
    (tmp_path / "lm.py").write_text(LM_FILE)
    (tmp_path / "run.py").write_text(PYTHON_API)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "run.py"]
    done = subprocess.run([*cmd, "dist.json"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=TIMEOUT_S, env={**os.environ, **ENV})
    assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                           "1", "--master-port", str(free_port()), "run.py", "one.json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT_S,
                          env={**os.environ, **ENV})
    assert done.returncode == 0, done.stderr[-2000:]
    dist = json.loads((tmp_path / "dist.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    assert (dist["world_size"], one["world_size"]) == (2, 1)
    assert dist["eigenvalues"] == pytest.approx(one["eigenvalues"], rel=0, abs=1e-10)
