"""Result types of ``analyze``: layers, skipped tensors and the report they make.

One :class:`LayerResult` per matrix, a :class:`SkippedTensor` per tensor passed over, and the
:class:`AnalysisReport` that serialises to the versioned JSON report.

The report's other pieces live in one module each and are re-exported here, so
``from spectracli.results import ...`` keeps working for every name it ever offered:
the schema (version, kinds, metric names: :mod:`spectracli.schema`), attribute access to JSON
(:mod:`spectracli.records`), the spectra's result types (:mod:`spectracli.spectral.results`,
:class:`PowerLawFit` in :mod:`spectracli.spectral.powerlaw`), the statistics of ``summary`` and
``groups`` (:mod:`spectracli.summary`) and the JSON file (:mod:`spectracli.report_file`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from spectracli.records import JsonFields, Record, as_record
from spectracli.report_file import dumps_report, load_report, looks_like_report, parse_report
from spectracli.schema import LAYER_METRICS, REPORT_KINDS, SCHEMA_VERSION, layer_metric
from spectracli.spectral.powerlaw import PowerLawFit
from spectracli.spectral.results import EsdSample, FarmsResult
from spectracli.summary import group_summaries, norm_products, summarize

__all__ = [
    "LAYER_METRICS",
    "REPORT_KINDS",
    "SCHEMA_VERSION",
    "AnalysisReport",
    "EsdSample",
    "FarmsResult",
    "JsonFields",
    "LayerResult",
    "PowerLawFit",
    "Record",
    "SkippedTensor",
    "as_record",
    "dumps_report",
    "group_summaries",
    "layer_metric",
    "load_report",
    "looks_like_report",
    "norm_products",
    "parse_report",
    "summarize",
]


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
        """The layer's JSON object: metrics, the fit's keys flattened, ``farms`` and ``esd``."""
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
    """A tensor not analysed, with the reason in words and the layer-model rule that decided."""

    name: str
    shape: list[int]
    reason: str
    rule: str | None = None  # the layer-model rule that decided (spectracli.layers)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``skipped`` of the report)."""
        return asdict(self)


@dataclass
class AnalysisReport(JsonFields):
    """What ``analyze`` returns: layers, skipped tensors, summary, and their renderings.

    ``layers`` holds one :class:`LayerResult` per analysed tensor, with attribute access
    mirroring the JSON keys; ``to_dict()`` / ``to_json()`` give the JSON report,
    ``to_pandas()`` a DataFrame, ``plot()`` the figures, and a notebook shows the summary and the
    flagged layers (``_repr_html_``).
    """

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
        """One row per analysed matrix, one flat column per JSON key.

        Nested keys are joined with ``_`` (``farms_alpha``); see
        :func:`spectracli.report.notebook.layers_frame`.

        Returns:
            A ``pandas.DataFrame`` (the ESD arrays only with ``esd``).

        Raises:
            ImportError: pandas is not installed (``pip install "spectracli[pandas]"``).
        """
        from spectracli.report.notebook import layers_frame

        return layers_frame(self.to_dict(), esd=esd)

    def plot(self) -> list[Any]:
        """The report's figures (alpha and norms by depth, ESDs) as matplotlib ``Figure``s."""
        from spectracli.report.notebook import figures

        return figures(self.to_dict())

    def compare(self, other: AnalysisReport | dict[str, Any] | str | os.PathLike[str],
                rtol: float | None = None) -> Any:
        """Layer-by-layer changes from this report (A) to ``other`` (B).

        ``other`` is a report, its dict or the path of a saved JSON report.

        Returns:
            The :class:`~spectracli.compare.ComparisonResult` of
            :func:`spectracli.compare.compare_reports`, largest relative change first.
        """
        from spectracli.compare import DEFAULT_RTOL, compare_reports

        return compare_reports(self.to_dict(), other, DEFAULT_RTOL if rtol is None else rtol)

    def _repr_html_(self) -> str:
        from spectracli.report.notebook import report_html

        return report_html(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON report (docs/metrics.md), with its summary and expert groups."""
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
