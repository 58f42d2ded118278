"""``spectracli plot``: the figures of a saved report (analyze or Hessian), without recomputing."""

from __future__ import annotations

from pathlib import Path

import typer

from spectracli.cli.common import handle_errors


@handle_errors
def plot(
    report: Path = typer.Argument(..., help="A saved JSON report (analyze, hessian or track)."),
    out: Path = typer.Option(Path("plots"), "--out", "-o", help="Directory for the figures "
                             "(created if missing)."),
    image_format: str = typer.Option("png", "--image-format", help="png or svg."),
) -> None:
    """Draw the figures of a saved report into a directory and list the files written."""
    from spectracli.report.plots import write_plots
    from spectracli.results import load_report

    data = load_report(report)
    for path in write_plots(data, out, image_format=image_format):
        print(path)
