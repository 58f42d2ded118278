"""Pickles with foreign objects, read without running them: every unknown global becomes a stub.

Training checkpoints (Lightning ``.ckpt``, Hydra/omegaconf runs, trainer states) keep plain tensors
in their state dict but pickle other entries (hyper-parameters, callbacks, loop states) with classes
from packages that are often not installed and never needed to read weights. torch's
``weights_only`` unpickler refuses the whole file for them. Here each global outside torch's safe
set is registered with that same unpickler (``torch.serialization.safe_globals`` with the global's
name) as an *inert placeholder*: a class whose construction only records its arguments and whose
``__setstate__`` only records the state. So:

- the placeholder's module is never imported and nothing from it is called; a ``__reduce__`` from
  the file builds a placeholder instead of running its function;
- every other rule of ``weights_only`` still holds (only allowlisted callables, no ``BUILD`` on
  foreign types, tensors rebuilt by torch's own functions from the file's storages);
- globals of modules that torch's unpickler blocks outright (``os``, ``sys``, ``posix``, ``nt``)
  are not stubbed: the file is refused naming them;
- a few builtin types that carry no behaviour (``builtins.dict``, ``int``, ``list``, ...) are
  mapped to themselves, as the values they are (omegaconf stores ``dict`` as a type tag).

A placeholder that ends up where a tensor belongs (in the state dict) or that a tensor is rebuilt
as (a foreign tensor subclass) means the tensor can only be built by running foreign code: the
file is refused (``ForeignTensorError``), not run. ``trust_pickle=True`` in the reader is the only
path that runs code.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spectracli.errors import CheckpointError

# Modules torch's weights_only unpickler refuses before consulting any allowlist.
BLOCKED_MODULES = ("sys", "os", "posix", "nt")
# Builtin types that are plain values: mapped to themselves rather than stubbed.
INERT_BUILTINS = {
    f"builtins.{t.__name__}": t
    for t in (
        dict, list, tuple, set, frozenset, int, float, complex, str, bytes, bytearray, bool,
        slice, range,
    )
}
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global")
_BLOCKED_GLOBAL = re.compile(r"unsupported GLOBAL (\S+) whose module (\S+) is blocked")
_CONTAINER_ONLY = re.compile(
    r"Can only (SETITEMS?|append to|extend) .*?but got <class '"
    + re.escape("spectracli.stub.")
    + r"(.+?)'>"
)
STUB_MODULE = "spectracli.stub"  # placeholder classes print as <class 'spectracli.stub.NAME'>
_MAX_ROUNDS = 256  # globals found by retrying a legacy pickle: far above any real checkpoint


class Placeholder:
    """An inert stand-in for a global outside torch's safe set (``__spectracli_global__``).

    Calling (constructing) it records the arguments; ``__setstate__`` records the state. It has
    no other behaviour: nothing of the original class or function is imported or run.
    """

    __spectracli_global__ = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        """An instance that records its arguments and runs no code of the original class."""
        inst = object.__new__(cls)
        object.__setattr__(inst, "_stub_args", args)
        object.__setattr__(inst, "_stub_state", None)
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the original __init__ is not run
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_stub_state", state)

    def __repr__(self) -> str:
        return f"<placeholder for {self.__spectracli_global__}>"


class _AsDict(Placeholder):
    """A stubbed dict subclass (Lightning's ``AttributeDict``): read as the plain dict it holds."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        return {}


class _AsList(Placeholder):
    """A stubbed list subclass: read as the plain list it holds."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        return []


_KINDS: dict[str, type[Placeholder]] = {"object": Placeholder, "dict": _AsDict, "list": _AsList}


def placeholder_class(full_name: str, kind: str = "object") -> type[Placeholder]:
    """A fresh placeholder class standing for the global ``module.qualname``.

    ``kind`` ``"dict"`` or ``"list"``: a container subclass whose items the pickle fills in
    (``SETITEMS``/``APPENDS``, which torch's unpickler allows on plain containers only): its
    construction yields a plain ``dict``/``list`` instead.

    Returns:
        The class (a subclass of :class:`Placeholder`).
    """
    short = full_name.rsplit(".", 1)[-1] or "stub"
    attrs = {
        "__spectracli_global__": full_name, "__module__": STUB_MODULE, "__qualname__": full_name
    }
    return type(short, (_KINDS[kind],), attrs)


class ForeignTensorError(CheckpointError):
    """A tensor of the file could only be built by running a stubbed (foreign) global."""


def global_name_from_message(name: str) -> str:
    """torch's message drops the ``builtins.`` prefix; put it back for a bare name."""
    return name if "." in name else f"builtins.{name}"


def is_reported(name: str) -> bool:
    """Whether a stubbed global is worth naming: not a ``typing`` annotation or plain builtin."""
    return not name.startswith("typing.") and name not in INERT_BUILTINS


def load_with_placeholders(
    path: Path, torch_load: Callable[[], Any], first_error: Exception
) -> tuple[Any, list[str]]:
    """``torch_load()`` under ``weights_only`` with every unsafe global replaced by a placeholder.

    ``first_error`` is the refusal of the plain ``weights_only`` load.

    Returns:
        ``(loaded object, sorted names of the globals that were stubbed)``.

    Raises:
        CheckpointError: a global from a blocked module (``os``, ``sys``, ...), or a file the
            weights-only unpickler refuses for a reason other than a global (named in the
            message), or one that a placeholder cannot stand in for.
        ForeignTensorError: a tensor is rebuilt as a stubbed class.
    """  # noqa: DOC501 - _refusal() builds the CheckpointError, which ruff reads as a type
    names: set[str] = set()
    if zipfile.is_zipfile(path):
        try:
            names.update(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - the static scan is a shortcut; the retries find the rest
            pass
    kinds: dict[str, str] = {}  # global -> "dict" | "list" for container subclasses
    error: Exception = first_error
    for _ in range(_MAX_ROUNDS):
        names.update(_globals_in(error))
        _refuse_blocked(path, names, error)
        stubs = {
            n: INERT_BUILTINS.get(n) or placeholder_class(n, kinds.get(n, "object")) for n in names
        }
        try:
            with torch.serialization.safe_globals([(obj, n) for n, obj in stubs.items()]):
                obj = torch_load()
            return obj, sorted(n for n in stubs if n not in INERT_BUILTINS)
        except pickle.UnpicklingError as exc:
            container = _CONTAINER_ONLY.search(str(exc))
            if container and container.group(2) in names and container.group(2) not in kinds:
                op = container.group(1)
                kinds[container.group(2)] = "dict" if op.startswith("SETITEM") else "list"
            elif not (_globals_in(exc) - names) and not _BLOCKED_GLOBAL.search(str(exc)):
                raise _refusal(path, exc, names) from None
            error = exc
        except TypeError as exc:  # as_subclass(placeholder): a foreign tensor subclass
            if "as_subclass" in str(exc) or "Tensor" in str(exc):
                raise ForeignTensorError(
                    f"{path}: a tensor is rebuilt as a class it does not define (one of "
                    f"{_listed(names)}), which would run that code; refused (pass "
                    "trust_pickle=True only if you trust its source)"
                ) from None
            raise _refusal(path, exc, names) from None
    raise CheckpointError(f"{path} needs more than {_MAX_ROUNDS} foreign globals; refused")


def _globals_in(error: Exception) -> set[str]:
    return {global_name_from_message(m) for m in _UNSUPPORTED_GLOBAL.findall(str(error))}


def _refuse_blocked(path: Path, names: set[str], error: Exception) -> None:
    blocked = {n for n in names if n.split(".", 1)[0] in BLOCKED_MODULES}
    blocked.update(g for g, _module in _BLOCKED_GLOBAL.findall(str(error)))
    if blocked:
        raise CheckpointError(
            f"{path} references {', '.join(sorted(blocked))} from a module that is never loaded "
            "from a checkpoint (os/sys); refused (pass trust_pickle=True only if you trust its "
            "source)"
        )


def _listed(names: set[str]) -> str:
    shown = sorted(n for n in names if is_reported(n)) or sorted(names)
    return ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")


def _refusal(path: Path, exc: Exception, names: set[str]) -> CheckpointError:
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    detail = " ".join((found.group(1) if found else text).split("Please use")[0].split())[:200]
    stubbed = f" (foreign globals: {_listed(names)})" if names else ""
    return CheckpointError(
        f"{path} cannot be read without running code from it{stubbed}: {detail}; "
        "pass trust_pickle=True only if you trust its source"
    )


def module_state_dict(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, Any] | None:
    """The state dict of a pickled ``nn.Module`` read as placeholders, without running it.

    A module pickles its ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ...), which
    the placeholder only stored: its parameters and persistent buffers, then its children's under
    ``child.``, are exactly ``Module.state_dict()`` for a module that does not override it.

    Returns:
        ``{name: tensor}``, or None when ``obj`` (or a child) does not hold that structure.
    """
    state = obj._stub_state if isinstance(obj, Placeholder) else None
    if depth > 256 or not isinstance(state, dict) or not isinstance(state.get("_parameters"), dict):
        return None
    out: dict[str, Any] = {}
    for key, value in state["_parameters"].items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
    transient = state.get("_non_persistent_buffers_set") or set()
    for key, value in (state.get("_buffers") or {}).items():
        if isinstance(value, torch.Tensor) and key not in transient:
            out[prefix + key] = value
    for key, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        sub = module_state_dict(child, f"{prefix}{key}.", depth + 1)
        if sub is None:
            return None
        out.update(sub)
    return out


def foreign_leaves(obj: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """``(entry name, stubbed global)`` for every placeholder inside a state-dict mapping."""
    found: list[tuple[str, str]] = []
    if isinstance(obj, Placeholder):
        return [(prefix.rstrip(".") or "<state dict>", obj.__spectracli_global__)]
    if depth > 32 or not isinstance(obj, dict):
        return found
    for key, value in obj.items():
        found.extend(foreign_leaves(value, f"{prefix}{key}.", depth + 1))
    return found


__all__ = [
    "BLOCKED_MODULES",
    "ForeignTensorError",
    "INERT_BUILTINS",
    "Placeholder",
    "foreign_leaves",
    "load_with_placeholders",
    "module_state_dict",
    "placeholder_class",
]
