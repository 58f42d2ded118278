"""``spectracli report``: re-render a saved report (analyze or Hessian) without recomputing."""

from __future__ import annotations

from pathlib import Path

import typer

from spectracli.cli.common import (
    check_outputs,
    choice_option,
    emit,
    handle_errors,
    is_plain_output,
    load_saved_report,
    output_option,
    refuse_binary_to_terminal,
    stdout_console,
    verbose_option,
)
from spectracli.options import ImageFormat, ReportFormat


@handle_errors
def report(
    report_path: Path = typer.Argument(..., metavar="REPORT",
                                       help="A saved JSON report (analyze, hessian or track)."),
    fmt: ReportFormat = choice_option(ReportFormat.TABLE, "--format", "-f",
                                      help="Output format (Hessian reports: table shows the "
                                      "Markdown text; html needs --output on a terminal)."),
    output: Path | None = output_option(),
    image_format: ImageFormat = choice_option(ImageFormat.PNG, "--image-format",
                                              help="Figures embedded in html."),
    verbose: bool = verbose_option(),
) -> None:
    """Re-render a saved report (table, markdown, html, csv, json) without recomputing.

    Markdown suits $GITHUB_STEP_SUMMARY; html is one self-contained file with the figures.
    \f

    Raises:
        SpectraError: a report that cannot be read or rendered, or an output that cannot be
            written (exit code 2, one line).
    """
    from spectracli.errors import SpectraError
    from spectracli.report import render

    refuse_binary_to_terminal(fmt, output)
    check_outputs({"--output": output})
    data = load_saved_report(report_path, "report", "spectracli analyze {path}",
                             save="spectracli analyze {path} -f json -o report.json")
    name = fmt.value
    if data["kind"] == "hessian":
        if name == "csv":
            raise SpectraError("csv is for analyze reports; use markdown, html or json for a "
                               "hessian report")
        if name == "table":
            name = "markdown"
    if name == "html":
        from spectracli.report.html import render_html

        emit(render_html(data, image_format=image_format.value), output)
        return
    if name == "table" and data["kind"] == "track":
        if output is None and not is_plain_output():
            from spectracli.report.track import print_track_rich

            print_track_rich(data, stdout_console())
            return
        emit(render(data, name), output)
        return
    if name == "table":
        if output is None and not is_plain_output():
            from spectracli.report.table import print_rich

            print_rich(data, stdout_console(), verbose=verbose)
            return
        from spectracli.report.table import render_plain

        emit(render_plain(data, verbose=verbose), output)
        return
    emit(render(data, name), output)
