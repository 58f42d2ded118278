"""``spectracli hessian``: top eigenvalues, trace and density of the loss Hessian (or GGN)."""

from __future__ import annotations

import contextlib
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
    in_cli_words,
    is_plain_output,
    output_option,
    stdout_console,
    terminal_progress,
)
from spectracli.errors import SpectraError
from spectracli.options import Blocks, BuiltinLoss, Dtype, HessianFormat, HvpMode, Operator, Which
from spectracli.report.hessian import (
    by_end,
    condition_text,
    convergence_advice,
    eigen_rows,
    eigen_title,
    outlier_text,
)


class HvpEstimate:
    """The HVPs a stage is expected to take, for a progress bar with a meaningful end and ETA.

    Trace and density stages have a fixed count. Lanczos stops when the residual reaches the
    tolerance: its residual falls about geometrically, so the remaining steps are estimated
    from the slope of log(residual) over the last steps, capped by the stage's maximum.
    """

    def __init__(self, tol: float) -> None:
        self.tol = tol
        self.history: list[tuple[int, float]] = []

    def total(self, stage: str, done: int, cap: int, residual: float | None) -> int:
        """The HVPs the stage is now expected to take in all (``cap`` when unknown)."""
        import math

        if stage != "lanczos" or residual is None or not residual > 0:
            return cap
        self.history.append((done, residual))
        recent = self.history[-6:]
        if len(recent) < 3 or residual <= self.tol:
            return cap if residual > self.tol else done
        (d0, r0), (d1, r1) = recent[0], recent[-1]
        if d1 <= d0 or not r1 < r0:
            return cap
        slope = (math.log(r0) - math.log(r1)) / (d1 - d0)  # log-residual drop per HVP
        remaining = math.log(r1 / self.tol) / slope
        return int(min(cap, max(done + 1, done + math.ceil(remaining - 1e-9))))


@contextlib.contextmanager
def _progress(tol: float):
    """A rich bar on a terminal: HVPs done of those expected, current residual, ETA.

    Yields:
        ``progress(stage, done, total, residual)`` for the library, or None when piped.
    """
    with terminal_progress("HVPs", info=True, eta=True) as update:
        if update is None:
            yield None
            return
        estimate = HvpEstimate(tol)

        def on_hvp(stage: str, done: int, total: int, residual: float | None) -> None:
            info = f"residual {residual:.1e}" if residual is not None else ""
            update(completed=done, total=estimate.total(stage, done, total, residual),
                   description=f"{stage} HVPs", info=info)

        yield on_hvp


def _fmt(x: Any) -> str:
    from spectracli.report.numbers import fmt_num

    return fmt_num(x, 6)


def _print_summary(d: dict[str, Any]) -> None:
    import sys

    from rich import box
    from rich.table import Table

    console = stdout_console()
    s = d["settings"]
    console.print(
        f"{d['operator']} of the mean {s['loss']} loss over {d['n_samples']} samples, "
        f"{d['n_params']:,} parameters (model in eval mode, {s['dtype']} HVPs, {s['device']})"
    )
    console.print(f"loss {_fmt(d['loss'])}   gradient norm {_fmt(d['grad_norm'])}   "
                  f"weighted by {d.get('loss_weighting', 'samples')}")
    if d.get("n_frozen"):
        console.print(f"{d['n_frozen']:,} parameters held fixed "
                      f"({len(d['frozen_params'])} tensors: frozen or not matched by --params)")
    table = Table(title=f"{eigen_title(d)} (tol {s['tol']:.0e})",
                  box=box.ASCII if is_plain_output(sys.stdout) else box.HEAVY_HEAD)
    for col in ("#", "eigenvalue", "residual", "converged"):
        table.add_column(col, justify="right")
    for label, v, r, c in eigen_rows(d):  # numbered from the asked end
        table.add_row(label, f"{v:.8g}", f"{r:.1e}", "yes" if c else "NO")
    console.print(table)
    for line in _summary_lines(d):
        console.print(line)
    if d.get("blocks"):
        _print_blocks(d, console, sys.stdout)


def _summary_lines(d: dict[str, Any]) -> list[str]:
    """The lines under the eigenvalue table.

    Returns:
        HVPs, condition number, edge of stability, trace, density, and a warning when pairs
        did not converge.
    """
    lines = [f"HVPs {d['hvp_count']} ({', '.join(f'{k} {v}' for k, v in d['hvp_counts'].items())})"
             f" in {d['timing']['total_s']:.2f} s"]
    # the reason is the library's (which=both): said as the flag here
    cond = in_cli_words(SpectraError(condition_text(d), params=("which",))).replace(
        "--which=both", "--which both")
    lines.append(f"condition number lambda_max/lambda_min {cond}")
    if d["edge_of_stability"] is not None:
        eos = d["edge_of_stability"]
        verdict = "beyond" if eos >= 1 else "within"
        lines.append(f"edge of stability lr*lambda_max/2 = {_fmt(eos)} "
                     f"({verdict} the GD stability limit 1)")
    if d["trace"] is not None:
        t = d["trace"]
        lines.append(f"trace {_fmt(t['estimate'])} (exact: {t['n_matvecs']} unit-vector HVPs)"
                     if t.get("exact") else f"trace {_fmt(t['estimate'])} +- {_fmt(t['stderr'])} "
                     f"(Hutch++, {t['n_matvecs']} HVPs)")
    if d["density"] is not None:
        den = d["density"]
        lines.append(f"density: {den['n_probes']} probes x {den['n_steps']} steps; "
                     f"{outlier_text(den)}")
    advice = convergence_advice(d)
    if advice:
        lines.append(f"WARNING: {advice}")
    return lines


def _print_blocks(d: dict[str, Any], console: Any, stream: Any) -> None:
    from rich import box
    from rich.table import Table

    which = d["settings"].get("which") or "largest"
    table = Table(title=f"diagonal blocks ({d['settings']['blocks']}), in model order",
                  box=box.ASCII if is_plain_output(stream) else box.HEAVY_HEAD)
    ends = {"largest": ("lambda_max", "next largest"), "smallest": ("lambda_min", "next smallest")}
    asked = ("largest", "smallest") if which == "both" else (which,)
    for col in ("block", "params", *(c for end in asked for c in ends[end]), "trace", "+-"):
        table.add_column(col, justify="left" if col == "block" else "right")
    for b in d["blocks"]:
        largest, smallest = by_end(b["eigenvalues"], which)
        cells = []
        for end in asked:  # each end its own columns, each starting at its extreme value
            ev = largest if end == "largest" else smallest
            cells += [f"{ev[0]:.6g}" if ev else "-", " ".join(f"{v:.4g}" for v in ev[1:]) or "-"]
        table.add_row(b["name"], f"{b['n_params']:,}", *cells, f"{b['trace']:.6g}",
                      f"{b['trace_stderr']:.2g}")
    console.print(table)


def load_data(ref: str, x_key: str = "x", y_key: str = "y") -> Any:
    """``--data``: a tensor data file (read by ``spectracli.io``) or ``file.py:callable``."""
    from spectracli.hessian.loading import call_data
    from spectracli.io.tensor_data import is_data_file, read_xy

    return read_xy(ref, x_key, y_key) if is_data_file(ref) else call_data(ref)


def _save_vectors(result: Any, path: Path) -> None:
    """Ritz vectors by parameter name, written atomically (temp file, then rename)."""
    import json
    import os
    import tempfile

    from safetensors.torch import save_file

    tensors = result.eigenvectors_by_name()
    meta = {"eigenvalues": json.dumps(result.eigenvalues), "operator": result.operator,
            "layout": "name -> (k, *shape), row i is eigenvector i (float64, unit norm overall)"}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _thread_count(threads: str) -> int:
    """The thread count ``--threads`` asks for: a number, or ``auto``.

    ``auto`` is torch's count cut to the idle cores: OpenMP threads spin-wait, and on cores busy
    with other processes torch's default thread count made HVPs 10-40x slower than one thread
    (docs/hessian.md).

    Returns:
        The count, at least 1.

    Raises:
        SpectraError: neither ``auto`` nor a number >= 1.
    """
    import torch

    from spectracli.errors import SpectraError
    from spectracli.threads import idle_threads

    if threads == "auto":
        return idle_threads(torch.get_num_threads())
    if not threads.isdigit() or int(threads) < 1:
        raise SpectraError(f"--threads must be auto or a number >= 1, got {threads!r}")
    return int(threads)


@handle_errors
def hessian(
    model: str = typer.Option(..., metavar="FILE.py:FACTORY", help="Model factory: "
                              "path/to/file.py:callable or package.module:callable returning an "
                              "nn.Module."),
    weights: Path | None = typer.Option(None, metavar="CHECKPOINT", help="Checkpoint to load "
                                        "strictly into the model (without it: the factory's "
                                        "initialisation, with a warning)."),
    data: str = typer.Option(..., metavar="DATA",
                             help=".npz/.pt/.safetensors with tensors x and y, or "
                             "file.py:callable returning tensors, a Dataset (of tuples or "
                             "dicts), a DataLoader or a list of batches."),
    loss: str = typer.Option(BuiltinLoss.CROSS_ENTROPY.value, metavar="LOSS",
                             help=f"{BuiltinLoss.text(' | ')} (the model's own .loss) | "
                             "file.py:callable (returning the batch mean)."),
    batch_fn: str | None = typer.Option(None, metavar="FILE.py:FN",
                                        help="file.py:callable mapping a batch to "
                                        "(args, kwargs, target)."),
    output_fn: str | None = typer.Option(None, metavar="FILE.py:FN",
                                         help="file.py:callable mapping the model's "
                                         "output to the tensor the loss reads."),
    params: list[str] | None = typer.Option(None, "--params", metavar="GLOB",
                                            help="Glob of parameter names "
                                            "(repeatable): the Hessian w.r.t. these only."),
    blocks: Blocks | None = choice_option(None, "--blocks", help="Also the top-k and trace "
                                          "of each diagonal block (per module or tensor)."),
    blocks_plot: Path | None = typer.Option(None, metavar="FILE",
                                            help="With --blocks: write a plot of the "
                                            "blocks' lambda_max and trace by depth (.png/.svg)."),
    save_eigenvectors: Path | None = typer.Option(None, metavar="FILE",
                                                  help="Write the Ritz vectors to this "
                                                  ".safetensors file, one (k, *shape) tensor "
                                                  "per parameter name."),
    x_key: str = typer.Option("x", metavar="NAME", help="Input tensor in the data file."),
    y_key: str = typer.Option("y", metavar="NAME", help="Target tensor in the data file."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Number of eigenpairs (per end)."),
    which: Which = choice_option(Which.LARGEST, "--which", help="Which end of the spectrum."),
    operator: Operator = choice_option(Operator.HESSIAN, "--operator", help="The Hessian or "
                                       "the generalized Gauss-Newton."),
    tol: float | None = typer.Option(None, help="Relative residual tolerance "
                                     "(default 1e-4 for float32 HVPs, 1e-6 for float64)."),
    max_hvps: int | None = typer.Option(None, help="Cap on Lanczos HVPs (default "
                                        "max(300, 20 x wanted))."),
    max_basis: int | None = typer.Option(None, help="Cap on Lanczos basis vectors (restarts "
                                         "beyond it); default from k, the parameter count "
                                         "and free memory (docs/hessian.md)."),
    trace: bool = typer.Option(False, "--trace", help="Estimate the trace (Hutch++)."),
    trace_hvps: int = typer.Option(60, help="HVPs for the trace."),
    density: bool = typer.Option(False, "--density", help="Spectral density (SLQ)."),
    density_probes: int = typer.Option(5, help="SLQ random probes."),
    density_steps: int = typer.Option(24, help="SLQ Lanczos steps per probe."),
    lr: float | None = typer.Option(None, help="Learning rate: report lr * lambda_max / 2."),
    batch_size: int = typer.Option(512, help="Samples per batch (the result does not depend "
                                   "on it)."),
    max_samples: int | None = typer.Option(None, help="Use a seeded random subset of this size."),
    seed: int = typer.Option(0, help="Seed of subsets and random start vectors."),
    device: str = device_option(),
    dtype: Dtype = choice_option(Dtype.FLOAT32, "--dtype", help="Precision of the HVPs."),
    hvp_mode: HvpMode = choice_option(HvpMode.REVERSE_OVER_REVERSE, "--hvp-mode",
                                      help="reverse-over-reverse: double backward, measured "
                                      "faster on CPU."),
    threads: str = typer.Option("auto", metavar="N|auto",
                                help="CPU threads for torch: a number, or auto "
                                "(torch's count, cut to the idle cores by the load average)."),
    fmt: HessianFormat = choice_option(HessianFormat.TABLE, "--format", "-f",
                                       help="Output format."),
    output: Path | None = output_option(),
    trust_pickle: bool = typer.Option(False, help=TRUST_PICKLE_HELP),
) -> None:
    """Top eigenvalues, trace and spectral density of the Hessian of the mean loss over a dataset.

    \f

    Raises:
        SpectraError: bad model, weights, data, loss or settings (one line, exit 2).
    """
    from spectracli.device import resolve_device
    from spectracli.errors import SpectraError
    from spectracli.hessian import HessianConfig, analyze
    from spectracli.hessian.loading import (
        apply_state_dict,
        build_model,
        resolve_hook,
        resolve_loss,
    )
    config = HessianConfig(
        k=top_k, which=which.value, operator=operator.value, tol=tol, max_hvps=max_hvps,
        max_basis=max_basis, dtype=dtype.value, device=str(resolve_device(device)),
        hvp_mode=hvp_mode.value, batch_size=batch_size,
        max_samples=max_samples, seed=seed, trace=trace, trace_hvps=trace_hvps,
        density=density, density_probes=density_probes, density_steps=density_steps, lr=lr,
        params=list(params) if params else None, blocks=blocks.value if blocks else None,
    )
    if save_eigenvectors is not None and save_eigenvectors.suffix != ".safetensors":
        raise SpectraError(f"--save-eigenvectors must name a .safetensors file, got "
                           f"{save_eigenvectors}")
    if blocks_plot is not None and blocks is None:
        raise SpectraError("--blocks-plot needs --blocks module or --blocks parameter")
    config.validate()
    check_outputs({"--output": output, "--blocks-plot": blocks_plot,
                   "--save-eigenvectors": save_eigenvectors})
    from spectracli.threads import torch_threads

    # The thread count is the process's: set for this command only (a CliRunner or a script
    # calling the command keeps its own).
    with torch_threads(_thread_count(threads)):
        net = build_model(model)
        if weights is not None:
            from spectracli.io import load_state_dict

            apply_state_dict(net, load_state_dict(weights, trust_pickle=trust_pickle), str(weights))
        loss_fn, loss_name = resolve_loss(loss)
        dataset = load_data(data, x_key, y_key)
        hooks = {"batch_fn": resolve_hook(batch_fn, "batch_fn"),
                 "output_fn": resolve_hook(output_fn, "output_fn")}
        source = {"model": model, "weights": str(weights) if weights else None, "data": data,
                  "loss": loss_name}
        from spectracli import distributed

        distributed.init()  # under torchrun: the batches sharded over the ranks, rank 0 writes
        with _progress(config.resolved_tol()) as progress:
            result = analyze(net, dataset, loss_fn, config,
                             progress=progress if distributed.rank() == 0 else None, source=source,
                             return_vectors=save_eigenvectors is not None, **hooks)
        if distributed.rank() != 0:
            distributed.shutdown()
            return
        try:
            _write(result, save_eigenvectors, weights, model, blocks_plot, fmt, output)
        finally:
            distributed.shutdown()


def _write(result: Any, save_eigenvectors: Path | None, weights: Path | None, model: str,
           blocks_plot: Path | None, fmt: HessianFormat, output: Path | None) -> None:
    """The result as asked: eigenvectors, the report (JSON, markdown or a summary), a plot."""
    from spectracli.results import dumps_report

    if save_eigenvectors is not None:
        _save_vectors(result, save_eigenvectors)
    report = result.to_dict()
    if weights is None:  # said once the run is done, so an error stays the only line
        import sys

        print(f"warning: no --weights: this is the Hessian of {model}'s initialisation "
              "(random weights), not of a trained model", file=sys.stderr)
    if blocks_plot is not None:
        from spectracli.report.hessian_blocks import save_blocks_plot

        save_blocks_plot(report, blocks_plot)
    if fmt == HessianFormat.JSON:
        emit(dumps_report(report), output)
        return
    if fmt == HessianFormat.MARKDOWN:
        from spectracli.report import render

        emit(render(report, "markdown"), output)
        return
    if output is not None:
        emit(dumps_report(report), output)
    _print_summary(report)
