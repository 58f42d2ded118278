"""``spectracli analyze CHECKPOINT``: weight spectra, power-law fits and FARMS for every matrix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from spectracli.cli.common import (
    TRUST_PICKLE_HELP,
    emit,
    handle_errors,
    is_plain_output,
    stdout_console,
    terminal_progress,
)

if TYPE_CHECKING:
    from spectracli.analyze import AnalyzeConfig


@contextlib.contextmanager
def progress_callback() -> Iterator[Callable[[int, int, str], None] | None]:
    """analyze's progress callback as a bar on a terminal (layers done); None when piped."""
    with terminal_progress("analyzing") as update:
        if update is None:
            yield None
            return

        def on_layer(done: int, total: int, name: str) -> None:
            update(completed=done, total=total, description=name[-40:] or "done")

        yield on_layer


# Options of ``analyze`` that only choose what is written; every other option sets a number and
# maps onto AnalyzeConfig through ``analyze_config``. ``spectracli track`` reuses those options
# (their definitions and this mapping), so a new analyze option reaches track with no copy.
OUTPUT_OPTIONS = ("checkpoint", "fmt", "output", "plots", "plot_format")


def analyze_config(**options: Any) -> AnalyzeConfig:
    """The AnalyzeConfig of analyze's number-setting options (CLI names, as in its signature)."""
    from spectracli.analyze import AnalyzeConfig

    options = dict(options)
    options["include"] = tuple(options.get("include") or ())
    options["exclude"] = tuple(options.get("exclude") or ())
    options["store_esd"] = options.pop("esd", True)
    return AnalyzeConfig(**options)


@handle_errors
def analyze(
    checkpoint: Path = typer.Argument(..., help="Checkpoint: .safetensors, sharded directory, "
                                      ".pt/.pth/.bin/.ckpt (also Lightning, sharded .bin), .npz, "
                                      ".gguf, .onnx, or a Hugging Face id org/name[@revision]."),
    fmt: str = typer.Option("table", "--format", "-f",
                            help="table | json | csv | markdown | html."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write to this file (atomically) instead of stdout."),
    fit: str = typer.Option("ks", help="xmin rule of the power-law fit: ks | median | peak."),
    min_tail: int = typer.Option(10, help="Smallest tail (eigenvalues) a fit may use."),
    farms: bool = typer.Option(True, "--farms/--no-farms", help="Also fit the FARMS ESD."),
    farms_window: int = typer.Option(2000, help="FARMS window rows (capped by the matrix)."),
    farms_ratio: float = typer.Option(1.0, help="FARMS window aspect ratio cols/rows."),
    farms_steps: int = typer.Option(10, help="FARMS grid offsets per dimension."),
    min_size: int = typer.Option(10, help="Skip matrices with fewer rows or columns than this."),
    include: list[str] = typer.Option([], help="Only tensors whose name matches this glob "
                                      "(repeatable)."),
    exclude: list[str] = typer.Option([], help="Skip tensors whose name matches this glob "
                                      "(repeatable)."),
    conv_view: str = typer.Option("auto", help="Conv kernels as slices (one (out, in) matrix "
                                  "per kernel position), unfold ((out, in*k)) or auto (unfold "
                                  "where slices are degenerate)."),
    split: bool = typer.Option(True, "--split/--no-split", help="Cut fused tensors (q/k/v, "
                               "LSTM/GRU gates, gate/up) into their parts; --no-split keeps "
                               "them whole."),
    normalize: bool = typer.Option(False, help="Divide eigenvalues by max(m, n)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    dtype: str = typer.Option("float64", help="Precision of the eigen solves: float64 | float32."),
    threads: int | None = typer.Option(None, help="Layers solved at once on the CPU, one BLAS "
                                         "thread each (default: the available cores)."),
    base: Path | None = typer.Option(None, help="Analyse W - W_base against this checkpoint "
                                     "(for a LoRA adapter: the merged W_base + dW)."),
    revision: str | None = typer.Option(None, help="Branch, tag or commit when CHECKPOINT is a "
                                        "Hugging Face id (or write org/name@revision)."),
    trust_pickle: bool = typer.Option(False, help=TRUST_PICKLE_HELP),
    esd: bool = typer.Option(True, "--esd/--no-esd", help="Store eigenvalues in the JSON report."),
    plots: Path | None = typer.Option(None, help="Also write plots into this directory."),
    plot_format: str = typer.Option("png", help="png | svg."),
) -> None:
    """Spectra, heavy-tail fits (with and without FARMS) and norms of every weight matrix."""
    options = dict(locals())
    from spectracli.analyze import analyze_checkpoint
    from spectracli.errors import SpectraError
    from spectracli.report import FORMATS, render

    if fmt not in FORMATS:
        raise SpectraError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if plot_format not in ("png", "svg"):
        raise SpectraError(f"--plot-format must be png or svg, got {plot_format!r}")
    config = analyze_config(**{k: v for k, v in options.items() if k not in OUTPUT_OPTIONS})
    with progress_callback() as progress:
        report = analyze_checkpoint(checkpoint, config, progress=progress).to_dict()
    if plots is not None:
        from spectracli.report.plots import write_plots

        write_plots(report, plots, image_format=plot_format)
    if fmt == "table" and output is None and not is_plain_output():
        from spectracli.report.table import print_rich

        print_rich(report, stdout_console())
        return
    emit(render(report, fmt), output)
