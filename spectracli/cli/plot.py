"""``spectracli plot``: the figures of a saved report (analyze or Hessian), without recomputing."""

from __future__ import annotations

from pathlib import Path

import typer

from spectracli.cli.common import (
    check_outputs,
    choice_option,
    handle_errors,
    load_saved_report,
)
from spectracli.options import ImageFormat


@handle_errors
def plot(
    report: Path = typer.Argument(..., metavar="REPORT",
                                  help="A saved JSON report (analyze, hessian or track)."),
    out: Path = typer.Option(Path("plots"), "--out", "-o", metavar="DIR",
                             help="Directory for the figures (created if missing)."),
    image_format: ImageFormat = choice_option(ImageFormat.PNG, "--image-format",
                                              help="Figure file format."),
) -> None:
    """Draw the figures of a saved report into a directory and list the files written."""
    from spectracli.report.plots import write_plots

    check_outputs(dirs={"--out": out})
    data = load_saved_report(report, "plot", "spectracli analyze {path} --plots plots/")
    for path in write_plots(data, out, image_format=image_format.value):
        print(path)
