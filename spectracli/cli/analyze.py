"""``spectracli analyze CHECKPOINT``: weight spectra, power-law fits and FARMS for every matrix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    refuse_binary_to_terminal,
    stdout_console,
    terminal_progress,
    verbose_option,
)
from spectracli.options import (
    ConvView,
    Dtype,
    FarmsGrid,
    FarmsPrecision,
    FitMethod,
    ImageFormat,
    ReportFormat,
)

CHECKPOINT_HELP = ("A checkpoint: .safetensors, a sharded directory, .pt/.pth/.bin/.ckpt (also "
                   "Lightning, sharded .bin), .npz, .gguf, .onnx, or a Hugging Face id "
                   "org/name[@revision].")

if TYPE_CHECKING:
    from spectracli.analyze import AnalyzeConfig


@contextlib.contextmanager
def progress_callback() -> Iterator[Callable[..., None] | None]:
    """analyze's progress callback as a bar on a terminal; None when piped.

    The bar fills by modelled work (each matrix's solve cost, ``analyze.plan_cost``), shows the
    matrices done and in all, and estimates the time left from the mean work rate so far, so a
    large embedding solved first does not make the estimate swing.

    Yields:
        ``progress(done, total, layer name, work=(done, total))``, or None when stderr is not a
        terminal.
    """
    with terminal_progress("analyzing", work=True) as update:
        if update is None:
            yield None
            return

        def on_layer(
            done: int, total: int, name: str, work: tuple[float, float] | None = None
        ) -> None:
            from spectracli.report.text import shorten_middle

            work_done, work_total = work if work is not None else (done, total)
            update(completed=work_done, total=work_total, count=f"{done}/{total}",
                   description=shorten_middle(name, 32) or "done")

        yield on_layer


# Options of ``analyze`` that only choose what is written; every other option sets a number and
# maps onto AnalyzeConfig through ``analyze_config``. ``spectracli track`` reuses those options
# (their definitions and this mapping), so a new analyze option reaches track with no copy.
OUTPUT_OPTIONS = ("checkpoint", "fmt", "output", "plots", "plot_format", "verbose")


def analyze_config(**options: Any) -> AnalyzeConfig:
    """The AnalyzeConfig of analyze's number-setting options (CLI names, as in its signature).

    Returns:
        The config: choices as their plain values, ``--jobs`` (or its old spelling
        ``--threads``) as ``threads``.
    """
    from spectracli.analyze import AnalyzeConfig

    options = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
    options["include"] = tuple(options.get("include") or ())
    options["exclude"] = tuple(options.get("exclude") or ())
    options["store_esd"] = options.pop("esd", True)
    jobs, alias = options.pop("jobs", None), options.pop("threads_alias", None)
    options["threads"] = jobs if jobs is not None else alias
    return AnalyzeConfig(**options)


@handle_errors
def analyze(
    checkpoint: Path = typer.Argument(..., metavar="CHECKPOINT", help=CHECKPOINT_HELP),
    fmt: ReportFormat = choice_option(ReportFormat.TABLE, "--format", "-f",
                                      help="Output format (html needs --output on a terminal)."),
    output: Path | None = output_option(),
    fit: FitMethod = choice_option(FitMethod.KS, "--fit", help="xmin rule of the power-law fit "
                                   "(docs/metrics.md)."),
    min_tail: int = typer.Option(10, help="Smallest tail (eigenvalues) a fit may use."),
    ci_level: float = typer.Option(0.95, help="Confidence level of alpha_ci (bootstrap "
                                   "interval of alpha)."),
    ci_resamples: int = typer.Option(200, help="Bootstrap resamples per fit (xmin re-chosen on "
                                     "each); 0: the analytic interval, cheaper."),
    farms: bool = typer.Option(True, "--farms/--no-farms", help="Also fit the FARMS ESD."),
    farms_window: int = typer.Option(2000, help="FARMS window rows (capped by the matrix)."),
    farms_ratio: float = typer.Option(1.0, help="FARMS window aspect ratio cols/rows."),
    farms_grid: FarmsGrid = choice_option(FarmsGrid.BOUNDED, "--farms-grid", help="FARMS "
                                          "window layout: bounded (the released windows, as "
                                          "many as --farms-budget allows) or released (the "
                                          "released code's --farms-steps x --farms-steps grid)."),
    farms_budget: float = typer.Option(1.0, help="bounded grid: FARMS window solves cost at "
                                       "most this times the plain ESD (modelled)."),
    farms_steps: int = typer.Option(10, help="FARMS offsets per dimension of the released "
                                    "grid."),
    farms_precision: FarmsPrecision = choice_option(
        FarmsPrecision.AUTO, "--farms-precision", help="FARMS window eigen solves: auto "
        "(float32 where its error bound leaves alpha within max(0.01, 0.1 alpha_se), else "
        "float64; docs/metrics.md), float64 or float32."),
    min_size: int = typer.Option(10, help="Skip matrices with fewer rows or columns than this."),
    include: list[str] = typer.Option([], metavar="GLOB", help="Only tensors (or parts, e.g. "
                                      "'*[q]') whose name matches this glob (repeatable)."),
    exclude: list[str] = typer.Option([], metavar="GLOB", help="Skip tensors (or parts) whose "
                                      "name matches this glob (repeatable)."),
    conv_view: ConvView = choice_option(ConvView.AUTO, "--conv-view", help="Conv kernels as "
                                        "slices (one (out, in) matrix per kernel position), "
                                        "unfold ((out, in*k)) or auto (unfold where slices are "
                                        "degenerate)."),
    split: bool = typer.Option(True, "--split/--no-split", help="Cut fused tensors (q/k/v, "
                               "LSTM/GRU gates, gate/up) into their parts; --no-split keeps "
                               "them whole."),
    normalize: bool = typer.Option(False, help="Divide eigenvalues by max(m, n)."),
    device: str = device_option(),
    dtype: Dtype = choice_option(Dtype.FLOAT64, "--dtype",
                                 help="Precision of the eigen solves."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", min=1,
                                    help="Layers solved at once on the CPU, one BLAS thread each "
                                    "(default: the available cores)."),
    threads_alias: int | None = typer.Option(None, "--threads", min=1, hidden=True,
                                             help="Old spelling of --jobs."),
    base: Path | None = typer.Option(None, metavar="CHECKPOINT",
                                     help="Analyse W - W_base against this checkpoint (for a "
                                     "LoRA adapter: the merged W_base + dW)."),
    revision: str | None = typer.Option(None, metavar="REVISION",
                                        help="Branch, tag or commit when CHECKPOINT is a "
                                        "Hugging Face id (or write org/name@revision)."),
    trust_pickle: bool = typer.Option(False, help=TRUST_PICKLE_HELP),
    esd: bool = typer.Option(True, "--esd/--no-esd", help="Store eigenvalues in the JSON report."),
    plots: Path | None = typer.Option(None, metavar="DIR",
                                      help="Also write plots into this directory."),
    plot_format: ImageFormat = choice_option(ImageFormat.PNG, "--plot-format",
                                             help="Figure file format for --plots."),
    verbose: bool = verbose_option(),
) -> None:
    """Spectra, heavy-tail fits (with and without FARMS) and norms of every weight matrix."""
    options = dict(locals())
    from spectracli import distributed
    from spectracli.analyze import analyze_checkpoint

    refuse_binary_to_terminal(fmt, output)
    check_outputs({"--output": output}, {"--plots": plots})
    config = analyze_config(**{k: v for k, v in options.items() if k not in OUTPUT_OPTIONS})
    distributed.init()  # under torchrun: layers sharded over the ranks, rank 0 writes
    with progress_callback() as progress:
        report = analyze_checkpoint(
            checkpoint, config, progress=progress if distributed.rank() == 0 else None
        ).to_dict()
    if distributed.rank() != 0:
        distributed.shutdown()
        return
    try:
        _write(report, fmt, output, plots, plot_format, verbose)
    finally:
        distributed.shutdown()


def _write(report: dict, fmt: ReportFormat, output: Path | None, plots: Path | None,
           plot_format: ImageFormat, verbose: bool) -> None:
    """The report as asked: plots, then a table on the terminal or the format to a file."""
    from spectracli.report import render

    if plots is not None:
        from spectracli.report.plots import write_plots

        write_plots(report, plots, image_format=plot_format.value)
    if fmt == ReportFormat.TABLE and output is None and not is_plain_output():
        from spectracli.report.table import print_rich

        print_rich(report, stdout_console(), verbose=verbose)
        return
    if fmt == ReportFormat.TABLE:
        from spectracli.report.table import render_plain

        emit(render_plain(report, verbose=verbose), output)
        return
    emit(render(report, fmt.value), output)

