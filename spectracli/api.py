"""The Python entry points: ``spectracli.analyze`` and ``spectracli.hessian``.

``spectracli.analyze(obj, **options)`` and ``spectracli.hessian(model, data, loss, **options)``.

They take the same options as the CLI under their Python names (the fields of
:class:`~spectracli.analyze.AnalyzeConfig` and :class:`~spectracli.hessian.api.HessianConfig`)
and return the result objects the CLI renders, so a notebook and the CLI compute the same
numbers. See docs/python.md for a walk-through.

Why ``spectracli.analyze`` can be called although it is also a module: ``spectracli.analyze``
and ``spectracli.hessian`` are modules (``from spectracli.analyze import AnalyzeConfig`` and
``import spectracli.hessian`` work as always, and so does patching their attributes), and each
is made callable by setting its ``__class__`` to :class:`EntryPointModule`, the hook the Python
reference documents for customising a module ("Customizing module attribute access"). Calling
the module calls the function of the same name here. A package attribute that is a plain
function could not work: importing the submodule rebinds the attribute to the module. Static
type checkers do not know modules can be called; they read :func:`analyze` and :func:`hessian`
here (``from spectracli.api import analyze``).

Example::

    >>> import spectracli
    >>> report = spectracli.analyze("sample_models/digits_mlp.safetensors", fit="median")
    >>> [layer.name for layer in report.layers]
    ['fc1.weight', 'fc2.weight', 'head.weight']
    >>> report.layers[0].farms.fit_method
    'median'
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spectracli.errors import SpectraTypeError

if TYPE_CHECKING:  # pragma: no cover
    from spectracli.analyze import Progress
    from spectracli.hessian.api import HessianResult
    from spectracli.results import AnalysisReport


def _options(cls: type, options: dict[str, Any], func: str) -> dict[str, Any]:
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise SpectraTypeError(
            f"{func}() got unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; options are {', '.join(names)}"
        )
    return options


def _globs(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def analyze(
    source: Any,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> AnalysisReport:
    """Weight spectra of every matrix of a model: ESD, norms, power-law fits with and without FARMS.

    The same numbers as ``spectracli analyze`` (definitions in docs/metrics.md).

    Args:
        source: an ``nn.Module`` (its parameters and persistent buffers as they are, on their
            device: nothing is copied or written; tied parameters analysed once, the other names
            recorded as ``aliases``), a mapping of names to tensors (a state dict, or a training
            checkpoint dict with one under ``state_dict``/``model``...; numpy arrays alone are
            read without importing torch, :mod:`spectracli.io.arrays`), a path (file or
            sharded directory), or a Hugging Face id (resolved by
            :func:`spectracli.io.open_checkpoint`).
        progress: ``progress(done, total, name)``: matrices solved and in all, as they are
            submitted and solved; a callback that takes a ``work`` keyword also gets
            ``work=(done, total)`` in modelled flops (``analyze.plan_cost``) for a time estimate.
        **options: the fields of :class:`~spectracli.analyze.AnalyzeConfig`, e.g. ``fit="median"``,
            ``farms=False``, ``include="*attn*"`` (a glob or a list of globs), ``base=other``
            (W - W_base against another source of any of the kinds above).

    Returns:
        An :class:`~spectracli.results.AnalysisReport`: ``layers`` (attribute access mirrors the
        JSON keys), ``skipped``, ``summary``, ``to_pandas()``, ``to_json()``, ``plot()``.

    Raises:
        SpectraTypeError: an unknown option or a source of another type (a ``TypeError``).
        SpectraError: an invalid option value, naming the option (a ``ValueError``).
        CheckpointError: an unreadable checkpoint (``FileNotFoundError`` when it is missing).

    Example:
        A 64 x 32 matrix with singular values 1..2 (a diagonal block over zeros): the spectral
        norm is sigma_max = 2 and the condition number sigma_max / sigma_min = 2.

        >>> import torch, spectracli
        >>> w = torch.cat([torch.linspace(1.0, 2.0, 32).diag(), torch.zeros(32, 32)])
        >>> layer = spectracli.analyze({"fc.weight": w}).layers[0]
        >>> layer.matrix_shape, round(layer.sigma_max, 6), round(layer.condition_number, 6)
        ([64, 32], 2.0, 2.0)
    """
    from spectracli.analyze import AnalyzeConfig, analyze_checkpoint

    options = dict(_options(AnalyzeConfig, options, "analyze"))
    for key in ("include", "exclude"):
        if key in options:
            options[key] = _globs(options[key])
    if options.get("base") is not None:
        options["base"] = as_source(options["base"])
    return analyze_checkpoint(as_source(source), AnalyzeConfig(**options), progress=progress)


def as_source(obj: Any) -> Any:
    """A path or Hugging Face id as it is; a module or a mapping as an in-memory checkpoint.

    Args:
        obj: a path (``str`` or ``os.PathLike``), a Hugging Face id, an opened ``Checkpoint``,
            an ``nn.Module`` or a mapping of names to tensors (or to numpy arrays only: the
            torch-free :class:`~spectracli.io.arrays.ArrayCheckpoint`).

    Returns:
        A ``str``/``Path``/``Checkpoint`` for :func:`spectracli.io.open_checkpoint`, or the
        in-memory ``Checkpoint`` of the module's ``state_dict()`` or the mapping (tensors are not
        copied).

    Raises:
        SpectraTypeError: for any other type.
    """
    from spectracli.io.base import Checkpoint

    if isinstance(obj, (str, os.PathLike, Checkpoint)):
        return obj if not isinstance(obj, os.PathLike) else Path(obj)
    from spectracli.io.arrays import array_checkpoint, is_array_mapping

    if is_array_mapping(obj):  # numpy arrays alone: the torch-free path, as a file's
        return array_checkpoint(obj)
    # An nn.Module exists only once torch is loaded: a path never imports it (the torch-free start)
    torch = sys.modules.get("torch")
    if isinstance(obj, Mapping) or (torch is not None and isinstance(obj, torch.nn.Module)):
        from spectracli.io.memory import memory_checkpoint

        return memory_checkpoint(obj)
    raise SpectraTypeError(
        "source must be an nn.Module, a mapping of names to tensors, a path or a Hugging Face "
        f"id; got {type(obj).__name__}",
        params=("source",),
    )


def hessian(
    model: Any,
    data: Any,
    loss: Any = "cross_entropy",
    *,
    progress: Any = None,
    **options: Any,
) -> HessianResult:
    """Top eigenvalues (Lanczos), trace (Hutch++) and density (SLQ) of the Hessian or GGN.

    Of the mean loss over all of ``data``: the same numbers as ``spectracli hessian``.

    A thin front of :func:`spectracli.hessian.api.analyze` (docs/hessian.md): ``options`` that
    are fields of :class:`~spectracli.hessian.api.HessianConfig` (``k=10``, ``which="both"``,
    ``operator="ggn"``, ``trace=True``, ``density=True``, ``dtype="float64"``...) make its
    config; the others (``return_vectors=True``...) are passed to it as keywords.

    Args:
        model: the ``nn.Module`` (its training flags are restored afterwards).
        data: ``(x, y)`` tensors, a list of batches, a Dataset or a DataLoader.
        loss: ``"cross_entropy"``, ``"mse"``, ... or a callable returning the batch mean.
        progress: ``progress(stage, done, total, residual)``.
        **options: fields of ``HessianConfig``, or keywords of ``hessian.api.analyze``.

    Returns:
        The :class:`~spectracli.hessian.api.HessianResult`: eigenvalues in descending order
        (top-k, bottom-k, or top-k then bottom-k for ``which="both"``; units of the loss per
        parameter squared), their residual norms and convergence flags, the Hutch++ trace with
        its error bar and the SLQ density when asked (``None`` otherwise).

    Raises:
        SpectraTypeError: an unknown option (a ``TypeError``).
        SpectraError: invalid settings or inputs, naming the option (a ``ValueError``).

    Example:
        A linear model ``w . x`` under the ``mse`` loss ``mean(0.5 (w . x - y)^2)`` has the
        Hessian ``X^T X / N``: for the rows (3, 0) and (0, 1), ``diag(9, 1) / 2``.

        >>> import torch, spectracli
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> x = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
        >>> res = spectracli.hessian(model, (x, torch.zeros(2, 1)), "mse", k=2, dtype="float64")
        >>> [round(v, 9) for v in res.eigenvalues], res.converged
        ([4.5, 0.5], [True, True])
    """
    import inspect

    from spectracli.hessian import api as hessian_api

    names = {f.name for f in fields(hessian_api.HessianConfig)}
    settings = {k: v for k, v in options.items() if k in names}
    keywords = {k: v for k, v in options.items() if k not in names}
    accepted = {
        p.name for p in inspect.signature(hessian_api.analyze).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(keywords) - accepted)
    if unknown:
        raise SpectraTypeError(
            f"hessian() got unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; options are {', '.join(sorted(names | accepted))}"
        )
    config = hessian_api.HessianConfig(**settings)
    return hessian_api.analyze(model, data, loss, config, progress=progress, **keywords)


class EntryPointModule(types.ModuleType):
    """A module that can be called: ``module(...)`` is ``spectracli.api.<its name>(...)``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the entry point of the same name with ``args`` and ``kwargs``."""
        entry = getattr(sys.modules[__name__], self.__name__.rsplit(".", 1)[-1])
        return entry(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Make the already imported module ``module_name`` callable (see the module docstring)."""
    sys.modules[module_name].__class__ = EntryPointModule
