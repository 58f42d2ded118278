"""The versioned JSON report, defined once: its version, its kinds, the per-layer metric names.

The JSON report is the one input, besides a checkpoint, that ``report``, ``plot``, ``gate`` and
``compare`` accept, so nothing is computed twice. Downstream code reads the plain dict form
(``AnalysisReport.to_dict()`` or a file read by :func:`spectracli.report_file.load_report`).
The module imports nothing of the package, so every room may use it (docs/design.md).

Schema (``schema_version`` 1), analyze report::

    {
      "schema_version": 1, "kind": "analyze", "tool_version": "0.1.0", "created": ISO-8601,
      "source": {"path", "format", "size_bytes", "n_tensors", "base": null | {"path", "format"}},
      "settings": {...},                    # every option that changes a number
      "layers": [LayerResult.to_dict()],    # see LayerResult (rule, sources, part, conv_view)
      "skipped": [{"name", "shape", "reason", "rule"}],
      "summary": {...},                     # means / extremes of the main metrics
      "groups": [{...}],                    # pooled figures per expert stack (group_summaries)
      "timing": {"total_s", "solve_s"}
    }

A Hessian report has ``"kind": "hessian"`` and is defined in ``spectracli.hessian``; a track
report (``"kind": "track"``, a run's checkpoints by step) in ``spectracli.track``. The result
types are in :mod:`spectracli.results` (analyze) and :mod:`spectracli.spectral.results` (the
spectra), the statistics of ``summary`` and ``groups`` in :mod:`spectracli.summary`.

Example::

    >>> from spectracli.schema import layer_metric
    >>> layer_metric({"alpha": 3.1, "farms": {"alpha": 2.4}}, "farms.alpha")
    2.4
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA_VERSION = 1
# "track": a run's checkpoints, one analyze (+ Hessian) result per step (spectracli.track).
REPORT_KINDS = ("analyze", "hessian", "track")

# Per-layer numbers that gate rules, compare and plots may name (FARMS ones as "farms.alpha").
LAYER_METRICS = (
    "sigma_max",
    "sigma_min",
    "condition_number",
    "lambda_max",
    "frobenius_norm",
    "nuclear_norm",
    "spectral_gap",
    "spectral_gap_ratio",
    "stable_rank",
    "entropy",
    "numerical_rank",
    "mp_bulk_edge",
    "num_spikes",
    "alpha",
    "xmin",
    "tail_size",
    "ks_distance",
    "alpha_weighted",
    "log_alpha_norm",
    "alpha_se",
    "farms.alpha",
    "farms.xmin",
    "farms.tail_size",
    "farms.ks_distance",
    "farms.alpha_weighted",
    "farms.alpha_se",
)


# JSON has no inf or nan: a report writes them as these strings (docs/reports.md).
NONFINITE = ("inf", "-inf", "nan")


def nonfinite_text(value: float) -> str | None:
    """How the report writes a non-finite float (:data:`NONFINITE`).

    Args:
        value: a float.

    Returns:
        ``"nan"``, ``"inf"`` or ``"-inf"``; None for a finite value.
    """
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def layer_metric(layer: dict[str, Any], metric: str) -> Any:
    """A metric of a layer dict by name; ``farms.alpha`` reaches into the FARMS block.

    Args:
        layer: one entry of a report's ``layers``.
        metric: a name of :data:`LAYER_METRICS` (or any key of the layer).

    Returns:
        The value, or None when the layer (or its FARMS block) has none.
    """
    if metric.startswith("farms."):
        return (layer.get("farms") or {}).get(metric.split(".", 1)[1])
    return layer.get(metric)
