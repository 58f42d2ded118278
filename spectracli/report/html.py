"""The HTML report: one self-contained file, readable without JavaScript.

Figures are base64-embedded; there is no network load and no external script.

Order of reading: what was analysed and with which settings, the summary, the flagged layers and
why (same rules as the Markdown report, :func:`spectracli.report.markdown.flag_reasons`), the
per-layer table (in depth order; a click on a column header sorts it with a small inline script,
on the exact values kept in ``data-v``), the figures, and the skipped tensors with their reasons.

A Content-Security-Policy meta tag forbids every network load: images come only from ``data:``
URIs, styles and the sort script only inline.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from spectracli.report.hessian import eigen_rows, eigen_title, outlier_text
from spectracli.report.markdown import (
    LAYER_COLUMNS,
    MISSING,
    check_renderable,
    flag_reasons,
    format_shape,
    hessian_summary_rows,
    source_line,
    summary_rows,
)
from spectracli.report.numbers import fmt_num
from spectracli.schema import nonfinite_text

# The per-layer table's columns shown by default; the others (same data) are toggled in.
HTML_DEFAULT_COLUMNS = ("layer", "kind", "matrix", "sigma_max", "condition", "alpha", "alpha ±",
                        "FARMS alpha", "fit", "status")

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
)

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 28px 0 8px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #444; margin: 2px 0; } code { background: #f3f3f3; padding: 0 3px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d9d9d9; padding: 3px 7px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f4f6f8; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #e6ebf0; }
tr.flagged td { background: #fff4e5; }
.scroll { overflow-x: auto; }
#layer-table td:nth-child(2) { max-width: 26em; overflow-wrap: anywhere; }
#layer-table th:nth-child(2), #layer-table td:nth-child(2) { position: sticky; left: 0;
  background: #fff; z-index: 1; }
#layer-table th:nth-child(2) { background: #f4f6f8; z-index: 2; }
#layer-table tr.flagged td:nth-child(2) { background: #fff4e5; }
#layer-table .extra { display: none; }
#all-columns:checked ~ .scroll #layer-table .extra { display: table-cell; }
label.toggle { font-size: 13px; color: #444; cursor: pointer; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 6px 12px; min-width: 120px; }
.card b { display: block; font-size: 18px; } .card.warn { border-color: #e69500;
  background: #fff8ec; }
figure { margin: 16px 0; } figure img { max-width: 100%; height: auto;
  border: 1px solid #eee; } figcaption { color: #555; font-size: 13px; }
.note { color: #555; font-size: 13px; }
"""

# Sorts a table on the clicked column, numerically when every cell has a numeric data-v.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute("data-order") !== "asc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-order"); });
      th.setAttribute("data-order", asc ? "asc" : "desc");
      function key(row) {
        var cell = row.cells[col], v = cell.getAttribute("data-v");
        if (v === null) { return cell.textContent; }
        var x = parseFloat(v); return isNaN(x) ? (v === "inf" ? Infinity : -Infinity) : x;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = (typeof x === "number" && typeof y === "number") ? x - y
              : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _sort_value(value: Any) -> str | None:
    """The exact value for sorting: ``repr`` of floats (round-trips), ints as is."""
    if isinstance(value, bool) or value is None:
        return None if value is None else str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return nonfinite_text(value) or repr(value)
    return None


def _td(value: Any, extra: bool = False) -> str:
    more = " extra" if extra else ""  # a column toggled in (HTML_DEFAULT_COLUMNS)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = _sort_value(value)
        return (f'<td class="num{more}" data-v="{escape(v or "")}">'
                f"{escape(fmt_num(value, 6))}</td>")
    text = MISSING if value is None else str(value)
    cls = ' class="extra"' if extra else ""
    return f"<td{cls}>{escape(text)}</td>"


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th>{_td(v)}</tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _source_html(report: dict[str, Any]) -> str:
    source = source_line(report.get("source") or {}).replace("`", "")
    settings = report.get("settings") or {}
    settings_txt = ", ".join(f"{k}={_setting(v)}" for k, v in settings.items()) or "none recorded"
    created = report.get("created") or MISSING
    parts = [
        f'<p class="meta"><b>Source:</b> <code>{escape(source)}</code></p>',
        f'<p class="meta"><b>Settings:</b> {escape(settings_txt)}</p>',
        f'<p class="meta"><b>Created:</b> {escape(str(created))} by spectracli '
        f'{escape(str(report.get("tool_version") or "?"))}</p>',
    ]
    timing = report.get("timing") or {}
    if isinstance(timing.get("total_s"), (int, float)):
        parts.append(f'<p class="meta"><b>Time:</b> {fmt_num(timing["total_s"], 3)} s</p>')
    return "\n".join(parts)


def _setting(value: Any) -> str:
    if isinstance(value, float):
        return fmt_num(value, 6)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_setting(v) for v in value) + "]"
    return str(value)


def _cards(rows: list[tuple[str, Any]], warn: set[str]) -> str:
    out = []
    for label, value in rows:
        cls = "card warn" if label in warn and value not in (0, None) else "card"
        out.append(
            f'<div class="{cls}"><b>{escape(fmt_num(value, 6))}</b>{escape(label)}</div>'
        )
    return '<div class="cards">' + "".join(out) + "</div>"


def _figures_html(report: dict[str, Any], image_format: str) -> str:
    from spectracli.report.plots import render_figures

    figures = render_figures(report, image_format)
    if not figures:
        return '<p class="note">No figure: the report has nothing to plot.</p>'
    out = []
    for fig in figures:
        data = base64.b64encode(fig.data).decode("ascii")
        out.append(
            f'<figure id="fig-{escape(fig.filename.rsplit(".", 1)[0])}">'
            f'<img src="data:{fig.mime};base64,{data}" width="{fig.width_px}" '
            f'height="{fig.height_px}" alt="{escape(fig.title)}">'
            f"<figcaption><b>{escape(fig.title)}.</b> {escape(fig.caption)}</figcaption></figure>"
        )
    return "\n".join(out)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n</main>\n<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n"
    )


def flagged_layers(layers: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], list[str]]]:
    """``(depth index, layer, reasons)`` of every layer with a reason to look at it."""
    flagged = [(i, la, flag_reasons(la)) for i, la in enumerate(layers)]
    return [item for item in flagged if item[2]]


def flagged_html(
    flagged: list[tuple[int, dict[str, Any], list[str]]], link: bool = True
) -> str:
    """The table of flagged layers and why (``link``: names link to the per-layer table)."""
    if not flagged:
        return "<p>No layer flagged.</p>"

    def name(i: int, la: dict[str, Any]) -> str:
        text = escape(str(la.get("name")))
        return f'<a href="#layer-{i}">{text}</a>' if link else text

    body = "".join(
        f'<tr><td class="num">{i}</td><td>{name(i, la)}'
        f'</td><td>{"<br>".join(escape(r) for r in reasons)}</td></tr>'
        for i, la, reasons in flagged
    )
    return (f"<table><thead><tr><th>#</th><th>layer</th><th>why</th></tr></thead>"
            f"<tbody>{body}</tbody></table>\n"
            '<p class="note">alpha outside [2, 6] is a heuristic, not a verdict on '
            "training; a failed fit says nothing about the layer.</p>")


def _analyze_body(report: dict[str, Any], image_format: str) -> str:
    layers = report.get("layers") or []
    parts = ['<h1>spectracli weight spectra</h1>', _source_html(report)]

    parts.append('<section id="summary"><h2>Summary</h2>')
    rows = summary_rows(report)
    head, rest = rows[:6], rows[6:]
    parts.append(_cards(head, {"layers flagged", "fits failed", "rank deficient",
                               "status not ok"}))
    parts.append(_kv_table(rest))
    parts.append("</section>")

    flagged = flagged_layers(layers)
    parts.append(f'<section id="flagged"><h2>Flagged layers ({len(flagged)})</h2>')
    parts.append(flagged_html(flagged))
    parts.append("</section>")

    parts.append(f'<section id="layers"><h2>Layers ({len(layers)})</h2>')
    if layers:
        parts.append('<p class="note">In depth order; click a column header to sort. Numbers '
                     "shown to 6 significant digits; the JSON report has them exact.</p>")
        # the columns beyond HTML_DEFAULT_COLUMNS are toggled in (CSS only): at 1280 px the
        # default table fits without scrolling, the layer name stays in view when it scrolls
        extra = [h not in HTML_DEFAULT_COLUMNS for h, _ in LAYER_COLUMNS]
        head_html = "<th>#</th>" + "".join(
            f'<th{" class=extra" if x else ""}>{escape(h)}</th>'
            for (h, _), x in zip(LAYER_COLUMNS, extra, strict=True))
        flagged_ids = {i for i, _, _ in flagged}
        body_rows = []
        for i, layer in enumerate(layers):
            cls = ' class="flagged"' if i in flagged_ids else ""
            cells = _td(i) + "".join(_td(get(layer), x)
                                     for (_, get), x in zip(LAYER_COLUMNS, extra, strict=True))
            body_rows.append(f'<tr id="layer-{i}"{cls}>{cells}</tr>')
        added = ", ".join(h for (h, _), x in zip(LAYER_COLUMNS, extra, strict=True) if x)
        parts.append(f'<input type="checkbox" id="all-columns"> <label class="toggle" '
                     f'for="all-columns">all {len(LAYER_COLUMNS) + 1} columns (adds '
                     f"{escape(added)})</label>")
        parts.append(f'<div class="scroll"><table class="sortable" id="layer-table"><thead><tr>'
                     f'{head_html}</tr></thead><tbody>{"".join(body_rows)}</tbody></table></div>')
    else:
        parts.append("<p>No layer analysed.</p>")
    parts.append("</section>")

    parts.append('<section id="figures"><h2>Figures</h2>')
    parts.append(_figures_html(report, image_format))
    parts.append("</section>")

    skipped = report.get("skipped") or []
    parts.append(f'<section id="skipped"><h2>Skipped tensors ({len(skipped)})</h2>')
    if skipped:
        body = "".join(
            f"<tr><td>{escape(str(s.get('name')))}</td><td>{escape(format_shape(s.get('shape')))}"
            f"</td><td>{escape(str(s.get('reason')))}</td></tr>"
            for s in skipped
        )
        parts.append("<table><thead><tr><th>tensor</th><th>shape</th><th>reason</th></tr>"
                     f"</thead><tbody>{body}</tbody></table>")
    else:
        parts.append("<p>Nothing skipped.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _hessian_body(report: dict[str, Any], image_format: str) -> str:
    parts = ["<h1>spectracli Hessian spectrum</h1>", _source_html(report)]
    parts.append('<section id="summary"><h2>Summary</h2>')
    parts.append(_kv_table(hessian_summary_rows(report)))
    parts.append("</section>")
    rows = eigen_rows(report)
    not_conv = [label for label, _, _, c in rows if c is False]
    parts.append(f'<section id="eigenvalues"><h2>{escape(eigen_title(report))}</h2>')
    if not_conv:
        parts.append(f'<p class="note"><b>Not converged:</b> eigenpairs '
                     f'{escape(", ".join(not_conv))} (residuals above the tolerance).</p>')
    body = "".join(
        f'<tr{" class=flagged" if c is False else ""}><td>{escape(label)}</td>{_td(v)}'
        f"{_td(r)}<td>{'yes' if c else 'no'}</td></tr>"
        for label, v, r, c in rows
    )
    parts.append('<table class="sortable" id="eigen-table"><thead><tr><th>k</th>'
                 "<th>eigenvalue</th><th>residual</th><th>converged</th></tr></thead>"
                 f"<tbody>{body}</tbody></table></section>")
    density = report.get("density")
    if isinstance(density, dict):
        parts.append('<section id="density"><h2>Spectral density (SLQ)</h2>'
                     f"<p>Bulk edge {escape(fmt_num(density.get('bulk_edge'), 6))}; "
                     f"{escape(outlier_text(density))}.</p></section>")
    parts.append('<section id="figures"><h2>Figures</h2>')
    parts.append(_figures_html(report, image_format))
    parts.append("</section>")
    return "\n".join(parts)


def render_html(report: dict[str, Any], image_format: str = "png") -> str:
    """The self-contained HTML report of an analyze or Hessian report dict."""
    kind = check_renderable(report)
    if kind == "track":
        from spectracli.report.track import render_track_html

        return render_track_html(report, image_format)
    path = (report.get("source") or {}).get("path") or (report.get("source") or {}).get("model")
    if kind == "hessian":
        return _page(f"spectracli Hessian report: {path or ''}", _hessian_body(report,
                                                                               image_format))
    return _page(f"spectracli report: {path or ''}", _analyze_body(report, image_format))
