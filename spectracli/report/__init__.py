"""Results -> text: terminal table, JSON, CSV, Markdown, HTML (plots in ``report.plots``).

Every renderer takes the report dict (``AnalysisReport.to_dict()`` or a loaded JSON report), so
a saved report renders exactly like a fresh one.
"""

from __future__ import annotations

import importlib
from typing import Any

from spectracli.errors import SpectraError
from spectracli.options import ReportFormat

FORMATS = ReportFormat.values()
# The renderer of each format, (module, function), imported on use: one entry per ReportFormat
# member (a member without one is refused as an unknown format, never rendered as another).
_RENDERERS: dict[ReportFormat, tuple[str, str]] = {
    ReportFormat.TABLE: ("spectracli.report.table", "render_plain"),
    ReportFormat.JSON: ("spectracli.results", "dumps_report"),
    ReportFormat.CSV: ("spectracli.report.csv", "render_csv"),
    ReportFormat.MARKDOWN: ("spectracli.report.markdown", "render_markdown"),
    ReportFormat.HTML: ("spectracli.report.html", "render_html"),
}


def render(report: dict[str, Any], fmt: str) -> str:
    """The report in ``fmt``; ``table`` here is the plain-text table (rich is for terminals).

    Returns:
        The text (``html`` a self-contained document).

    Raises:
        SpectraError: an unknown ``fmt``.
        ReportError: a report of no known kind.
    """
    if isinstance(report, dict) and report.get("kind") == "track":
        from spectracli.report.track import render_track

        return render_track(report, fmt)
    entry = _RENDERERS.get(fmt) if isinstance(fmt, str) else None
    if entry is not None:
        module, name = entry
        return getattr(importlib.import_module(module), name)(report)
    raise SpectraError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}", params=("fmt",))
