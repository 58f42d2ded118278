"""Renderers of a track report (``kind: "track"``): a run's checkpoints, one result per step.

- table / markdown: one row per step (summary of the weights, and the Hessian when present);
- csv: long format, one row per (step, layer, metric, value); the Hessian's numbers under the
  pseudo-layer ``hessian`` and the per-step summary under ``summary``;
- html: the table plus the figures of :func:`track_figures`;
- json: the report itself.
"""

from __future__ import annotations

import csv
import io
import math
from html import escape
from typing import Any

from spectracli.errors import ReportError
from spectracli.options import ReportFormat
from spectracli.report.numbers import fmt_num
from spectracli.results import LAYER_METRICS, layer_metric

# Per-step Hessian numbers written to the CSV (and gated) under the pseudo-layer "hessian".
HESSIAN_STEP_METRICS = (
    "lambda_max", "lambda_min", "edge_of_stability", "trace", "loss", "grad_norm",
    "hvp_count", "overlap_min", "gradient_fraction", "max_residual",
)
SUMMARY_METRICS = (
    "mean_alpha", "mean_farms_alpha", "mean_alpha_weighted", "mean_stable_rank",
    "mean_log10_sigma_max", "max_sigma_max", "max_condition_number", "n_fit_failed",
)
# Per-layer metrics drawn against the step (one line per layer).
PLOTTED = (("alpha", "alpha"), ("farms.alpha", "FARMS alpha"), ("sigma_max", "sigma_max"),
           ("stable_rank", "stable rank"))


def check_track(report: Any) -> None:
    """Refuse anything but a track report.

    Raises:
        ReportError: not a dict of kind ``track`` with a ``steps`` list (one line).
    """
    if not (isinstance(report, dict) and report.get("kind") == "track"
            and isinstance(report.get("steps"), list)):
        raise ReportError("not a track report (kind 'track' with a 'steps' list)")


def hessian_step_metric(hessian: dict[str, Any] | None, metric: str) -> Any:
    """A per-step Hessian number by name.

    ``trace`` is the Hutch++ estimate, ``overlap_min`` the smallest cosine of the principal
    angles to the previous step's eigenspace.

    Returns:
        The number, or None when the step has no Hessian or no such number.
    """
    if not isinstance(hessian, dict):
        return None
    if metric == "trace":
        return (hessian.get("trace") or {}).get("estimate")
    if metric == "overlap_min":
        overlap = hessian.get("overlap")
        return min(overlap) if overlap else None
    if metric == "max_residual":
        res = [r for r in hessian.get("residuals") or [] if isinstance(r, (int, float))]
        return max(res) if res else None
    return hessian.get(metric)


def _name(step: dict[str, Any]) -> str:
    path = str((step.get("source") or {}).get("path") or "")
    return path.rstrip("/").rsplit("/", 1)[-1]


def step_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and one row of text cells per step."""
    with_hessian = any(isinstance(s.get("hessian"), dict) for s in report["steps"])
    header = ["step", "checkpoint", "layers", "mean_alpha", "mean_farms_alpha",
              "max_sigma_max", "max_cond", "fit_failed", "cached"]
    with_min = any(isinstance(s.get("hessian"), dict) and s["hessian"].get("lambda_min")
                   is not None for s in report["steps"])  # --which smallest | both
    if with_hessian:
        header += ["lambda_max", *(["lambda_min"] if with_min else []), "lr*lmax/2",
                   "overlap_min", "grad_frac", "HVPs", "warm"]
    rows = []
    for step in report["steps"]:
        s = step.get("summary") or {}
        row = [str(step.get("step")), _name(step), str(s.get("n_layers")),
               fmt_num(s.get("mean_alpha")), fmt_num(s.get("mean_farms_alpha")),
               fmt_num(s.get("max_sigma_max")), fmt_num(s.get("max_condition_number")),
               str(s.get("n_fit_failed")),
               "yes" if (step.get("source") or {}).get("cached") else "no"]
        if with_hessian:
            h = step.get("hessian")
            row += [fmt_num(hessian_step_metric(h, m)) for m in
                    ("lambda_max", *(["lambda_min"] if with_min else []), "edge_of_stability",
                     "overlap_min", "gradient_fraction")]
            row += [str(h.get("hvp_count")) if h else "-",
                    ("yes" if h.get("warm_started") else "no") if h else "-"]
        rows.append(row)
    return header, rows


def _steps_text(steps: list[str]) -> str:
    return ("step " if len(steps) == 1 else "steps ") + ", ".join(steps)


def blank_notes(report: dict[str, Any]) -> list[str]:
    """Why a step's row shows '-'.

    Returns:
        One line per reason, naming the steps it holds for: no layer analysed (the skip
        reasons, counted), no power-law fit that is ok (the fit statuses, counted), FARMS off.
    """
    from collections import Counter

    from spectracli.report.table import reason_group

    farms_on = ((report.get("settings") or {}).get("analyze") or {}).get("farms") is not False
    notes: dict[str, list[str]] = {}
    for step in report["steps"]:
        s = step.get("summary") or {}
        label = str(step.get("step"))
        if not s.get("n_layers"):
            reasons = Counter(reason_group(str(k.get("reason"))) for k in step.get("skipped") or [])
            text = "no layer analysed" + (
                ": " + "; ".join(f"{n} skipped, {r}" for r, n in reasons.most_common(3))
                if reasons else "")
            if any("min_size" in r for r in reasons):
                text += " (--min-size sets the smallest side analysed)"
            notes.setdefault(text, []).append(label)
            continue
        for column, key in (("mean_alpha", "fit_status"), ("mean_farms_alpha", "farms")):
            if s.get(column) is not None:
                continue
            if key == "farms" and not farms_on:
                text = f"{column} '-': FARMS is off (--no-farms)"
            else:
                statuses = Counter(
                    str((layer.get("farms") or {}).get("fit_status") if key == "farms"
                        else layer.get("fit_status"))
                    for layer in step.get("layers") or [])
                text = (f"{column} '-': no power-law fit is ok ("
                        + ", ".join(f"{n} {st}" for st, n in statuses.most_common()) + ")")
            notes.setdefault(text, []).append(label)
    return [f"{_steps_text(steps)}: {text}" for text, steps in notes.items()]


def _footer(report: dict[str, Any]) -> list[str]:
    src = report.get("source") or {}
    cache = src.get("cache") or {}
    lines = [f"{src.get('n_checkpoints')} checkpoints of {src.get('run')}; cache "
             + (f"{cache.get('dir')}: {cache.get('hits')} reused, {cache.get('misses')} analysed"
                if cache.get("dir") else "off")]
    lines += [f"cache warning: {e}" for e in cache.get("errors") or []]
    lines += blank_notes(report)
    steps = report["steps"]
    hvps = [s["hessian"]["hvp_count"] for s in steps if isinstance(s.get("hessian"), dict)]
    if hvps:
        lines.append(f"Hessian: {sum(hvps)} HVPs in all")
    unconverged = [str(s["step"]) for s in steps if isinstance(s.get("hessian"), dict)
                   and not all(s["hessian"].get("converged") or [True])]
    if unconverged:
        lines.append(f"WARNING: Hessian eigenpairs not converged at steps {', '.join(unconverged)}")
    lines += [f"ignored {i['path']}: {i['reason']}" for i in report.get("ignored") or []]
    return lines


def render_track_plain(report: dict[str, Any]) -> str:
    """The per-step table as aligned plain text, then the footer notes."""
    header, rows = step_rows(report)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
           for r in [header, *rows]]
    return "\n".join([*out, "", *_footer(report)]) + "\n"


def print_track_rich(report: dict[str, Any], console: Any) -> None:
    """The same content as :func:`render_track_plain`, as a rich table for a terminal."""
    from rich.table import Table

    check_track(report)
    header, rows = step_rows(report)
    table = Table(title="spectracli track", header_style="bold")
    for title in header:
        table.add_column(title, justify="left" if title == "checkpoint" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in _footer(report):
        console.print(line, highlight=False)


def render_track_markdown(report: dict[str, Any]) -> str:
    """The per-step table as Markdown, with the run and the footer notes."""
    header, rows = step_rows(report)
    lines = ["# spectracli track", "", f"- **Run**: `{(report.get('source') or {}).get('run')}`",
             f"- **Created**: {report.get('created')} by spectracli {report.get('tool_version')}",
             "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    lines += ["", *(f"- {line}" for line in _footer(report))]
    return "\n".join(lines) + "\n"


def long_rows(report: dict[str, Any]) -> list[tuple[int, str, str, Any]]:
    """``(step, layer, metric, value)`` for every number of every step (None values left out)."""
    out: list[tuple[int, str, str, Any]] = []
    for step in report["steps"]:
        t = step.get("step")
        for layer in step.get("layers") or []:
            for metric in LAYER_METRICS:
                value = layer_metric(layer, metric)
                if value is not None:
                    out.append((t, layer["name"], metric, value))
        summary = step.get("summary") or {}
        for metric in SUMMARY_METRICS:
            if summary.get(metric) is not None:
                out.append((t, "summary", metric, summary[metric]))
        h = step.get("hessian")
        if isinstance(h, dict):
            out += [(t, "hessian", metric, value) for metric, value in _hessian_numbers(h)]
    return out


def _hessian_numbers(h: dict[str, Any]) -> list[tuple[str, Any]]:
    """A step's Hessian numbers, None values left out.

    Returns:
        ``(metric, value)``: the named ones, then each eigenvalue and overlap
        (``eigenvalue_1``..., ``overlap_1``...).
    """
    out = [(metric, hessian_step_metric(h, metric)) for metric in HESSIAN_STEP_METRICS]
    out = [(metric, value) for metric, value in out if value is not None]
    out += [(f"eigenvalue_{i}", v) for i, v in enumerate(h.get("eigenvalues") or [], 1)]
    out += [(f"overlap_{i}", v) for i, v in enumerate(h.get("overlap") or [], 1)]
    return out


def render_track_csv(report: dict[str, Any]) -> str:
    """Long-format CSV: ``step,layer,metric,value`` (inf written as ``inf``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", "layer", "metric", "value"])
    for row in long_rows(report):
        writer.writerow(row)
    return buf.getvalue()


def render_track(report: dict[str, Any], fmt: str) -> str:
    """The track report in ``fmt`` (table | json | csv | markdown | html).

    Returns:
        The text.

    Raises:
        ReportError: not a track report, or an unknown ``fmt``.
    """
    check_track(report)
    renderer = _TRACK_RENDERERS.get(fmt) if isinstance(fmt, str) else None
    if renderer is not None:
        return renderer(report)
    raise ReportError(f"format must be {ReportFormat.text(last='or')}, got {fmt!r}")


# ---------------------------------------------------------------------------------------------
# Figures


def _series(report: dict[str, Any], metric: str) -> tuple[list[int], dict[str, list[float]]]:
    """Steps, and per layer (in first-seen order) its metric per step (nan where missing)."""
    steps = [s["step"] for s in report["steps"]]
    names: list[str] = []
    for s in report["steps"]:
        for layer in s.get("layers") or []:
            if layer["name"] not in names:
                names.append(layer["name"])
    series = {n: [math.nan] * len(steps) for n in names}
    for i, s in enumerate(report["steps"]):
        for layer in s.get("layers") or []:
            v = layer_metric(layer, metric)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            fit_ok = not metric.endswith("alpha") or str(
                (layer.get("farms") or {}).get("fit_status") if metric.startswith("farms.")
                else layer.get("fit_status")).startswith("ok")
            if ok and fit_ok:
                series[layer["name"]][i] = float(v)
    return steps, series


def metrics_figure(report: dict[str, Any]):
    """alpha, FARMS alpha, sigma_max and stable rank against the step, one line per layer."""
    from spectracli.report.plots import new_figure

    fig = new_figure(11.0, 7.5)
    axes = fig.subplots(2, 2, sharex=True)
    handles = None
    for ax, (metric, label) in zip(axes.flat, PLOTTED, strict=True):
        steps, series = _series(report, metric)
        for name, values in series.items():
            ax.plot(steps, values, marker="o", ms=3, lw=1.2, label=name)
        if metric == "sigma_max":
            from spectracli.report.plots import plain_log_axis

            ax.set_yscale("log")
            finite = [v for vals in series.values() for v in vals if math.isfinite(v) and v > 0]
            plain_log_axis(ax.yaxis, max(finite) / min(finite) if finite else 10.0)
        if metric.endswith("alpha"):
            ax.axhspan(2.0, 6.0, color="#2ca02c", alpha=0.06, lw=0)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()
    for ax in axes[1]:
        ax.set_xlabel("step")
    if handles and handles[0] and len(handles[0]) <= 20:
        fig.legend(*handles, loc="outside right upper", fontsize=8)
    return fig


def alpha_heatmap_figure(report: dict[str, Any]):
    """Layers (rows, depth order) x steps (columns) of alpha; blank where the fit failed."""
    import numpy as np

    from spectracli.report.plots import new_figure

    steps, series = _series(report, "alpha")
    names = list(series)
    grid = np.array([series[n] for n in names], dtype=float) if names else np.zeros((0, 0))
    fig = new_figure(11.0, max(2.5, 0.28 * len(names) + 1.6))
    ax = fig.subplots()
    masked = np.ma.masked_invalid(grid)
    image = ax.imshow(masked, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([n if len(n) <= 32 else "\u2026" + n[-31:] for n in names], fontsize=8)
    stride = max(1, len(steps) // 15)
    ax.set_xticks(range(0, len(steps), stride))
    ax.set_xticklabels([str(s) for s in steps[::stride]], fontsize=8)
    ax.set_xlabel("step")
    fig.colorbar(image, ax=ax, label="alpha")
    return fig


def sharpness_figure(report: dict[str, Any]):
    """Top Hessian eigenvalues against the step, and the HVPs per step.

    The 2/lr line (edge of stability, Cohen et al. 2021) is drawn when the lr is known; hollow
    HVP markers are cold starts.

    Returns:
        The figure (eigenvalues left, HVPs right).
    """
    from spectracli.report.plots import new_figure

    rows = [(s["step"], s["hessian"]) for s in report["steps"] if isinstance(s.get("hessian"),
                                                                           dict)]
    fig = new_figure(11.0, 4.2)
    ax, ax_hvp = fig.subplots(1, 2, width_ratios=[2, 1])
    k = max(len(h.get("eigenvalues") or []) for _, h in rows)
    for i in range(k):
        pts = [(t, h["eigenvalues"][i]) for t, h in rows if len(h.get("eigenvalues") or []) > i]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                lw=1.6 if i == 0 else 0.9, label="lambda_max" if i == 0 else None,
                color="#d62728" if i == 0 else "#7f7f7f")
    lrs = {(h.get("settings") or {}).get("lr") for _, h in rows}
    lrs.discard(None)
    if len(lrs) == 1:
        lr = lrs.pop()
        ax.axhline(2.0 / lr, color="black", ls="--", lw=1, label=f"2/lr = {2.0 / lr:.4g}")
    ax.set_xlabel("step")
    ax.set_ylabel("Hessian eigenvalue")
    ax.set_title(f"top-{k} eigenvalues (red: lambda_max)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for t, h in rows:
        ax_hvp.plot([t], [h.get("hvp_count")], marker="o",
                    mfc="#1f77b4" if h.get("warm_started") else "white", color="#1f77b4")
    ax_hvp.set_xlabel("step")
    ax_hvp.set_ylabel("HVPs")
    ax_hvp.set_title("HVPs per step (hollow: cold start)", fontsize=10)
    ax_hvp.grid(alpha=0.3)
    return fig


def track_figures(report: dict[str, Any], image_format: str = "png") -> list:
    """Every figure of a track report, rendered in memory (``RenderedFigure`` list)."""
    from spectracli.report.plots import _check_format, _render

    check_track(report)
    fmt = _check_format(image_format)
    out = []
    if any(s.get("layers") for s in report["steps"]):
        out.append(_render(metrics_figure(report), f"track_metrics.{fmt}", "Metrics by step",
                           "alpha, FARMS alpha, sigma_max and stable rank of each layer against "
                           "the training step (one line per layer; failed fits left out; "
                           "shaded: the heuristic alpha band [2, 6]).", fmt))
        out.append(_render(alpha_heatmap_figure(report), f"track_alpha_heatmap.{fmt}",
                           "alpha: layers x steps",
                           "Power-law alpha of every layer (rows, in depth order) at every "
                           "step (columns); blank where the fit failed.", fmt))
    if any(isinstance(s.get("hessian"), dict) for s in report["steps"]):
        out.append(_render(sharpness_figure(report), f"track_sharpness.{fmt}",
                           "Sharpness by step",
                           "Top Hessian eigenvalues per step (red: lambda_max; dashed: 2/lr, "
                           "the stability limit of gradient descent) and the HVPs each solve "
                           "took.", fmt))
    return out


def render_track_html(report: dict[str, Any], image_format: str = "png") -> str:
    """One self-contained HTML page: the per-step table and the figures."""
    import base64

    from spectracli.report.html import _page

    header, rows = step_rows(report)
    table = ["<table class=\"sortable\"><thead><tr>"
             + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for row in rows:
        table.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    table.append("</tbody></table>")
    parts = ["<h1>spectracli track</h1>",
             f'<p class="meta"><b>Run:</b> <code>{escape(str(report["source"].get("run")))}'
             "</code></p>",
             f'<p class="meta"><b>Created:</b> {escape(str(report.get("created")))} by '
             f"spectracli {escape(str(report.get('tool_version')))}</p>",
             '<section id="steps"><h2>Steps</h2><div class="scroll">', *table, "</div>",
             *(f'<p class="note">{escape(line)}</p>' for line in _footer(report)), "</section>",
             '<section id="figures"><h2>Figures</h2>']
    for fig in track_figures(report, image_format):
        data = base64.b64encode(fig.data).decode("ascii")
        parts.append(
            f'<figure><img src="data:{fig.mime};base64,{data}" width="{fig.width_px}" '
            f'height="{fig.height_px}" alt="{escape(fig.title)}">'
            f"<figcaption><b>{escape(fig.title)}.</b> {escape(fig.caption)}</figcaption></figure>")
    parts.append("</section>")
    return _page(f"spectracli track: {report['source'].get('run')}", "\n".join(parts))


def _dumps_report(report: dict[str, Any]) -> str:
    from spectracli.results import dumps_report

    return dumps_report(report)


# One renderer per ReportFormat member (a member without one is refused, never rendered as another).
_TRACK_RENDERERS: dict[ReportFormat, Any] = {
    ReportFormat.TABLE: render_track_plain,
    ReportFormat.JSON: _dumps_report,
    ReportFormat.CSV: render_track_csv,
    ReportFormat.MARKDOWN: render_track_markdown,
    ReportFormat.HTML: render_track_html,
}
