"""``spectracli report``: re-render a saved report (analyze or Hessian) without recomputing."""

from __future__ import annotations

from pathlib import Path

import typer

from spectracli.cli.common import emit, handle_errors, is_plain_output, stdout_console


@handle_errors
def report(
    report_path: Path = typer.Argument(..., metavar="REPORT",
                                       help="A saved JSON report (analyze, hessian or track)."),
    fmt: str = typer.Option("table", "--format", "-f",
                            help="table | json | csv | markdown | html (Hessian reports: "
                            "table shows the Markdown text)."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write to this file (atomically) instead of stdout."),
    image_format: str = typer.Option("png", "--image-format",
                                     help="Figures embedded in html: png | svg."),
) -> None:
    """Re-render a saved report (table, markdown, html, csv, json) without recomputing.

    Markdown suits $GITHUB_STEP_SUMMARY; html is one self-contained file with the figures."""
    from spectracli.errors import SpectraError
    from spectracli.report import FORMATS, render
    from spectracli.results import load_report

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise SpectraError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    data = load_report(report_path)
    if data["kind"] == "hessian":
        if fmt == "csv":
            raise SpectraError("csv is for analyze reports; use markdown, html or json for a "
                               "hessian report")
        if fmt == "table":
            fmt = "markdown"
    if fmt == "html":
        from spectracli.report.html import render_html

        emit(render_html(data, image_format=image_format), output)
        return
    if fmt == "table" and output is None and not is_plain_output() and data["kind"] == "track":
        from spectracli.report.track import print_track_rich

        print_track_rich(data, stdout_console())
        return
    if fmt == "table" and output is None and not is_plain_output():
        from spectracli.report.table import print_rich

        print_rich(data, stdout_console())
        return
    emit(render(data, fmt), output)
