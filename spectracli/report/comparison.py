"""Renderers of a :class:`spectracli.compare.ComparisonResult`: plain table, JSON, Markdown.

Scale-like metrics (sigma_max, condition number, stable rank) are shown as the ratio B / A;
alpha and FARMS alpha, which are exponents, as the difference B - A. Every delta and ratio is in
the JSON; Markdown lists the changed layers metric by metric with both values.
"""

from __future__ import annotations

import textwrap
from typing import Any

from spectracli.compare import ComparisonResult, LayerComparison
from spectracli.report.layout import Column, layout
from spectracli.report.markdown import md_table
from spectracli.report.numbers import fmt_num
from spectracli.report.text import display_path, plural
from spectracli.results import dumps_report

# Summary columns: (header, metric, "ratio" | "delta").
SUMMARY_COLUMNS = (
    ("sigma_max B/A", "sigma_max", "ratio"),
    ("cond B/A", "condition_number", "ratio"),
    ("alpha B-A", "alpha", "delta"),
    ("FARMS alpha B-A", "farms.alpha", "delta"),
    ("stable rank B/A", "stable_rank", "ratio"),
)


def _summary_row(layer: LayerComparison) -> list[str]:
    row = [layer.name, "yes" if layer.changed else "no", fmt_num(layer.max_rel_change, 6),
           layer.largest_metric or "-"]
    for _, metric, what in SUMMARY_COLUMNS:
        change = layer.changes[metric]
        row.append(fmt_num(getattr(change, what), 6))
    return row


def _headers() -> list[str]:
    return ["layer", "changed", "max rel change", "largest in"] + [h for h, _, _ in
                                                                   SUMMARY_COLUMNS]


def _source(source: dict[str, Any]) -> str:
    return str(display_path(source.get("path")) or "?")


def _preamble(result: ComparisonResult) -> list[str]:
    lines = [
        f"A: {_source(result.source_a)}",
        f"B: {_source(result.source_b)}",
        f"{plural(len(result.layers), 'layer')} in common, {len(result.changed)} changed "
        f"(relative change > {fmt_num(result.rtol, 6)}); {len(result.only_a)} only in A, "
        f"{len(result.only_b)} only in B",
    ]
    return lines


def _columns() -> list[Column]:
    return [Column(h, right=i not in (0, 1, 3), wrap=h != "stable rank B/A")
            for i, h in enumerate(_headers())]


def _one_sided(result: ComparisonResult, verbose: bool) -> list[str]:
    lines = []
    for label, names in (("only in A", result.only_a), ("only in B", result.only_b)):
        if names:
            shown = names if verbose or len(names) <= 5 else names[:5]
            more = "" if len(shown) == len(names) else f", ... (-v lists all {len(names)})"
            lines += ["", f"{label} ({len(names)}): " + ", ".join(shown) + more]
    return lines


def render_comparison_plain(result: ComparisonResult, verbose: bool = False,
                            width: int | None = None) -> str:
    """An aligned plain-text table, largest relative change first, then the one-sided layers.

    One-sided layers (only in A or only in B) are listed by name, the first five unless
    ``verbose``; the table is fitted to ``width`` when given.

    Returns:
        The text, lines joined by newlines.
    """
    table = layout(_columns(), [_summary_row(layer) for layer in result.layers], width)
    lines = _preamble(result) + [""] + [line.text for line in table.lines()]
    lines += _one_sided(result, verbose)
    if table.hidden:
        lines += ["", f"not shown at this width: {', '.join(table.hidden)} (-f json shows them)"]
    for warning in result.warnings:
        lines.append(f"warning: {warning}")
    if width is not None:
        lines = [w for line in lines for w in (textwrap.wrap(line, width) or [""])]
    return "\n".join(lines) + "\n"


def print_comparison(result: ComparisonResult, console: Any, verbose: bool = False) -> None:
    """:func:`render_comparison_plain` fitted to the console, changed layers in yellow."""
    from rich.text import Text

    table = layout(_columns(), [_summary_row(layer) for layer in result.layers], console.width)
    for line in _preamble(result) + [""]:
        console.print(line, markup=False, highlight=False)
    for line in table.lines():
        style = "bold" if line.header else ""
        if line.row is not None and result.layers[line.row].changed:
            style = "yellow"
        console.print(Text(line.text, style=style), no_wrap=True, crop=False)
    tail = _one_sided(result, verbose)
    if table.hidden:
        tail += ["", f"not shown at this width: {', '.join(table.hidden)} (-f json shows them)"]
    tail += [f"warning: {w}" for w in result.warnings]
    for line in tail:
        console.print(line, markup=False, highlight=False)


def render_comparison_json(result: ComparisonResult) -> str:
    """Strict JSON (infinities as the strings "inf"/"-inf", as in reports)."""
    return dumps_report(result.to_dict())


def render_comparison_markdown(result: ComparisonResult) -> str:
    """Markdown for a CI step summary: overview, per-layer table, then each changed metric."""
    lines = ["# spectracli comparison", ""]
    lines += [f"- **A**: `{_source(result.source_a)}`", f"- **B**: `{_source(result.source_b)}`"]
    lines.append(f"- {plural(len(result.layers), 'layer')} in common, "
                 f"**{len(result.changed)} changed** "
                 f"(relative change > {fmt_num(result.rtol, 6)})")
    for warning in result.warnings:
        lines.append(f"- warning: {warning}")
    lines += ["", f"## Layers in common ({len(result.layers)})", ""]
    lines.append(md_table(_headers(), [_summary_row(la) for la in result.layers],
                          {2, 4, 5, 6, 7, 8}))
    lines.append("")
    changed = result.changed
    lines += [f"## Changed metrics ({plural(len(changed), 'layer')})", ""]
    rows = []
    for layer in changed:
        for metric, c in layer.changes.items():
            if c.rel_change is None and c.a is None and c.b is None:
                continue
            if c.rel_change == 0:
                continue
            rows.append([layer.name, metric, c.a, c.b, c.delta, c.ratio])
    if rows:
        lines.append(md_table(["layer", "metric", "A", "B", "B - A", "B / A"], rows,
                              {2, 3, 4, 5}))
    else:
        lines.append("No metric changed.")
    lines.append("")
    for label, names in (("Only in A", result.only_a), ("Only in B", result.only_b)):
        lines += [f"## {label} ({len(names)})", ""]
        lines += [f"- `{name}`" for name in names] or ["None."]
        lines.append("")
    return "\n".join(lines)
