"""Result types of ``analyze`` and the versioned JSON report they serialise to.

The JSON report is the one input, besides a checkpoint, that ``report``, ``plot``, ``gate`` and
``compare`` accept, so nothing is computed twice. Downstream code reads the plain dict form
(``AnalysisReport.to_dict()`` or a loaded file, checked by :func:`load_report`).

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
report (``"kind": "track"``, a run's checkpoints by step) in ``spectracli.track``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spectracli.errors import ReportError

# The fit result is owned by the math that makes it; re-exported here with the other results.
from spectracli.spectral.powerlaw import PowerLawFit  # noqa: F401

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


class Record(dict):
    """A JSON object of a report with attribute access to its keys: ``rec.alpha`` is
    ``rec["alpha"]``, nested objects included (``rec.farms.alpha``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return as_record(self[name])
        except KeyError:
            raise AttributeError(f"no field {name!r}; fields: {', '.join(self)}") from None

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *(k for k in self if isinstance(k, str))]


def as_record(value: Any) -> Any:
    """Dicts (also inside lists) as :class:`Record`; anything else as it is."""
    if isinstance(value, dict) and not isinstance(value, Record):
        return Record(value)
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return [as_record(v) for v in value]
    return value


class JsonFields:
    """Attribute access mirrors the JSON: every key of ``to_dict()`` that is not an attribute
    already is read from it (``layer.alpha``, ``layer.farms.alpha``), so a new field of the
    report is an attribute without further code."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy, pickle and dataclass machinery: never the JSON
            raise AttributeError(name)
        data = self.to_dict()
        if name in data:
            return as_record(data[name])
        raise AttributeError(
            f"{type(self).__name__} has no field {name!r}; JSON keys: {', '.join(data)}"
        )

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.to_dict()})


@dataclass
class EsdSample:
    """The eigenvalues of an ESD as stored in the report, for plots without recomputation.

    ``values`` are all eigenvalues (ascending) when there are at most ``MAX_STORED``; otherwise
    ``MAX_STORED`` evenly spaced quantiles of them (``quantiles`` true), which keeps the ECDF
    and the log-histogram shape.
    """

    values: list[float]
    count: int
    quantiles: bool

    MAX_STORED = 2000

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "count": self.count, "quantiles": self.quantiles}


@dataclass
class FarmsResult(JsonFields):
    """FARMS: the pooled ESD of fixed-aspect-ratio windows, fitted once."""

    fit: PowerLawFit
    window_rows: int
    window_cols: int
    n_windows: int
    grid: tuple[int, int]  # offsets per dimension (rows, cols)
    esd: EsdSample | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.fit.to_dict()
        out.update(
            window_rows=self.window_rows,
            window_cols=self.window_cols,
            n_windows=self.n_windows,
            grid=list(self.grid),
            esd=self.esd.to_dict() if self.esd else None,
        )
        return out


@dataclass
class LayerResult(JsonFields):
    """Everything analyze reports for one weight tensor (one ESD; conv slices pooled)."""

    name: str
    kind: str  # linear | conv1d | conv2d | conv3d | embedding
    shape: list[int]  # shape of the (main) stored tensor it is built from
    matrix_shape: list[int]  # (m, n) of each matrix analysed
    n_matrices: int  # 1, or prod(k) for a conv kernel read as slices
    dtype: str
    status: str  # "ok" | "nonfinite" | "zero"
    # The stored quantisation when the format has one (GGUF "Q4_K", "F16", ...): the spectra are
    # of the dequantised matrix, ``dtype`` is what it was dequantised to.
    quant_type: str | None = None
    warnings: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    n_eigenvalues: int = 0
    sigma_max: float | None = None
    sigma_min: float | None = None
    condition_number: float | None = None
    rank_deficient: bool | None = None
    lambda_max: float | None = None
    frobenius_norm: float | None = None
    stable_rank: float | None = None
    entropy: float | None = None
    numerical_rank: int | None = None
    nuclear_norm: float | None = None
    spectral_gap: float | None = None
    spectral_gap_ratio: float | None = None
    rank_tolerance: float | None = None
    mp_sigma2: float | None = None
    mp_bulk_edge: float | None = None
    num_spikes: int | None = None
    fit: PowerLawFit | None = None
    farms: FarmsResult | None = None
    esd: EsdSample | None = None
    # Provenance (spectracli.layers): the rule that made this matrix, the stored tensors it is
    # built from, the part of a fused tensor (``q``, ``f``, ``7.up``), the conv view (``slices``
    # | ``unfold``), whether the tensor is stored (in, out) and analysed transposed, and the
    # group its per-expert results pool into. Absent from reports before these fields existed.
    rule: str | None = None
    sources: list[str] = field(default_factory=list)
    part: str | None = None
    conv_view: str | None = None
    transposed: bool = False
    group: str | None = None
    rank: int = 0  # the process that solved it (torchrun: spectracli.distributed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in (
            "name", "kind", "rule", "sources", "part", "conv_view", "transposed", "group",
            "rank", "shape", "matrix_shape", "n_matrices", "dtype", "quant_type", "status",
            "warnings", "aliases", "n_eigenvalues", "sigma_max", "sigma_min",
            "condition_number", "rank_deficient", "lambda_max", "frobenius_norm",
            "stable_rank", "entropy", "numerical_rank", "mp_sigma2", "mp_bulk_edge",
            "num_spikes", "nuclear_norm", "spectral_gap", "spectral_gap_ratio", "rank_tolerance",
        ):
            out[key] = getattr(self, key)
        fit = self.fit.to_dict() if self.fit else {}
        for key in ("alpha", "xmin", "tail_size", "ks_distance", "alpha_weighted",
                    "log_alpha_norm", "fit_status", "fit_method", "fit_reason",
                    "n_distinct_tail", "ks_critical", "alpha_se", "alpha_ci", "ci_level",
                    "ci_method", "ci_resamples"):
            out[key] = fit.get(key)
        out["farms"] = self.farms.to_dict() if self.farms else None
        out["esd"] = self.esd.to_dict() if self.esd else None
        return out


@dataclass
class SkippedTensor:
    name: str
    shape: list[int]
    reason: str
    rule: str | None = None  # the layer-model rule that decided (spectracli.layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AnalysisReport(JsonFields):
    """What ``analyze`` returns: ``layers`` (one :class:`LayerResult` per analysed tensor, with
    attribute access mirroring the JSON keys), ``skipped``, ``summary``; ``to_dict()`` /
    ``to_json()`` give the JSON report, ``to_pandas()`` a DataFrame, ``plot()`` the figures, and
    a notebook shows the summary and the flagged layers (``_repr_html_``)."""

    tool_version: str
    created: str
    source: dict[str, Any]
    settings: dict[str, Any]
    layers: list[LayerResult]
    skipped: list[SkippedTensor]
    timing: dict[str, float]

    def __post_init__(self) -> None:
        self.source, self.settings = Record(self.source), Record(self.settings)
        self.timing = Record(self.timing)

    @property
    def summary(self) -> Record:
        """Means and extremes over the layers (the JSON's ``summary``)."""
        return Record(summarize([layer.to_dict() for layer in self.layers], len(self.skipped)))

    @property
    def flagged(self) -> dict[str, list[str]]:
        """``{layer name: reasons}`` for the layers that deserve a look (as in the reports)."""
        from spectracli.report.markdown import flag_reasons

        out = {}
        for layer in self.to_dict()["layers"]:
            reasons = flag_reasons(layer)
            if reasons:
                out[layer["name"]] = reasons
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON report as strict JSON text (inf and nan as strings: :func:`dumps_report`)."""
        return dumps_report(self, indent=indent)

    def to_pandas(self, esd: bool = False) -> Any:
        """One row per analysed matrix, one flat column per JSON key (nested keys joined with
        ``_``: ``farms_alpha``); see :func:`spectracli.report.notebook.layers_frame`.

        Raises:
            ImportError: pandas is not installed (``pip install "spectracli[pandas]"``).
        """
        from spectracli.report.notebook import layers_frame

        return layers_frame(self.to_dict(), esd=esd)

    def plot(self) -> list[Any]:
        """The report's figures (alpha and norms by depth, ESDs) as matplotlib ``Figure``s."""
        from spectracli.report.notebook import figures

        return figures(self.to_dict())

    def compare(self, other: AnalysisReport | dict[str, Any], rtol: float | None = None) -> Any:
        """Layer-by-layer changes from this report (A) to ``other`` (B):
        :func:`spectracli.compare.compare_reports`."""
        from spectracli.compare import DEFAULT_RTOL, compare_reports

        b = other.to_dict() if hasattr(other, "to_dict") else other
        return compare_reports(self.to_dict(), b, DEFAULT_RTOL if rtol is None else rtol)

    def _repr_html_(self) -> str:
        from spectracli.report.notebook import report_html

        return report_html(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        layers = [layer.to_dict() for layer in self.layers]
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "analyze",
            "tool_version": self.tool_version,
            "created": self.created,
            "source": self.source,
            "settings": self.settings,
            "layers": layers,
            "skipped": [s.to_dict() for s in self.skipped],
            "summary": summarize(layers, len(self.skipped)),
            "groups": group_summaries(layers),
            "timing": self.timing,
        }


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _mean(values: list[Any]) -> float | None:
    vals = _finite(values)
    return sum(vals) / len(vals) if vals else None


def group_summaries(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pooled figures of the results that share a ``group`` (the experts of one stacked tensor).

    Per group, in first-member order: ``name``, ``rule``, ``n_members``, ``n_not_ok``,
    ``worst_condition_number`` (inf when any member is rank deficient), ``max_sigma_max``,
    ``mean_alpha``, ``min_alpha``, ``max_alpha``, ``mean_farms_alpha`` (over ok fits),
    ``mean_stable_rank``.
    """
    members: dict[str, list[dict[str, Any]]] = {}
    for layer in layers:
        if layer.get("group"):
            members.setdefault(layer["group"], []).append(layer)
    out = []
    for name, group in members.items():
        conds = [layer.get("condition_number") for layer in group]
        # Fit figures over ok fits only: a number from a fit that is not ok is not pooled.
        alphas = _finite([layer.get("alpha") for layer in group
                          if layer.get("fit_status") in (None, "ok")])
        out.append({
            "name": name,
            "rule": group[0].get("rule"),
            "n_members": len(group),
            "n_not_ok": sum(1 for layer in group if layer.get("status") != "ok"),
            "worst_condition_number": (
                math.inf if any(c == math.inf for c in conds if isinstance(c, float))
                else max(_finite(conds), default=None)
            ),
            "max_sigma_max": max(_finite([layer.get("sigma_max") for layer in group]),
                                 default=None),
            "mean_alpha": _mean(alphas),
            "min_alpha": min(alphas, default=None),
            "max_alpha": max(alphas, default=None),
            "mean_farms_alpha": _mean([(layer.get("farms") or {}).get("alpha")
                                       for layer in group
                                       if (layer.get("farms") or {}).get("fit_status")
                                       in (None, "ok")]),
            "mean_stable_rank": _mean([layer.get("stable_rank") for layer in group]),
        })
    return out


def summarize(layers: list[dict[str, Any]], n_skipped: int) -> dict[str, Any]:
    """Means and extremes of the main metrics over the analysed layers (finite values only)."""
    conds = [layer.get("condition_number") for layer in layers]
    finite_conds = _finite(conds)
    # Means of fit numbers are over ok fits only: a number from a failed fit is not averaged in.
    ok = [layer for layer in layers if layer.get("fit_status") == "ok"]
    farms_alpha = [
        (layer.get("farms") or {}).get("alpha") for layer in layers
        if (layer.get("farms") or {}).get("fit_status") == "ok"
    ]
    return {
        "n_layers": len(layers),
        "n_skipped": n_skipped,
        "n_fit_failed": sum(
            1 for layer in layers if not str(layer.get("fit_status") or "").startswith("ok")
        ),
        "n_rank_deficient": sum(1 for layer in layers if layer.get("rank_deficient")),
        "n_not_ok": sum(1 for layer in layers if layer.get("status") != "ok"),
        "mean_alpha": _mean([layer.get("alpha") for layer in ok]),
        "mean_farms_alpha": _mean(farms_alpha),
        "mean_alpha_weighted": _mean([layer.get("alpha_weighted") for layer in ok]),
        "mean_stable_rank": _mean([layer.get("stable_rank") for layer in layers]),
        "mean_log10_sigma_max": _mean(
            [math.log10(v) for v in _finite([layer.get("sigma_max") for layer in layers]) if v > 0]
        ),
        "max_sigma_max": max(_finite([layer.get("sigma_max") for layer in layers]), default=None),
        "max_condition_number": (
            math.inf if any(c == math.inf for c in conds if isinstance(c, float))
            else max(finite_conds, default=None)
        ),
        **norm_products(layers),
    }


def _log10_sum(values: list[Any]) -> float | None:
    """sum of log10 v over the values; -inf if any is 0, None if any is missing or none given."""
    if not values or any(not isinstance(v, (int, float)) or v != v or v < 0 for v in values):
        return None
    if any(v == 0 for v in values):
        return -math.inf
    return sum(math.log10(v) for v in values)


def norm_products(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """log10 of the products of the layers' spectral and Frobenius norms (docs/metrics.md).

    Over the analysed layers that are linear maps (every kind but ``embedding``, a lookup); a
    zero layer makes a product -inf, a layer without a value (NaN/Inf weights) makes it None.
    A conv layer contributes its largest slice norm, a lower bound on the convolution's
    operator norm. These are the products in
    the norm-based generalisation bounds of Bartlett, Foster & Telgarsky (2017) and Neyshabur,
    Bhojanapalli & Srebro (2018); None too when no layer counts.
    """
    counted = [layer for layer in layers if layer.get("kind") != "embedding"]
    return {
        "n_norm_product_layers": len(counted),
        "log10_spectral_norm_product": _log10_sum([la.get("sigma_max") for la in counted]),
        "log10_frobenius_norm_product": _log10_sum([la.get("frobenius_norm") for la in counted]),
    }


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan" (documented)."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _restore(obj: Any) -> Any:
    if isinstance(obj, str) and obj in ("inf", "-inf", "nan"):
        return float(obj)
    if isinstance(obj, dict):
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    return obj


def dumps_report(report: dict[str, Any] | Any, indent: int | None = 2) -> str:
    """Serialise a report dict (or anything with ``to_dict``) to strict JSON."""
    data = report.to_dict() if hasattr(report, "to_dict") else report
    return json.dumps(_clean(data), indent=indent, default=_json_default, allow_nan=False)


def parse_report(text: str, origin: str = "<string>") -> dict[str, Any]:
    """Parse and check a report: a JSON object with a known ``kind`` and our schema version."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{origin} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "kind" not in data:
        raise ReportError(f"{origin} is not a spectracli report (no schema_version/kind)")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "upgrade spectracli" if newer else "re-run analyze with this version"
        raise ReportError(
            f"{origin} has schema_version {version!r}; this spectracli reads "
            f"{SCHEMA_VERSION} ({hint})"
        )
    if data["kind"] not in REPORT_KINDS:
        raise ReportError(f"{origin} has unknown report kind {data['kind']!r}")
    if data["kind"] == "analyze" and not isinstance(data.get("layers"), list):
        raise ReportError(f"{origin} is an analyze report without a 'layers' list")
    if data["kind"] == "track" and not (
        isinstance(data.get("steps"), list)
        and all(isinstance(s, dict) and isinstance(s.get("layers"), list) for s in data["steps"])
    ):
        raise ReportError(f"{origin} is a track report without a 'steps' list of layer results")
    return _restore(data)


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a saved report; a one-line :class:`ReportError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such report file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read ({exc})") from None
    return parse_report(text, str(path))


def layer_metric(layer: dict[str, Any], metric: str) -> Any:
    """A metric of a layer dict by name; ``farms.alpha`` reaches into the FARMS block."""
    if metric.startswith("farms."):
        return (layer.get("farms") or {}).get(metric.split(".", 1)[1])
    return layer.get(metric)


def looks_like_report(path: str | Path) -> bool:
    """True for a ``.json`` path: a report rather than a checkpoint."""
    return str(path).lower().endswith(".json")
