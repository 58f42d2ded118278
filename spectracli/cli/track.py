"""``spectracli track RUN``: follow a training run's checkpoints, step by step.

The weight-analysis options are ``analyze``'s own (their definitions are read from
``spectracli.cli.analyze.analyze`` and mapped by ``analyze_config``), so both commands always
take the same options.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from spectracli.cli import analyze as _analyze_cli
from spectracli.cli import hessian as _hessian_cli
from spectracli.cli.common import (
    check_outputs,
    choice_option,
    emit,
    handle_errors,
    is_plain_output,
    terminal_progress,
)
from spectracli.options import BuiltinLoss, Dtype, Operator, ReportFormat

TRACK_FORMATS = ReportFormat.values()
# Options of ``spectracli hessian`` that ``track --hessian`` takes with their definitions as they
# are there (read from ``spectracli.cli.hessian.hessian``, never copied).
HESSIAN_OPTIONS = ("which", "params", "max_basis", "density", "density_probes", "density_steps",
                   "hvp_mode", "batch_fn", "output_fn")


def _hessian_parameters() -> dict[str, inspect.Parameter]:
    params = inspect.signature(_hessian_cli.hessian).parameters
    return {name: params[name] for name in HESSIAN_OPTIONS}


def _hessian_default(name: str) -> Any:
    default = _hessian_parameters()[name].default
    return getattr(default, "default", default)  # a typer OptionInfo holds the real default


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str, int, int, str], None] | None]:
    with terminal_progress("checkpoints") as update:
        if update is None:
            yield None
            return

        def on_step(stage: str, done: int, total: int, label: str) -> None:
            update(completed=done, total=total, description=f"{stage} {label}"[-50:])

        yield on_step


def _track(
    run: list[Path] = typer.Argument(..., metavar="RUN...",
                                     help="A run directory of checkpoints (checkpoint-<step>/, "
                                     "epoch=E-step=S.ckpt, any name with a step number), or "
                                     "checkpoint paths."),
    glob: str | None = typer.Option(None, help="Only entries of the run directory whose name "
                                    "matches this glob (e.g. 'checkpoint-*')."),
    cache: Path | None = typer.Option(None, help="Cache directory of per-checkpoint analyses, "
                                      "keyed by content (default RUN/.spectracli-cache)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache."),
    fmt: ReportFormat = choice_option(ReportFormat.TABLE, "--format", "-f",
                                      help="Output format (csv: long, one row per step, layer, "
                                      "metric and value)."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write to this file (atomically) instead of stdout."),
    hessian: bool = typer.Option(False, "--hessian", help="Also the top-k Hessian eigenpairs "
                                 "per checkpoint (needs --model and --data)."),
    model: str | None = typer.Option(None, help="Model factory for --hessian: file.py:callable "
                                     "or package.module:callable returning the nn.Module."),
    data: str | None = typer.Option(None, help="Data for --hessian: .npz/.pt/.safetensors with "
                                    "x and y, or file.py:callable."),
    loss: str = typer.Option(BuiltinLoss.CROSS_ENTROPY.value, metavar="LOSS",
                             help=f"{BuiltinLoss.text(' | ')} (the model's own .loss) | "
                             "file.py:callable (returning the batch mean)."),
    x_key: str = typer.Option("x", help="Name of the input tensor in the data file."),
    y_key: str = typer.Option("y", help="Name of the target tensor in the data file."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Hessian eigenpairs per checkpoint."),
    operator: Operator = choice_option(Operator.HESSIAN, "--operator", help="The Hessian or "
                                       "the generalized Gauss-Newton."),
    hessian_dtype: Dtype = choice_option(Dtype.FLOAT32, "--hessian-dtype",
                                         help="Precision of the HVPs."),
    tol: float | None = typer.Option(None, help="Relative residual tolerance of the "
                                     "eigenpairs (default 1e-4 float32, 1e-6 float64)."),
    max_hvps: int | None = typer.Option(None, help="Cap on Lanczos HVPs per checkpoint."),
    trace: bool = typer.Option(False, "--trace", help="Also the Hessian trace (Hutch++)."),
    trace_hvps: int = typer.Option(60, help="HVPs for the trace."),
    lr: float | None = typer.Option(None, help="Learning rate: report lr * lambda_max / 2 and "
                                    "draw the 2/lr line."),
    cold: bool = typer.Option(False, "--cold", help="Start every Lanczos solve from a random "
                              "vector instead of the previous checkpoint's Ritz vectors."),
    gradient: bool = typer.Option(False, "--gradient", help="Also the fraction of the "
                                  "full-dataset gradient's norm in the top-k eigenspace."),
    batch_size: int = typer.Option(512, help="Samples per Hessian batch."),
    max_samples: int | None = typer.Option(None, help="Hessian on a seeded random subset."),
    seed: int = typer.Option(0, help="Seed of subsets and the first start vector."),
    **analyze_options: Any,
) -> None:
    """Follow a training run: per-checkpoint weight spectra and Hessian eigenvalues.

    Weight spectra are cached by content; with --hessian, Hessian eigenvalues are warm-started
    from the previous checkpoint's. Checkpoints are ordered by step.
    \f

    Raises:
        SpectraError: a bad run, format, cache option or Hessian setting (one line, exit 2).
    """
    from spectracli.errors import SpectraError
    from spectracli.track import TrackConfig, track_run

    fmt = fmt.lower()
    if fmt not in TRACK_FORMATS:
        raise SpectraError(f"--format must be one of {', '.join(TRACK_FORMATS)}, got {fmt!r}")
    if no_cache and cache is not None:
        raise SpectraError("--cache and --no-cache exclude each other")
    check_outputs({"--output": output})
    shared = {name: analyze_options.pop(name) for name in HESSIAN_OPTIONS}
    analyze_config = _analyze_cli.analyze_config(**analyze_options)
    config = TrackConfig(
        glob=glob, analyze=analyze_config, cache=False if no_cache else cache,
        trust_pickle=analyze_config.trust_pickle, warm_start=not cold, gradient=gradient,
    )
    if not hessian:
        _refuse_hessian_options({"--model": model, "--data": data, "--lr": lr},
                                cold or gradient or trace, shared)
    else:
        if model is None or data is None:
            raise SpectraError("--hessian needs --model and --data")
        from spectracli.cli.hessian import load_data
        from spectracli.device import resolve_device
        from spectracli.hessian import HessianConfig
        from spectracli.hessian.loading import build_model, resolve_hook, resolve_loss

        config.hessian = HessianConfig(
            k=top_k, operator=operator, tol=tol, max_hvps=max_hvps, dtype=hessian_dtype,
            device=str(resolve_device(analyze_config.device)), batch_size=batch_size,
            max_samples=max_samples, seed=seed, trace=trace, trace_hvps=trace_hvps, lr=lr,
            which=shared["which"].value, params=list(shared["params"] or []) or None,
            max_basis=shared["max_basis"], density=shared["density"],
            density_probes=shared["density_probes"], density_steps=shared["density_steps"],
            hvp_mode=shared["hvp_mode"].value,
        )
        config.hooks = {name: resolve_hook(shared[name], name)
                        for name in ("batch_fn", "output_fn")}
        config.hessian.validate()
        build_model(model)  # fail now, before any checkpoint is read

        def factory() -> Any:
            return build_model(model)

        config.model = factory
        loss_fn, loss_name = resolve_loss(loss)
        config.loss = loss_name if loss_name in BuiltinLoss.values() else loss_fn
        config.data = load_data(data, x_key, y_key)
        config.source = {"model": model, "data": data, "loss": loss_name}
    paths: Any = run[0] if len(run) == 1 else list(run)
    with _progress() as progress:
        report = track_run(paths, config, progress=progress).to_dict()
    from spectracli.report.track import render_track

    if fmt == "table" and output is None and not is_plain_output():
        from spectracli.cli.common import stdout_console
        from spectracli.report.track import print_track_rich

        print_track_rich(report, stdout_console())
        return
    emit(render_track(report, fmt), output)


def _refuse_hessian_options(given: dict[str, Any], switches: bool,
                            shared: dict[str, Any]) -> None:
    """Without --hessian, refuse the options that only the Hessian reads.

    Raises:
        SpectraError: one of ``given`` is set, a switch (--cold, --gradient, --trace) is on, or
            a shared ``hessian`` option differs from its default.
    """
    from spectracli.errors import SpectraError

    for flag, value in given.items():
        if value is not None:
            raise SpectraError(f"{flag} is for the Hessian: add --hessian")
    if switches:
        raise SpectraError("--cold, --gradient and --trace are for the Hessian: add --hessian")
    for name, value in shared.items():
        if value != _hessian_default(name) and value not in (None, []):
            raise SpectraError(f"--{name.replace('_', '-')} is for the Hessian: add --hessian")


def _signature() -> inspect.Signature:
    """The signature typer reads for ``track``.

    Returns:
        track's own parameters, the Hessian options shared with ``hessian``, then every
        number-setting option of ``analyze``.
    """
    own = [p for p in inspect.signature(_track).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    own += list(_hessian_parameters().values())
    names = {p.name for p in own}
    shared = [
        p for name, p in inspect.signature(_analyze_cli.analyze).parameters.items()
        if name not in _analyze_cli.OUTPUT_OPTIONS and name not in names
    ]
    return inspect.Signature([*own, *shared])


@handle_errors
def track(**options: Any) -> None:
    """The ``track`` command (its docstring and signature are :func:`_track`'s)."""
    return _track(**options)


track.__signature__ = _signature()  # type: ignore[attr-defined]
track.__doc__ = _track.__doc__
# analyze's annotations resolved in its own module (they name spectracli.options enums).
track.__annotations__ = {
    **{k: v for k, v in typing.get_type_hints(_analyze_cli.analyze).items() if k != "return"},
    **{k: v for k, v in typing.get_type_hints(_hessian_cli.hessian).items()
       if k in HESSIAN_OPTIONS},
    **_track.__annotations__,
}
