"""Results -> text: terminal table, JSON, CSV, Markdown, HTML (plots in ``report.plots``).

Every renderer takes the report dict (``AnalysisReport.to_dict()`` or a loaded JSON report), so
a saved report renders exactly like a fresh one.
"""

from __future__ import annotations

from typing import Any

from spectracli.errors import SpectraError
from spectracli.options import ReportFormat

FORMATS = ReportFormat.values()


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
    if fmt == "json":
        from spectracli.results import dumps_report

        return dumps_report(report)
    if fmt == "csv":
        from spectracli.report.csv import render_csv

        return render_csv(report)
    if fmt == "markdown":
        from spectracli.report.markdown import render_markdown

        return render_markdown(report)
    if fmt == "html":
        from spectracli.report.html import render_html

        return render_html(report)
    if fmt == "table":
        from spectracli.report.table import render_plain

        return render_plain(report)
    raise SpectraError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}", params=("fmt",))
