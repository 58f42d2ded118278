"""The ``spectracli`` command: a typer app with one module per command."""

from __future__ import annotations

import os

import typer

from spectracli import __version__

app = typer.Typer(
    name="spectracli",
    help="Spectral diagnostics of neural networks: weight ESDs (with FARMS), heavy-tail fits, "
    "Hessian spectra, and a CI gate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"spectracli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Spectral diagnostics of neural networks."""


# Command registration: one line per command module (imports stay light: no torch here).
from spectracli.cli import analyze as _analyze  # noqa: E402

app.command("analyze")(_analyze.analyze)
from spectracli.cli import gate as _gate  # noqa: E402

app.command("gate")(_gate.gate)
app.command("baseline")(_gate.baseline)

from spectracli.cli import compare as _compare  # noqa: E402
from spectracli.cli import plot as _plot  # noqa: E402
from spectracli.cli import report as _report  # noqa: E402

app.command("report")(_report.report)
app.command("plot")(_plot.plot)
app.command("compare")(_compare.compare)

from spectracli.cli import hessian as _hessian  # noqa: E402

app.command("hessian")(_hessian.hessian)

from spectracli.cli import track as _track  # noqa: E402

app.command("track")(_track.track)


def main() -> None:
    # OpenMP threads that spin while waiting made the eigen solves 10-20x slower on a busy
    # 2-core machine and 13% slower on a quiet one (docs/benchmarks.md). It must be set before
    # torch (and its OpenMP runtime) loads; commands import torch lazily, so here is early enough.
    # A user's own (non-empty) setting wins.
    if not os.environ.get("OMP_WAIT_POLICY"):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    app()
