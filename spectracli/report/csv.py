"""One CSV row per analysed layer; FARMS columns prefixed ``farms_``."""

from __future__ import annotations

import csv
import io
from typing import Any

from spectracli.results import LAYER_METRICS

_LEADING = (
    "name", "kind", "shape", "matrix_shape", "n_matrices", "dtype", "quant_type", "status"
)
_FARMS_EXTRA = ("window_rows", "window_cols", "n_windows")
_PROVENANCE = ("rule", "sources", "part", "conv_view", "transposed")  # spectracli.layers
_CI = ("alpha_ci_low", "alpha_ci_high", "farms_alpha_ci_low", "farms_alpha_ci_high")
# appended last, so the earlier columns keep their positions
_FARMS_SOLVE = ("independent_windows", "solve_dtype", "alpha_error_bound", "ci_method")


def _ci_end(block: dict[str, Any], end: int) -> Any:
    ci = block.get("alpha_ci")
    return ci[end] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None


def render_csv(report: dict[str, Any]) -> str:
    """The analyze report as CSV: one row per layer, FARMS and interval columns prefixed."""
    metrics = [m for m in LAYER_METRICS if not m.startswith("farms.")]
    farms = [m.split(".", 1)[1] for m in LAYER_METRICS if m.startswith("farms.")]
    header = [*_LEADING, *metrics, "rank_deficient", "fit_status", "fit_method",
              *(f"farms_{m}" for m in (*farms, "fit_status", *_FARMS_EXTRA)), "aliases", "warnings",
              *_PROVENANCE, *_CI, *(f"farms_{m}" for m in _FARMS_SOLVE), "ci_method"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for layer in report.get("layers", []):
        f = layer.get("farms") or {}
        row: list[Any] = [
            "x".join(map(str, layer[k])) if k in ("shape", "matrix_shape") else layer.get(k)
            for k in _LEADING
        ]
        row += [layer.get(m) for m in metrics]
        row += [layer.get("rank_deficient"), layer.get("fit_status"), layer.get("fit_method")]
        row += [f.get(m) for m in (*farms, "fit_status", *_FARMS_EXTRA)]
        row += [";".join(layer.get("aliases") or []), "; ".join(layer.get("warnings") or [])]
        row += [";".join(layer.get(k) or []) if k == "sources" else layer.get(k)
                for k in _PROVENANCE]
        row += [_ci_end(block, end) for block in (layer, f) for end in (0, 1)]
        row += [f.get(m) for m in _FARMS_SOLVE]
        row.append(layer.get("ci_method"))
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()
