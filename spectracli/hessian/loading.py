"""Resolve ``--model``, ``--data`` and ``--loss`` references into a module, batches and a loss.

References are ``path/to/file.py:callable`` or ``package.module:callable``. A model file is
imported with its own folder first on ``sys.path`` (so it imports its siblings; the path is
restored after), and ``package.module`` is looked up from the current directory first, as
``python -m`` would. Data files (``.npz``, ``.pt``, ``.safetensors``) are read by
``spectracli.io.read_xy`` (a format layer); a data callable may return anything the Hessian
takes: an
``(x, y, ...)`` tuple of tensors, a dict of tensors, a ``Dataset`` of tuples or dicts, a
``DataLoader`` or a list of batches (:mod:`spectracli.hessian.inputs`). Data are read once into
memory (the Hessian is a deterministic function of a fixed sample; a loader with random
augmentation would not be). Every failure is a one-line :class:`SpectraError`. Checkpoint
reading itself is not here (the CLI uses ``spectracli.io``);
:func:`apply_state_dict` loads a state dict strictly.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spectracli.errors import SpectraError
from spectracli.hessian.losses import BUILTIN_LOSSES, Loss, builtin_loss

Batch = tuple[torch.Tensor, torch.Tensor]


def resolve_callable(ref: str, what: str) -> Callable[..., Any]:
    """``file.py:name`` or ``pkg.module:name`` -> the attribute, which must be callable.

    Returns:
        The callable (the file is imported with its folder on ``sys.path``).

    Raises:
        SpectraError: a malformed reference, a file or module that cannot be imported, a
            missing attribute or one that is not callable (``what`` names the option).
    """
    if ":" not in ref:
        raise SpectraError(f"{what} reference must be 'path/to/file.py:callable' or "
                           f"'package.module:callable', got {ref!r}")
    module_ref, _, attr = ref.rpartition(":")
    if not module_ref or not attr:
        raise SpectraError(f"{what} reference {ref!r} lacks a module or an attribute name")
    if module_ref.endswith(".py") or "/" in module_ref or "\\" in module_ref:
        path = Path(module_ref)
        if not path.is_file():
            raise SpectraError(f"{what} file {path} does not exist")
        name = f"_spectracli_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SpectraError(f"{what} file {path} cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            with _on_sys_path(str(path.resolve().parent)):
                spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - user code: report, do not crash
            sys.modules.pop(name, None)
            raise SpectraError(
                f"{what} file {path} failed to import: {type(exc).__name__}: {exc}"
            ) from None
    else:
        try:
            with _on_sys_path(str(Path.cwd())):
                module = importlib.import_module(module_ref)
        except Exception as exc:  # noqa: BLE001
            raise SpectraError(
                f"{what} module {module_ref!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
    if not hasattr(module, attr):
        raise SpectraError(f"{what} {module_ref} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if not callable(obj):
        raise SpectraError(f"{what} {module_ref}:{attr} is not callable")
    return obj


def _ref_folder(ref: str) -> str:
    """The folder a reference's imports resolve from: a file's own folder, else the cwd."""
    module_ref = ref.rpartition(":")[0]
    if module_ref.endswith(".py") or "/" in module_ref or "\\" in module_ref:
        return str(Path(module_ref).resolve().parent)
    return str(Path.cwd())


@contextlib.contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    """``folder`` first on ``sys.path`` inside; ``sys.path`` as it was after."""
    saved = list(sys.path)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path[:] = saved


def build_model(ref: str) -> nn.Module:
    """Call the factory named by ``ref`` with no arguments; it must return an ``nn.Module``.

    Returns:
        The model, as the factory built it.

    Raises:
        SpectraError: the factory cannot be found, raises, or returns something else.
    """
    factory = resolve_callable(ref, "model")
    try:
        with _on_sys_path(_ref_folder(ref)):  # factories may import lazily
            model = factory()
    except Exception as exc:  # noqa: BLE001
        raise SpectraError(f"model factory {ref} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise SpectraError(
            f"model factory {ref} must return a torch.nn.Module, got {type(model).__name__}"
        )
    return model


def apply_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load ``state`` into ``model`` strictly (``origin`` names the checkpoint in messages).

    Raises:
        SpectraError: missing or unexpected keys (named, a few of each), or shapes that differ.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_short(unexpected)}")
        raise SpectraError(f"weights {origin} do not match the model ({'; '.join(parts)})")
    bad = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if bad:
        raise SpectraError(f"weights {origin} do not match the model: shape {_short(bad)}")
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise SpectraError(f"weights {origin} do not load: {' '.join(str(exc).split())}") from None


def _short(items: list[str], limit: int = 5) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def resolve_loss(ref: str) -> tuple[Loss | Callable[..., Any], str]:
    """A builtin name or ``file.py:callable``.

    Returns:
        ``(loss, name)``: the builtin :class:`~spectracli.hessian.losses.Loss` or the callable.

    Raises:
        SpectraError: neither a builtin name nor a ``file.py:callable`` that resolves.
    """
    if ref in BUILTIN_LOSSES:
        return builtin_loss(ref), ref
    if ":" not in ref:
        raise SpectraError(
            f"loss must be {', '.join(BUILTIN_LOSSES)} or 'file.py:callable', got {ref!r}",
            params=("loss",),
        )
    return resolve_callable(ref, "loss"), ref


def resolve_hook(ref: str | None, what: str) -> Callable[..., Any] | None:
    """``file.py:callable`` of a batch_fn / output_fn hook, or None.

    Args:
        ref: ``path/to/file.py:callable`` or ``package.module:callable``, or None.
        what: the hook's parameter name (``batch_fn`` or ``output_fn``).

    Returns:
        The callable, or None when ``ref`` is None.

    Raises:
        SpectraError: ``ref`` cannot be resolved; the error names ``what`` as its parameter, so
            a client can spell it its own way (the CLI says ``--output-fn``).
    """
    if ref is None:
        return None
    try:
        return resolve_callable(ref, what)
    except SpectraError as exc:
        raise SpectraError(str(exc), params=(what,)) from None


def call_data(ref: str) -> Any:
    """Call the ``file.py:callable`` (or ``package.module:callable``) ``ref``.

    Data files are read by ``spectracli.io.read_xy``; this only runs the user's callable (with
    its folder on ``sys.path``).

    Returns:
        What the callable gives: tensors, a Dataset, a DataLoader or batches
        (:mod:`spectracli.hessian.inputs`).

    Raises:
        SpectraError: the callable cannot be found, raised, or gave something that is not data.
    """
    fn = resolve_callable(ref, "data")
    try:
        with _on_sys_path(_ref_folder(ref)):
            obj = fn()
    except Exception as exc:  # noqa: BLE001
        raise SpectraError(f"data callable {ref} raised {type(exc).__name__}: {exc}") from None
    iterable = hasattr(obj, "__iter__") or hasattr(obj, "__getitem__")
    if isinstance(obj, nn.Module) or not (isinstance(obj, torch.Tensor) or iterable):
        raise SpectraError(
            f"data {ref} must give a Dataset, a DataLoader, tensors or a list of batches, "
            f"got {type(obj).__name__}"
        )
    return obj


def make_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    max_samples: int | None = None,
    seed: int = 0,
) -> list[Batch]:
    """Cut ``(x, y)`` into batches of ``batch_size`` (the last one may be smaller).

    With ``max_samples`` below the size, a seeded random subset (kept in data order) is used, so a
    class-sorted file still gives a representative sample.

    Args:
        x: inputs, samples along dim 0.
        y: targets, samples along dim 0.
        batch_size: samples per batch.
        max_samples: samples to keep (None: all).
        seed: seed of the random subset.

    Returns:
        ``[(x_batch, y_batch)]`` in data order.

    Raises:
        SpectraError: ``batch_size < 1`` or ``max_samples < 1``.
    """
    if batch_size < 1:
        raise SpectraError(f"batch_size must be >= 1, got {batch_size}")
    n = x.shape[0]
    if max_samples is not None:
        if max_samples < 1:
            raise SpectraError(f"max_samples must be >= 1, got {max_samples}")
        if max_samples < n:
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randperm(n, generator=gen)[:max_samples].sort().values
            x, y = x[idx], y[idx]
            n = max_samples
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]
