"""Markdown rendering of a report (analyze or Hessian), fit for ``$GITHUB_STEP_SUMMARY``.

The same content as the HTML report, in text and tables: what was analysed and how, the flagged
layers first and why, the per-layer table, and the skipped tensors with their reasons.

Numbers are printed by ``report.numbers.fmt_num`` to 6 significant digits: a number read back from
the Markdown is within a relative 5e-6 of the report's value (the JSON report is the exact one);
``inf`` is printed as ``inf`` and a missing value as ``-``.

The flag rules (:func:`flag_reasons`) are shared with the HTML report. ``alpha`` outside [2, 6]
is labelled a heuristic: it is the range where trained layers are commonly seen (Martin &
Mahoney 2021), not a verdict on a layer.
"""

from __future__ import annotations

import math
from typing import Any

from spectracli.errors import ReportError
from spectracli.report.hessian import (
    condition_text,
    convergence_advice,
    eigen_rows,
    eigen_title,
    outlier_count,
    outlier_text,
)
from spectracli.report.numbers import ci_half_width, fmt_num
from spectracli.report.text import printable

ALPHA_BAND = (2.0, 6.0)
MISSING = "-"


def format_bytes(n: Any) -> str:
    """A byte count in binary units (``512 B``, ``1.5 MiB``); ``-`` for a non-number."""
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return MISSING
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - unreachable


def format_shape(shape: Any) -> str:
    """A shape as ``768x3072`` (``scalar`` for ``()``); ``-`` for a non-shape."""
    if not isinstance(shape, (list, tuple)):
        return MISSING
    if not shape:
        return "scalar"
    return "x".join(str(d) for d in shape)


def _ok(status: Any) -> bool:
    return str(status or "").startswith("ok")


def flag_reasons(layer: dict[str, Any]) -> list[str]:
    """Why a layer deserves a look, in words.

    Not ok, failed fits, rank deficiency, alpha outside [2, 6], and the warnings analyze
    attached. A rule whose finding a warning already states is not repeated (reports from
    analyze carry them; hand-made or older ones may not).

    Returns:
        The reasons; empty when the layer is not flagged.
    """
    warnings = [str(w) for w in layer.get("warnings") or []]

    def said(test: Any) -> bool:
        return any(test(w) for w in warnings)

    reasons: list[str] = []
    status = layer.get("status")
    if status != "ok":
        reasons.append(f"status {status!s}: metrics not computed")
    farms = layer.get("farms") if isinstance(layer.get("farms"), dict) else None
    if status == "ok":
        for label, block in (("alpha", layer), ("FARMS alpha", farms)):
            if block is None or _ok(block.get("fit_status")):
                continue
            if not said(lambda w, label=label: w.startswith(f"{label} fit")):
                reasons.append(f"{label} fit {block.get('fit_status') or 'missing'}")
    if layer.get("rank_deficient") and not said(lambda w: "rank deficient" in w):
        reasons.append(
            f"rank deficient (numerical rank {fmt_num(layer.get('numerical_rank'), 6)}): "
            "condition number is infinite"
        )
    reasons += _alpha_band_reasons(layer, farms, said)
    return reasons + warnings


def _alpha_band_reasons(layer: dict[str, Any], farms: dict[str, Any] | None,
                        said: Any) -> list[str]:
    """The alpha and FARMS alpha outside [2, 6], unless a warning (``said``) states it already.

    Returns:
        One reason per alpha outside the band.
    """
    lo, hi = ALPHA_BAND
    reasons = []
    for label, value in (("alpha", layer.get("alpha")),
                         ("FARMS alpha", farms.get("alpha") if farms else None)):
        if not (isinstance(value, (int, float)) and math.isfinite(value)) or lo <= value <= hi:
            continue
        if not said(lambda w, label=label: w.startswith(f"{label} ") and "[2, 6]" in w):
            side = "below 2 (very heavy tail)" if value < lo else "above 6 (light tail)"
            reasons.append(
                f"{label} {fmt_num(value, 3)} is {side}; heuristic range [2, 6], "
                "not a verdict on training"
            )
    return reasons


# Columns of the per-layer table: (header, how to get the cell value from a layer dict).
LAYER_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("layer", lambda la: la.get("name")),
    ("kind", lambda la: la.get("kind")),
    ("matrix", lambda la: format_shape(la.get("matrix_shape"))
     + (f" x{la['n_matrices']}" if (la.get("n_matrices") or 1) > 1 else "")),
    ("sigma_max", lambda la: la.get("sigma_max")),
    ("sigma_min", lambda la: la.get("sigma_min")),
    ("condition", lambda la: la.get("condition_number")),
    ("stable rank", lambda la: la.get("stable_rank")),
    ("alpha", lambda la: la.get("alpha")),
    ("alpha ±", lambda la: ci_half_width(la)),  # half-width of alpha_ci
    ("xmin", lambda la: la.get("xmin")),
    ("tail", lambda la: la.get("tail_size")),
    ("KS", lambda la: la.get("ks_distance")),
    ("FARMS alpha", lambda la: (la.get("farms") or {}).get("alpha")),
    ("FARMS alpha ±", lambda la: ci_half_width(la.get("farms"))),
    ("alpha_w", lambda la: la.get("alpha_weighted")),
    ("spikes", lambda la: la.get("num_spikes")),
    ("fit", lambda la: la.get("fit_status")),
    ("status", lambda la: la.get("status")),
)


def _cell(value: Any) -> str:
    """A Markdown table cell: escape pipes, keep it on one line."""
    text = printable(fmt_num(value, 6))
    return " ".join(text.replace("|", "\\|").split()) or MISSING


def md_table(headers: list[str], rows: list[list[Any]], align_right: set[int] | None = None) -> str:
    """A Markdown table; cells formatted and escaped, ``align_right`` column indices right."""
    align_right = align_right or set()
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |"]
    lines.append(
        "|" + "|".join("---:" if i in align_right else "---" for i in range(len(headers))) + "|"
    )
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def source_line(source: dict[str, Any]) -> str:
    """The report's ``source`` in one line: path, (format, size, tensors), base, the rest."""
    if not source:
        return MISSING
    parts = []
    if source.get("path"):
        parts.append(f"`{source['path']}`")
    details = [str(source[k]) for k in ("format",) if source.get(k)]
    if source.get("size_bytes") is not None:
        details.append(format_bytes(source.get("size_bytes")))
    if source.get("n_tensors") is not None:
        details.append(f"{source['n_tensors']} tensors")
    if details:
        parts.append("(" + ", ".join(details) + ")")
    base = source.get("base")
    if isinstance(base, dict) and base.get("path"):
        parts.append(f"minus base `{base['path']}`")
    for key, value in source.items():
        if key not in ("path", "format", "size_bytes", "n_tensors", "base") and value is not None:
            parts.append(f"{key}: `{value}`")
    return " ".join(parts) or MISSING


def summary_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """The analyze summary as (label, value) pairs, in reading order."""
    s = report.get("summary") or {}
    layers = report.get("layers") or []
    n_flagged = sum(1 for layer in layers if flag_reasons(layer))
    return [
        ("layers analysed", s.get("n_layers", len(layers))),
        ("layers flagged", n_flagged),
        ("tensors skipped", s.get("n_skipped", len(report.get("skipped") or []))),
        ("fits failed", s.get("n_fit_failed")),
        ("rank deficient", s.get("n_rank_deficient")),
        ("status not ok", s.get("n_not_ok")),
        ("mean alpha", s.get("mean_alpha")),
        ("mean FARMS alpha", s.get("mean_farms_alpha")),
        ("mean alpha_weighted", s.get("mean_alpha_weighted")),
        ("mean stable rank", s.get("mean_stable_rank")),
        ("max sigma_max", s.get("max_sigma_max")),
        ("max condition number", s.get("max_condition_number")),
    ]


def hessian_summary_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """The Hessian summary as (label, value) pairs, in reading order."""
    eig = report.get("eigenvalues") or []
    converged = report.get("converged") or []
    rows: list[tuple[str, Any]] = [
        ("operator", report.get("operator")),
        ("parameters", report.get("n_params")),
        ("samples", report.get("n_samples")),
        ("loss", report.get("loss")),
        ("gradient norm", report.get("grad_norm")),
        ("lambda_max", report.get("lambda_max", eig[0] if eig else None)),
        ("lambda_min", report.get("lambda_min")),
        ("eigenvalues computed", len(eig)),
        ("converged", f"{sum(1 for c in converged if c)} of {len(converged)}"),
        ("Hessian-vector products", report.get("hvp_count")),
        ("condition number", condition_text(report)),
        ("multiplicities verified", report.get("multiplicity_verified")),
    ]
    eos = report.get("edge_of_stability")
    if isinstance(eos, dict):
        for key, value in eos.items():
            rows.append((f"edge of stability: {key}", value))
    elif eos is not None:
        rows.append(("edge of stability (see docs/hessian.md)", eos))
    trace = report.get("trace")
    if isinstance(trace, dict):
        rows.append(("trace (exact)" if trace.get("exact") else "trace (Hutch++)",
                     trace.get("estimate")))
        rows.append(("trace stderr", trace.get("stderr")))
        rows.append(("trace matvecs", trace.get("n_matvecs")))
    density = report.get("density")
    if isinstance(density, dict):
        rows.append(("density bulk edge", density.get("bulk_edge")))
        rows.append(("density lower bulk edge", density.get("bulk_edge_low")))
        rows.append(("density outliers", outlier_count(density)))
    return rows


def check_renderable(report: Any) -> str:
    """The kind of a report dict that the renderers can show.

    Returns:
        ``analyze``, ``hessian`` or ``track``.

    Raises:
        ReportError: not a dict, another kind, or a report without its main list.
    """
    if not isinstance(report, dict):
        raise ReportError(f"expected a report dict, got {type(report).__name__}")
    kind = report.get("kind")
    if kind == "analyze":
        if not isinstance(report.get("layers"), list):
            raise ReportError("analyze report without a 'layers' list")
        return kind
    if kind == "hessian":
        if not isinstance(report.get("eigenvalues"), list):
            raise ReportError("hessian report without an 'eigenvalues' list")
        return kind
    if kind == "track":
        if not isinstance(report.get("steps"), list):
            raise ReportError("track report without a 'steps' list")
        return kind
    raise ReportError(f"cannot render a report of kind {kind!r}")


def _settings_md(settings: dict[str, Any]) -> str:
    if not settings:
        return "_none recorded_"
    return ", ".join(f"`{k}={_setting_value(v)}`" for k, v in settings.items())


def _setting_value(value: Any) -> str:
    if isinstance(value, float):
        return fmt_num(value, 6)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_setting_value(v) for v in value) + "]"
    return str(value)


def _header(report: dict[str, Any], title: str) -> list[str]:
    lines = [f"# {title}", ""]
    lines.append(f"- **Source**: {source_line(report.get('source') or {})}")
    lines.append(f"- **Settings**: {_settings_md(report.get('settings') or {})}")
    created = report.get("created")
    lines.append(
        f"- **Created**: {created or MISSING} by spectracli {report.get('tool_version') or '?'}"
    )
    timing = report.get("timing") or {}
    if timing.get("total_s") is not None:
        lines.append(f"- **Time**: {fmt_num(timing['total_s'], 3)} s")
    lines.append("")
    return lines


def render_analyze_markdown(report: dict[str, Any]) -> str:
    """The analyze report as Markdown: summary, flagged layers, layers, skipped tensors."""
    layers = report.get("layers") or []
    lines = _header(report, "spectracli weight spectra")
    lines += ["## Summary", ""]
    lines.append(md_table(["metric", "value"], [list(r) for r in summary_rows(report)], {1}))
    lines.append("")

    flagged = [(layer, flag_reasons(layer)) for layer in layers]
    flagged = [(layer, reasons) for layer, reasons in flagged if reasons]
    lines += [f"## Flagged layers ({len(flagged)})", ""]
    if flagged:
        lines.append(
            md_table(["layer", "why"], [[la.get("name"), "; ".join(r)] for la, r in flagged])
        )
        lines += ["", "_alpha outside [2, 6] is a heuristic, not a verdict on training; a failed "
                  "fit says nothing about the layer._"]
    else:
        lines.append("No layer flagged.")
    lines.append("")

    lines += [f"## Layers ({len(layers)})", ""]
    headers = ["#"] + [h for h, _ in LAYER_COLUMNS]
    rows = [[i] + [get(layer) for _, get in LAYER_COLUMNS] for i, layer in enumerate(layers)]
    numeric = {0} | {i + 1 for i, (h, _) in enumerate(LAYER_COLUMNS)
                     if h not in ("layer", "kind", "matrix", "fit", "status")}
    lines.append(md_table(headers, rows, numeric) if rows else "No layer analysed.")
    lines.append("")

    skipped = report.get("skipped") or []
    lines += [f"## Skipped tensors ({len(skipped)})", ""]
    if skipped:
        lines.append(
            md_table(
                ["tensor", "shape", "reason"],
                [[s.get("name"), format_shape(s.get("shape")), s.get("reason")] for s in skipped],
            )
        )
    else:
        lines.append("Nothing skipped.")
    lines.append("")
    return "\n".join(lines)


def render_hessian_markdown(report: dict[str, Any]) -> str:
    """The Hessian report as Markdown: summary, eigenvalues with residuals, SLQ density."""
    lines = _header(report, "spectracli Hessian spectrum")
    lines += ["## Summary", ""]
    lines.append(md_table(["metric", "value"], [list(r) for r in hessian_summary_rows(report)],
                          {1}))
    lines.append("")
    lines += [f"## {eigen_title(report)}", ""]
    rows = [list(r) for r in eigen_rows(report)]
    lines.append(md_table(["k", "eigenvalue", "residual", "converged"], rows, {1, 2}))
    lines.append("")
    not_conv = [r[0] for r in rows if r[3] is False]
    if not_conv:
        lines += [f"**Not converged**: eigenpairs {', '.join(map(str, not_conv))} "
                  "(their residuals are above the tolerance).", ""]
        advice = convergence_advice(report)
        if advice:
            lines += [f"To converge: {advice}.", ""]
    density = report.get("density")
    if isinstance(density, dict):
        lines += ["## Spectral density (SLQ)", ""]
        lines.append(f"- bulk edge: {fmt_num(density.get('bulk_edge'), 6)}")
        lines.append(f"- {outlier_text(density)}")
        lines.append("")
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    """The Markdown report of an analyze or Hessian report dict."""
    kind = check_renderable(report)
    if kind == "track":
        from spectracli.report.track import render_track_markdown

        return render_track_markdown(report)
    if kind == "hessian":
        return render_hessian_markdown(report)
    return render_analyze_markdown(report)
