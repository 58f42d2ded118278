"""``spectracli compare A B``: per-layer changes of the main metrics between two checkpoints or
saved reports, largest change first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from spectracli.cli.common import TRUST_PICKLE_HELP, emit, handle_errors

FORMATS = ("table", "json", "markdown")


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
    a: Path = typer.Argument(..., help="Before: a checkpoint or a saved .json report."),
    b: Path = typer.Argument(..., help="After: a checkpoint or a saved .json report."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json | markdown."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write to this file (atomically) instead of stdout."),
    rtol: float = typer.Option(1e-6, help="Relative changes at or below this count as unchanged."),
    fit: str = typer.Option("ks", help="Checkpoints only: xmin rule, ks | median | peak."),
    farms: bool = typer.Option(True, "--farms/--no-farms", help="Checkpoints only: FARMS fits."),
    farms_window: int = typer.Option(2000, help="Checkpoints only: FARMS window rows."),
    min_size: int = typer.Option(10, help="Checkpoints only: skip smaller matrices."),
    include: list[str] = typer.Option([], help="Checkpoints only: tensor name glob (repeatable)."),
    exclude: list[str] = typer.Option([], help="Checkpoints only: tensor name glob to skip."),
    device: str = typer.Option("auto", help="Checkpoints only: auto | cpu | cuda."),
    trust_pickle: bool = typer.Option(False, help=TRUST_PICKLE_HELP),
) -> None:
    """Compare sigma_max, condition number, alpha, FARMS alpha and stable rank layer by layer."""
    from spectracli.compare import compare_reports
    from spectracli.errors import SpectraError
    from spectracli.report import comparison

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise SpectraError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    config = None
    if not all(str(p).lower().endswith(".json") for p in (a, b)):
        from spectracli.analyze import AnalyzeConfig

        config = AnalyzeConfig(fit=fit, farms=farms, farms_window=farms_window,
                               min_size=min_size, include=tuple(include),
                               exclude=tuple(exclude), device=device,
                               trust_pickle=trust_pickle, store_esd=False)
    result = compare_reports(_side(a, config), _side(b, config), rtol=rtol)
    if fmt == "json":
        text = comparison.render_comparison_json(result)
    elif fmt == "markdown":
        text = comparison.render_comparison_markdown(result)
    else:
        text = comparison.render_comparison_plain(result)
    emit(text, output)
