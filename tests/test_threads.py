"""Thread settings are scoped: a library call (or a CLI command run in-process) leaves the
process's torch thread count as it found it, also when it fails, and nothing in the package
sets a thread count or an environment variable outside the one place meant for it.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import spectracli
from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.errors import SpectraError
from spectracli.threads import idle_threads, torch_threads

PACKAGE = Path(spectracli.__file__).parent
SAMPLE = "sample_models/digits_mlp.safetensors"


@pytest.fixture
def two_threads():
    """A count that differs from the 1 the library sets inside, so a leak shows."""
    with torch_threads(2):
        yield


def test_torch_threads_sets_inside_and_restores_after_an_error(two_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        # Threads started inside begin with the count (the analyze workers rely on it).
        seen = []
        worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        assert seen == [1]
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    with torch_threads(None):
        assert torch.get_num_threads() == 2
    with pytest.raises(SpectraError, match="^threads must be at least 1, got 0$"):
        with torch_threads(0):
            pass  # pragma: no cover - never entered
    assert torch.get_num_threads() == 2


def test_idle_threads_is_between_one_and_the_current_count():
    for current in (1, 2, 8):
        assert 1 <= idle_threads(current) <= current


def test_analyze_solves_with_one_blas_thread_and_restores_the_count(two_threads, monkeypatch):
    import spectracli.analyze as analyze_module

    real = analyze_module.analyze_matrices
    seen: list[int] = []

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(analyze_module, "analyze_matrices", recording)
    config = AnalyzeConfig(fit="median", farms=False, store_esd=False, threads=2)
    report = analyze_checkpoint(SAMPLE, config)
    assert report.layers and seen and set(seen) == {1}
    assert torch.get_num_threads() == 2

    def failing(*args, **kwargs):
        raise RuntimeError("solver failed")

    monkeypatch.setattr(analyze_module, "analyze_matrices", failing)
    with pytest.raises(RuntimeError, match="solver failed"):
        analyze_checkpoint(SAMPLE, config)
    assert torch.get_num_threads() == 2


def test_hessian_command_sets_threads_for_itself_only(two_threads, monkeypatch):
    import spectracli.hessian as hessian_package
    from spectracli.cli.app import app

    seen: list[int] = []

    def stop(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise SpectraError("stopped after the thread count was read")

    monkeypatch.setattr(hessian_package, "analyze", stop)
    res = CliRunner().invoke(app, [
        "hessian", "--model", "sample_models/digits.py:build_mlp",
        "--weights", "sample_models/digits_mlp.safetensors",
        "--data", "sample_models/digits.npz", "--max-samples", "50", "--threads", "1"])
    assert res.exit_code == 2 and "stopped after the thread count was read" in res.output
    assert seen == [1]
    assert torch.get_num_threads() == 2


# Calls that change process-wide state, and the only files allowed to make them.
PROCESS_WIDE = {
    "set_num_threads": {"spectracli/threads.py"},
    "set_num_interop_threads": set(),
    "putenv": set(),
    "set_default_dtype": set(),
    "use_deterministic_algorithms": set(),
    "manual_seed": set(),  # only on a private torch.Generator (see below)
}


def _process_wide_calls(path: Path) -> list[str]:
    """``name:line`` of each process-wide call and each write to ``os.environ`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            owner = node.func.value
            # torch.Generator().manual_seed(seed) seeds a private generator: not global.
            private = isinstance(owner, ast.Call)
            if name in PROCESS_WIDE and not private:
                found.append(f"{name}:{node.lineno}")
            if (name in ("update", "setdefault", "pop", "clear")
                    and isinstance(owner, ast.Attribute) and owner.attr == "environ"):
                found.append(f"environ.{name}:{node.lineno}")
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        if isinstance(node, ast.Delete):
            targets = node.targets
        for target in targets:
            if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute)
                    and target.value.attr == "environ"):
                found.append(f"environ[]:{node.lineno}")
    return sorted(found, key=lambda call: int(call.rsplit(":", 1)[1]))


def test_process_wide_settings_change_only_where_scoped():
    allowed_env = {"spectracli/cli/app.py"}  # main(): OMP_WAIT_POLICY at process start
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for call in _process_wide_calls(path):
            name = call.split(":")[0]
            ok = (rel in allowed_env if name.startswith("environ")
                  else rel in PROCESS_WIDE[name])
            if not ok:
                bad.append(f"{rel}: {call}")
    assert not bad, bad


def test_the_scan_finds_what_it_looks_for(monkeypatch):
    src = ("import os, torch\ntorch.set_num_threads(3)\nos.environ['X'] = '1'\n"
           "os.environ.setdefault('Y', '2')\ng = torch.Generator().manual_seed(0)\n"
           "torch.manual_seed(0)\n")
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: src)
    assert _process_wide_calls(PACKAGE / "probe.py") == [
        "set_num_threads:2", "environ[]:3", "environ.setdefault:4", "manual_seed:6"]


FLOAT32_WINDOWS_RUN = """
import json, sys
import numpy as np
from threadpoolctl import threadpool_info
import spectracli
from spectracli.spectral import farms
farms.FLOAT32_MIN_SIZE_CPU = 256  # float32 windows of 256 (the default waits for 1024)
def counts():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
seen = []
w = np.random.default_rng(0).standard_normal((300, 300))
spectracli.analyze({"w.weight": w}, farms_grid="released", farms_window=256, ci_resamples=0,
                   progress=lambda *a, **k: seen.append(counts()))
print(json.dumps([seen[0], counts(), "scipy.linalg" in sys.modules]))
"""


def test_float32_window_solves_run_scipy_blas_on_one_thread_and_restore_it():
    """A FARMS grid with float32 windows (100 of 256 x 256) solves them with scipy's LAPACK,
    whose own OpenBLAS analyze loads before limiting BLAS to one thread per worker: every BLAS
    library runs 1 thread while matrices are solved (read from the progress callback), its
    default (2 here) after. Measured before: scipy's ran 2 threads inside, 5x the CPU time on a
    busy box (docs/benchmarks.md)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", FLOAT32_WINDOWS_RUN], capture_output=True,
                         text=True, env=env, check=True).stdout
    inside, after, scipy_loaded = json.loads(out)
    assert scipy_loaded and len(inside) >= 2, inside  # numpy's and scipy's BLAS
    assert all(n == 1 for n in inside.values()), inside
    assert all(n == 2 for n in after.values()), after
