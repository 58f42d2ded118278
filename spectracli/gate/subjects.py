"""What the gate checks: the layers of an analyze report, or a Hessian report's one pseudo-layer.

An analyze report's layers are its ``layers`` list (metrics by
:func:`spectracli.results.layer_metric`, FARMS ones as ``farms.alpha``). A Hessian report is
seen as one layer named ``hessian`` whose shape is ``[n_params]`` and whose metrics are
listed in :data:`spectracli.gate.rules.HESSIAN_METRICS` (defined in docs/ci.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from spectracli.gate.rules import HESSIAN_LAYER, HESSIAN_METRICS
from spectracli.results import LAYER_METRICS, layer_metric


@dataclass
class Subject:
    """One gated unit: a layer's name, stored shape, aliases and its metric values."""

    name: str
    shape: list[int] | None
    metrics: dict[str, Any]
    aliases: list[str] = field(default_factory=list)

    def value(self, metric: str) -> float | None:
        """The metric as a float, or None when absent, null or NaN (e.g. a failed fit)."""
        return as_float(self.metrics.get(metric))

    def interval(self, field: str) -> tuple[float, float] | None:
        """A [low, high] interval field (``alpha_ci``) as floats, or None when absent."""
        ci = self.metrics.get(field)
        if not isinstance(ci, (list, tuple)) or len(ci) != 2:
            return None
        low, high = as_float(ci[0]), as_float(ci[1])
        return None if low is None or high is None else (low, high)


def as_float(value: Any) -> float | None:
    """A JSON number (or bool) as a float; None for null, NaN and anything else."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not math.isnan(value):
        return float(value)
    return None


def _finite_list(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if as_float(v) is not None]


def hessian_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The Hessian pseudo-layer's metrics from a ``kind: "hessian"`` report dict.

    A top-level field of the same name wins (null included); otherwise: ``lambda_max``/
    ``lambda_min`` are the largest/smallest computed eigenvalue, ``trace`` is
    ``trace.estimate``, ``trace_stderr`` is ``trace.stderr``, ``bulk_edge``/``n_outliers``
    come from ``density``, ``max_residual`` is the largest Lanczos residual norm.

    Returns:
        ``{metric name: value}`` for every name of :data:`HESSIAN_METRICS` the report allows.
    """
    eig = _finite_list(report.get("eigenvalues"))
    trace = report.get("trace") if isinstance(report.get("trace"), dict) else {}
    density = report.get("density") if isinstance(report.get("density"), dict) else {}
    residuals = _finite_list(report.get("residuals"))
    eos = report.get("edge_of_stability")
    if isinstance(eos, dict):  # tolerate a structured form {"ratio": ..., "lr": ...}
        eos = eos.get("ratio", eos.get("value"))
    derived: dict[str, Any] = {
        "lambda_max": max(eig) if eig else None,
        "lambda_min": min(eig) if eig else None,
        "condition_number": report.get("condition_number"),
        "trace": trace.get("estimate"),
        "trace_stderr": trace.get("stderr"),
        "grad_norm": report.get("grad_norm"),
        "loss": report.get("loss"),
        "edge_of_stability": eos,
        "n_outliers": density.get("n_outliers"),
        "bulk_edge": density.get("bulk_edge"),
        "max_residual": max(residuals) if residuals else None,
    }
    out = {}
    for name in HESSIAN_METRICS:
        top = report.get(name)
        # The report's own field wins, null included: lambda_min is null unless the smallest
        # end was computed, and the top-k's smallest must not stand in for it.
        out[name] = top if name in report and not isinstance(top, dict) else derived.get(name)
    return out


def subjects(report: dict[str, Any]) -> list[Subject]:
    """The gated units of a report dict, in report order."""
    if report.get("kind") == "hessian":
        n_params = report.get("n_params")
        shape = [int(n_params)] if isinstance(n_params, int) else None
        return [Subject(HESSIAN_LAYER, shape, hessian_metrics(report))]
    out = []
    for layer in report.get("layers") or []:
        metrics = {name: layer_metric(layer, name) for name in LAYER_METRICS}
        # Statuses travel along so a missing value can say why (e.g. "failed: tail too short").
        metrics["fit_status"] = layer.get("fit_status")
        metrics["farms.fit_status"] = (layer.get("farms") or {}).get("fit_status")
        metrics["fit_reason"] = layer.get("fit_reason")
        metrics["alpha_ci"] = layer.get("alpha_ci")
        metrics["farms.alpha_ci"] = (layer.get("farms") or {}).get("alpha_ci")
        metrics["ci_level"] = layer.get("ci_level")
        metrics["farms.fit_reason"] = (layer.get("farms") or {}).get("fit_reason")
        metrics["status"] = layer.get("status")
        shape = layer.get("shape")
        out.append(Subject(
            name=str(layer.get("name")),
            shape=list(shape) if isinstance(shape, list) else None,
            metrics=metrics,
            aliases=[str(a) for a in layer.get("aliases") or []],
        ))
    return out


def metric_names(kind: str) -> tuple[str, ...]:
    """The metrics a rule may name for a report of ``kind``."""
    return HESSIAN_METRICS if kind == "hessian" else LAYER_METRICS
