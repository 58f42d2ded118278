"""Compare two analyze reports layer by layer: what moved, by how much, largest change first.

For each layer present in both reports (matched by name) and each metric in
:data:`COMPARE_METRICS`, with ``a`` the value in report A and ``b`` the value in report B:

    delta = b - a,    ratio = b / a,    relative change = |b - a| / |a|

Infinite condition numbers (rank-deficient layers) are compared as values: inf on both sides is
no change (delta 0, ratio 1); inf on one side only is an infinite change. A missing value on
either side (a failed fit, a layer that was not finite) gives no delta and is reported as such.

A layer is *changed* when any relative change exceeds ``rtol`` (default 1e-6, which treats
floating-point noise of a recomputation as no change). A change of at most ``rtol`` is recorded
as none at all: delta 0, ratio 1, relative change 0. Layers are listed largest relative change
first; layers found in only one report are listed separately. Two reports with no layer in
common are an error: there is nothing to compare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from spectracli.errors import SpectraError
from spectracli.report.text import article, plural
from spectracli.results import layer_metric

# The metrics compared, in display order (FARMS ones reach into the layer's FARMS block).
COMPARE_METRICS = ("sigma_max", "condition_number", "alpha", "farms.alpha", "stable_rank")

DEFAULT_RTOL = 1e-6

# Settings that change the numbers compared; differing values are reported as a warning.
_SETTINGS_THAT_MATTER = (
    "fit", "farms", "farms_window", "farms_ratio", "farms_steps", "farms_grid", "normalize"
)


def _number(value: Any) -> float | None:
    """A finite or infinite float, or None for missing / NaN / non-numeric values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


@dataclass
class MetricChange:
    """One metric of one layer in A and B.

    ``delta``, ``ratio`` and ``rel_change`` are None when either side has no value; ``ratio`` is
    None when ``a`` is 0 (and ``b`` is not).
    """

    metric: str
    a: float | None
    b: float | None
    delta: float | None
    ratio: float | None
    rel_change: float | None

    @classmethod
    def of(cls, metric: str, a: Any, b: Any, rtol: float = 0.0) -> MetricChange:
        """The change from ``a`` to ``b`` of ``metric``.

        A relative change of at most ``rtol`` is no change (delta 0, ratio 1, rel_change 0), so
        recomputation noise never shows as -4.4e-16.

        Returns:
            The change; its delta, ratio and relative change are None when a side has no value;
            from 0 the ratio is None, from inf it is 0; from 0 or inf the relative change is
            inf.
        """
        a, b = _number(a), _number(b)
        if a is None or b is None:
            return cls(metric, a, b, None, None, None)
        if a == b:  # also inf == inf: the same rank-deficient layer is no change
            return cls(metric, a, b, 0.0, 1.0, 0.0)
        delta = b - a
        ratio = b / a if a != 0 and not math.isinf(a) else (None if a == 0 else 0.0)
        rel = abs(delta) / abs(a) if a != 0 and not math.isinf(a) else math.inf
        if rel <= rtol:
            return cls(metric, a, b, 0.0, 1.0, 0.0)
        return cls(metric, a, b, delta, ratio, rel)

    def to_dict(self) -> dict[str, Any]:
        """The change as JSON (``metrics`` of a compared layer)."""
        return {
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "ratio": self.ratio,
            "rel_change": self.rel_change,
        }


@dataclass
class LayerComparison:
    """A layer present in both reports: the change of every compared metric."""

    name: str
    kind: str | None
    shape_a: list[int] | None
    shape_b: list[int] | None
    changes: dict[str, MetricChange]
    changed: bool

    @property
    def shape_changed(self) -> bool:
        """Whether the matrix shape differs between A and B."""
        return self.shape_a != self.shape_b

    @property
    def max_rel_change(self) -> float | None:
        """The largest relative change over the metrics with a value on both sides."""
        rels = [c.rel_change for c in self.changes.values() if c.rel_change is not None]
        return max(rels) if rels else None

    @property
    def largest_metric(self) -> str | None:
        """The metric with the largest relative change, None when nothing changed."""
        best: tuple[float, str] | None = None
        for metric, change in self.changes.items():
            if change.rel_change is not None and (best is None or change.rel_change > best[0]):
                best = (change.rel_change, metric)
        return best[1] if best and best[0] > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The compared layer as JSON."""
        return {
            "name": self.name,
            "kind": self.kind,
            "shape_a": self.shape_a,
            "shape_b": self.shape_b,
            "shape_changed": self.shape_changed,
            "changed": self.changed,
            "max_rel_change": self.max_rel_change,
            "largest_metric": self.largest_metric,
            "metrics": {m: c.to_dict() for m, c in self.changes.items()},
        }


@dataclass
class ComparisonResult:
    """Layer-by-layer comparison of report A (before) with report B (after)."""

    source_a: dict[str, Any]
    source_b: dict[str, Any]
    layers: list[LayerComparison]  # largest relative change first
    only_a: list[str]
    only_b: list[str]
    rtol: float = DEFAULT_RTOL
    metrics: tuple[str, ...] = COMPARE_METRICS
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[LayerComparison]:
        """The common layers with a metric changed beyond ``rtol``."""
        return [layer for layer in self.layers if layer.changed]

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON (``kind: "compare"``)."""
        return {
            "kind": "compare",
            "source_a": self.source_a,
            "source_b": self.source_b,
            "metrics": list(self.metrics),
            "rtol": self.rtol,
            "n_common": len(self.layers),
            "n_changed": len(self.changed),
            "layers": [layer.to_dict() for layer in self.layers],
            "only_a": self.only_a,
            "only_b": self.only_b,
            "warnings": self.warnings,
        }


PASS_A_REPORT = ("an AnalysisReport (spectracli.analyze(...)), its to_dict(), or the path of a "
                 "saved JSON report")


def as_report(report: Any, label: str) -> Any:
    """``report`` as a report dict.

    Args:
        report: a report dict, an object with ``to_dict()`` (``AnalysisReport``) or the path
            of a saved JSON report.
        label: how messages name it (``A``, ``B``).

    Returns:
        ``to_dict()`` of an object that has it, the read report of a ``.json`` path
        (:func:`spectracli.results.load_report`), anything else as it is.

    Raises:
        SpectraError: a path that is not a saved JSON report (a checkpoint: analyse it first).
    """
    import os

    if hasattr(report, "to_dict"):
        return report.to_dict()
    if isinstance(report, (str, os.PathLike)):
        from spectracli.results import load_report, looks_like_report

        if looks_like_report(report):
            return load_report(report)
        raise SpectraError(
            f"compare: {label} is the path {str(report)!r}, not a saved JSON report; pass "
            f"{PASS_A_REPORT} (for a checkpoint: spectracli.analyze({str(report)!r}))")
    return report


def _check_analyze(report: dict[str, Any], label: str) -> list[dict[str, Any]]:
    if not isinstance(report, dict):
        raise SpectraError(f"compare needs two analyze reports; {label} is "
                           f"{article(type(report).__name__)}: pass {PASS_A_REPORT}")
    if report.get("kind") != "analyze":
        raise SpectraError(f"compare needs two analyze reports; {label} is "
                           f"{article(str(report.get('kind')))} report")
    layers = report.get("layers")
    if not isinstance(layers, list):
        raise SpectraError(f"compare: report {label} has no 'layers' list")
    return layers


def _sort_key(layer: LayerComparison) -> tuple[float, ...]:
    rel = layer.max_rel_change
    return (-(rel if rel is not None else -1.0),)


def compare_reports(
    a: dict[str, Any] | Any, b: dict[str, Any] | Any, rtol: float = DEFAULT_RTOL
) -> ComparisonResult:
    """Compare analyze reports ``a`` (before) and ``b`` (after), matching layers by name.

    Each is a report dict, an ``AnalysisReport`` or the path of a saved JSON report
    (:func:`as_report`).

    Args:
        a: the analyze report before.
        b: the analyze report after.
        rtol: relative changes up to this are no change (recomputation noise).

    Returns:
        The common layers, largest relative change first, and the layers of one side only.

    Raises:
        SpectraError: ``rtol`` is not a finite number >= 0, either report is not an analyze
            report, or no layer name is common to both.
    """
    if not (isinstance(rtol, (int, float)) and rtol >= 0 and math.isfinite(rtol)):
        raise SpectraError(f"rtol must be a finite number >= 0, got {rtol!r}")
    a, b = as_report(a, "A"), as_report(b, "B")
    layers_a = _check_analyze(a, "A")
    layers_b = _check_analyze(b, "B")
    by_name_b = {layer.get("name"): layer for layer in layers_b}
    names_a = [layer.get("name") for layer in layers_a]
    set_a = set(names_a)
    common = [layer for layer in layers_a if layer.get("name") in by_name_b]
    if not common:
        raise SpectraError(
            f"no layer in common between A ({plural(len(layers_a), 'layer')}) and B "
            f"({plural(len(layers_b), 'layer')}): layers are matched by name"
        )
    compared: list[LayerComparison] = []
    for la in common:
        lb = by_name_b[la.get("name")]
        changes = {
            m: MetricChange.of(m, layer_metric(la, m), layer_metric(lb, m), rtol)
            for m in COMPARE_METRICS
        }
        changed = any(
            c.rel_change is not None and c.rel_change > rtol for c in changes.values()
        ) or any((c.a is None) != (c.b is None) for c in changes.values())
        shape_a, shape_b = la.get("shape"), lb.get("shape")
        layer = LayerComparison(
            name=str(la.get("name")),
            kind=la.get("kind"),
            shape_a=list(shape_a) if shape_a is not None else None,
            shape_b=list(shape_b) if shape_b is not None else None,
            changes=changes,
            changed=changed or shape_a != shape_b,
        )
        compared.append(layer)
    # Stable sort: equal changes keep the depth order of A.
    compared.sort(key=_sort_key)

    warnings = []
    for layer in compared:
        if layer.shape_changed:
            warnings.append(f"{layer.name}: shape {layer.shape_a} in A but {layer.shape_b} in B")
    sa, sb = a.get("settings") or {}, b.get("settings") or {}
    for key in _SETTINGS_THAT_MATTER:
        if key in sa and key in sb and sa[key] != sb[key]:
            warnings.append(
                f"setting {key!r} differs (A: {sa[key]!r}, B: {sb[key]!r}): "
                "differences may come from the settings, not the weights"
            )
    return ComparisonResult(
        source_a=dict(a.get("source") or {}),
        source_b=dict(b.get("source") or {}),
        layers=compared,
        only_a=[str(n) for n in names_a if n not in by_name_b],
        only_b=[str(layer.get("name")) for layer in layers_b if layer.get("name") not in set_a],
        rtol=float(rtol),
        warnings=warnings,
    )
