"""``spectracli compare A B``: per-layer changes of the main metrics, largest change first.

A and B are two checkpoints or saved reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from spectracli.cli.common import (
    TRUST_PICKLE_HELP,
    check_outputs,
    choice_option,
    device_option,
    emit,
    handle_errors,
    is_plain_output,
    output_option,
    stdout_console,
    verbose_option,
)
from spectracli.options import CompareFormat, FitMethod


def _side(path: Path, config: Any) -> dict[str, Any]:
    """A saved ``.json`` report as is, or a checkpoint analysed with ``config``."""
    from spectracli.results import load_report, looks_like_report

    if looks_like_report(path):
        return load_report(path)
    from spectracli.analyze import analyze_checkpoint
    from spectracli.cli.analyze import progress_callback

    with progress_callback() as progress:
        return analyze_checkpoint(path, config, progress=progress).to_dict()


@handle_errors
def compare(
    a: Path = typer.Argument(..., metavar="A", help="Before: a checkpoint or a saved .json "
                             "report."),
    b: Path = typer.Argument(..., metavar="B", help="After: a checkpoint or a saved .json "
                             "report."),
    fmt: CompareFormat = choice_option(CompareFormat.TABLE, "--format", "-f",
                                       help="Output format."),
    output: Path | None = output_option(),
    rtol: float = typer.Option(1e-6, help="Relative changes at or below this count as unchanged."),
    fit: FitMethod = choice_option(FitMethod.KS, "--fit", help="Checkpoints only: xmin rule of "
                                   "the power-law fit."),
    farms: bool = typer.Option(True, "--farms/--no-farms", help="Checkpoints only: FARMS fits."),
    farms_window: int = typer.Option(2000, help="Checkpoints only: FARMS window rows."),
    min_size: int = typer.Option(10, help="Checkpoints only: skip smaller matrices."),
    include: list[str] = typer.Option([], metavar="GLOB", help="Checkpoints only: tensor name "
                                      "glob (repeatable)."),
    exclude: list[str] = typer.Option([], metavar="GLOB", help="Checkpoints only: tensor name "
                                      "glob to skip (repeatable)."),
    device: str = device_option(note=" Checkpoints only."),
    trust_pickle: bool = typer.Option(False, help=TRUST_PICKLE_HELP),
    verbose: bool = verbose_option(),
) -> None:
    """Compare sigma_max, condition number, alpha, FARMS alpha and stable rank layer by layer."""
    from spectracli.compare import compare_reports
    from spectracli.report import comparison

    check_outputs({"--output": output})
    config = None
    if not all(str(p).lower().endswith(".json") for p in (a, b)):
        from spectracli.analyze import AnalyzeConfig

        config = AnalyzeConfig(fit=fit.value, farms=farms, farms_window=farms_window,
                               min_size=min_size, include=tuple(include),
                               exclude=tuple(exclude), device=device,
                               trust_pickle=trust_pickle, store_esd=False)
    result = compare_reports(_side(a, config), _side(b, config), rtol=rtol)
    if fmt == CompareFormat.JSON:
        emit(comparison.render_comparison_json(result), output)
    elif fmt == CompareFormat.MARKDOWN:
        emit(comparison.render_comparison_markdown(result), output)
    elif output is None and not is_plain_output():
        comparison.print_comparison(result, stdout_console(), verbose=verbose)
    else:
        emit(comparison.render_comparison_plain(result, verbose=verbose), output)
