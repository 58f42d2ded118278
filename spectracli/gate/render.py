"""Findings for people and programs: a terminal table, JSON, and Markdown (CI step summary)."""

from __future__ import annotations

import json
from typing import Any

from spectracli.gate.evaluate import Finding, GateResult, fmt


def verdict(result: GateResult, strict: bool = False) -> str:
    """One line: ``gate: FAILED: 2 errors, 1 warning (6 checks, 3 layers, 2 rules)``."""
    word = "passed" if result.passed(strict) else "FAILED"
    e, w = result.n_errors, result.n_warnings
    tail = (f"({len(result.checks)} checks on {result.n_layers} "
            f"layer{'s' * (result.n_layers != 1)}, {len(result.rules)} "
            f"rule{'s' * (len(result.rules) != 1)}"
            + (", warnings fail with --strict" if strict and w else "") + ")")
    return f"gate {word}: {e} error{'s' * (e != 1)}, {w} warning{'s' * (w != 1)} {tail}"


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


def print_table(result: GateResult, console: Any, strict: bool = False) -> None:
    """The findings table, worst first, then rules that did not apply, then the verdict."""
    from rich import box
    from rich.table import Table

    if result.findings:
        # Plain output (piped, NO_COLOR) gets no box characters: CI logs stay greppable.
        table = Table(box=None if console.no_color else box.SIMPLE_HEAD, show_edge=False,
                      collapse_padding=True, pad_edge=False)
        for h in HEADERS:
            # Names and numbers stay whole; only the free-text column wraps on a narrow terminal.
            table.add_column(h, overflow="fold", no_wrap=h != "how far")
        for f in result.findings:
            style = "red" if f.severity == "error" else "yellow"
            table.add_row(*_row(f), style=None if console.no_color else style)
        console.print(table)
        notes = [f for f in result.findings if f.kind in ("unmatched", "settings_differ")]
        for f in notes:
            console.print(f"{f.severity}: {f.message}", markup=False)
    if result.not_applicable:
        ids = ", ".join(r.id for r in result.not_applicable)
        console.print(f"not applicable to a {result.report_kind} report: {ids}", markup=False)
    console.print(verdict(result, strict), markup=False)


def to_json(result: GateResult, strict: bool = False) -> str:
    from spectracli.results import _clean

    return json.dumps(_clean(result.to_dict(strict)), indent=2, allow_nan=False)


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
