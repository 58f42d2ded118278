"""Run WeightWatcher 0.7.7's default ``analyze()`` on a safetensors model directory.

Runs inside the anchors venv (benchmarks/anchors/setup_env.sh), never the project's, as one whole
process, so the parent can time it end to end and read its peak RSS. Writes one JSON file:
``{"import_s", "analyze_s", "layers": [{name, N, M, num_evals, alpha, xmin, lambda_max,
num_pl_spikes, ...}]}`` with WeightWatcher's own column names (its ``lambda_max`` is sigma_max^2,
and its ``num_pl_spikes`` is the power-law tail size).

Usage: anchors-venv/bin/python ww_analyze.py MODEL_DIR OUT_JSON
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time


def main(model_dir: str, out_path: str) -> None:
    t0 = time.perf_counter()
    import weightwatcher as ww

    t1 = time.perf_counter()
    logging.getLogger("weightwatcher").setLevel(logging.WARNING)
    watcher = ww.WeightWatcher(model=model_dir)
    df = watcher.analyze()  # their defaults: KS-scan xmin over every tail size, no plots
    t2 = time.perf_counter()

    columns = ("N", "M", "num_evals", "alpha", "xmin", "xmax", "lambda_max", "spectral_norm",
               "num_pl_spikes", "sv_max", "sv_min", "stable_rank", "D", "rf", "layer_type")
    layers = []
    for _, row in df.iterrows():
        rec = {"name": str(row["longname"] or row["name"])}
        for col in columns:
            if col in row:
                val = row[col]
                if hasattr(val, "item"):
                    val = val.item()
                if isinstance(val, float) and not math.isfinite(val):
                    val = None
                rec[col] = val if isinstance(val, (int, float, type(None))) else str(val)
        layers.append(rec)
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump({"import_s": t1 - t0, "analyze_s": t2 - t1, "tool": f"weightwatcher "
                   f"{ww.__version__}", "layers": layers}, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
