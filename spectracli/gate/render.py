"""Findings for people and programs: a terminal table, JSON, and Markdown (CI step summary)."""

from __future__ import annotations

import json
from typing import Any

from spectracli.gate.evaluate import Finding, GateResult, fmt
from spectracli.report.text import article, plural


def verdict(result: GateResult, strict: bool = False) -> str:
    """One line: ``gate: FAILED: 2 errors, 1 warning (6 checks, 3 layers, 2 rules)``."""
    word = "passed" if result.passed(strict) else "FAILED"
    e, w = result.n_errors, result.n_warnings
    n_weights = result.n_layers - result.with_hessian
    on = (("the Hessian" if not n_weights else f"{plural(n_weights, 'layer')} and the Hessian")
          if result.with_hessian else plural(result.n_layers, "layer"))
    tail = (f"({plural(len(result.checks), 'check')} on {on}, "
            f"{plural(len(result.rules), 'rule')}"
            + (", warnings fail with --strict" if strict and w else "") + ")")
    return f"gate {word}: {plural(e, 'error')}, {plural(w, 'warning')} {tail}"


def _row(f: Finding) -> list[str]:
    return [
        f.severity,
        f.rule_id,
        f.layer or "-",
        f.metric or "-",
        fmt(f.value) if f.value is not None else "-",
        f.limit_text,
        f.how_far or f.message,
    ]


HEADERS = ["severity", "rule", "layer", "metric", "value", "threshold", "how far"]


# The terminal table: the layer is the key (shortened in the middle when narrow); the free-text
# "how far" wraps; a column that does not fit goes to a second table. Nothing else is cut.
NUMERIC = ("value", "threshold")


def print_table(result: GateResult, console: Any, strict: bool = False,
                verbose: bool = False) -> None:
    """The findings table fitted to the console width, worst first.

    Then the rules that did not apply, then the verdict (``verbose`` is accepted for symmetry:
    every finding is listed).
    """
    from rich.text import Text

    from spectracli.report.layout import Column, layout

    del verbose
    if result.findings:
        columns = [Column(h, right=h in NUMERIC, text=h == "how far") for h in HEADERS]
        cells = [_row(f) for f in result.findings]
        table = layout(columns, cells, console.width, key=HEADERS.index("layer"))
        for line in table.lines():
            style = "bold" if line.header else ""
            if line.row is not None and not console.no_color:
                style = "red" if result.findings[line.row].severity == "error" else "yellow"
            console.print(Text(line.text, style=style), no_wrap=True, crop=False)
        notes = [f for f in result.findings if f.kind in ("unmatched", "settings_differ")]
        for f in notes:
            console.print(f"{f.severity}: {f.message}", markup=False, highlight=False)
    if result.not_applicable:
        ids = ", ".join(r.id for r in result.not_applicable)
        console.print(f"not applicable to {article(result.report_kind)} report: {ids}",
                      markup=False, highlight=False)
    console.print(verdict(result, strict), markup=False, highlight=False)


def to_json(result: GateResult, strict: bool = False) -> str:
    """The gate report as JSON text (non-finite numbers as null)."""
    from spectracli.report_file import json_safe

    return json.dumps(json_safe(result.to_dict(strict)), indent=2, allow_nan=False)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(result: GateResult, strict: bool = False, limit: int = 100) -> str:
    """A Markdown summary: verdict, then the findings table (worst ``limit`` rows)."""
    icon = "✅" if result.passed(strict) else "❌"
    lines = [f"### {icon} spectracli {verdict(result, strict)}", ""]
    if result.source:
        lines.append(f"Input: `{result.source}`"
                     + (f", baseline: `{result.baseline_source}`" if result.baseline_source
                        else ""))
        lines.append("")
    if result.findings:
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "---|" * len(HEADERS))
        for f in result.findings[:limit]:
            lines.append("| " + " | ".join(_md(c) for c in _row(f)) + " |")
        if len(result.findings) > limit:
            lines.append("")
            lines.append(f"... and {len(result.findings) - limit} more findings "
                         "(see `--format json`).")
    else:
        lines.append("All rules pass.")
    return "\n".join(lines) + "\n"
