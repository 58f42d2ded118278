"""Renderers of a :class:`spectracli.compare.ComparisonResult`: plain table, JSON, Markdown.

Scale-like metrics (sigma_max, condition number, stable rank) are shown as the ratio B / A;
alpha and FARMS alpha, which are exponents, as the difference B - A. Every delta and ratio is in
the JSON; Markdown lists the changed layers metric by metric with both values.
"""

from __future__ import annotations

from typing import Any

from spectracli.compare import ComparisonResult, LayerComparison
from spectracli.report.markdown import format_number, md_table
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
    row = [layer.name, "yes" if layer.changed else "no", format_number(layer.max_rel_change),
           layer.largest_metric or "-"]
    for _, metric, what in SUMMARY_COLUMNS:
        change = layer.changes[metric]
        row.append(format_number(getattr(change, what)))
    return row


def _headers() -> list[str]:
    return ["layer", "changed", "max rel change", "largest in"] + [h for h, _, _ in
                                                                   SUMMARY_COLUMNS]


def _source(source: dict[str, Any]) -> str:
    return str(source.get("path") or "?")


def _preamble(result: ComparisonResult) -> list[str]:
    lines = [
        f"A: {_source(result.source_a)}",
        f"B: {_source(result.source_b)}",
        f"{len(result.layers)} layers in common, {len(result.changed)} changed "
        f"(relative change > {format_number(result.rtol)}); {len(result.only_a)} only in A, "
        f"{len(result.only_b)} only in B",
    ]
    return lines


def render_comparison_plain(result: ComparisonResult) -> str:
    """An aligned plain-text table, largest relative change first, then the one-sided layers."""
    rows = [_headers()] + [_summary_row(layer) for layer in result.layers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = _preamble(result) + [""]
    for j, row in enumerate(rows):
        cells = [c.ljust(widths[i]) if i in (0, 1, 3) else c.rjust(widths[i])
                 for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    for label, names in (("only in A", result.only_a), ("only in B", result.only_b)):
        if names:
            lines += ["", f"{label} ({len(names)}): " + ", ".join(names)]
    for warning in result.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines) + "\n"


def render_comparison_json(result: ComparisonResult) -> str:
    """Strict JSON (infinities as the strings "inf"/"-inf", as in reports)."""
    return dumps_report(result.to_dict())


def render_comparison_markdown(result: ComparisonResult) -> str:
    """Markdown for a CI step summary: overview, per-layer table, then each changed metric."""
    lines = ["# spectracli comparison", ""]
    lines += [f"- **A**: `{_source(result.source_a)}`", f"- **B**: `{_source(result.source_b)}`"]
    lines.append(f"- {len(result.layers)} layers in common, **{len(result.changed)} changed** "
                 f"(relative change > {format_number(result.rtol)})")
    for warning in result.warnings:
        lines.append(f"- warning: {warning}")
    lines += ["", f"## Layers in common ({len(result.layers)})", ""]
    lines.append(md_table(_headers(), [_summary_row(la) for la in result.layers],
                          {2, 4, 5, 6, 7, 8}))
    lines.append("")
    changed = result.changed
    lines += [f"## Changed metrics ({len(changed)} layers)", ""]
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
