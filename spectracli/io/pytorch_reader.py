"""PyTorch checkpoints (.pt/.pth/.bin/.ckpt): zip files memory-mapped, legacy pickles read whole.

Safety: files are loaded with ``torch.load(weights_only=True)``, which refuses any global outside
torch's safe set (so a pickle cannot run code). A refused file raises a ``CheckpointError`` that
names the globals it needs (``torch.serialization.get_unsafe_globals_in_checkpoint`` for zip files,
which reads them without unpickling; the unpickler's own message for legacy files) and the
``--trust-pickle`` flag. Only ``trust_pickle=True`` loads with ``weights_only=False``.

Memory: zip-format files are opened with ``mmap=True``, so tensor data stays on disk until a
tensor is used. Legacy (non-zip) pickles cannot be memory-mapped; they are read whole into memory.

Structure: the state dict is found under the usual keys of training checkpoints (``state_dict``,
``model_state_dict``, ``model_state``, ``model``, ``module``, ``net``, ...); optimizer and scheduler
state and non-tensor entries are ignored; nested dicts of tensors are flattened with dots. The
``module.`` prefix (DataParallel / DDP / DeepSpeed) is removed when every name carries it, and
``_orig_mod.`` (torch.compile) is removed wherever it appears. Tensors sharing storage (same storage
pointer, offset, shape, stride and dtype) are tied weights: one handle, the other names as aliases.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from spectracli.errors import CheckpointError
from spectracli.io._common import one_line
from spectracli.io.base import Checkpoint, TensorHandle

# Where training checkpoints keep the model's state dict, most specific first.
STATE_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
)
# Entries of a checkpoint that are never model weights.
IGNORED_KEYS = frozenset(
    {
        "optimizer",
        "optimizer_state_dict",
        "optimizer_states",
        "optim",
        "opt",
        "optimizers",
        "scheduler",
        "lr_scheduler",
        "lr_schedulers",
        "scheduler_state_dict",
        "scaler",
        "grad_scaler",
        "callbacks",
        "loops",
        "rng_state",
        "rng_states",
        "hyper_parameters",
        "hparams",
        "args",
        "config",
        "epoch",
        "global_step",
        "step",
        "iteration",
    }
)
_GLOBAL_IN_MESSAGE = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error: ([^\n]*)")


def load_pickle(path: Path, trust_pickle: bool) -> Any:
    """``torch.load`` on the CPU, mmap for zip files, weights_only unless ``trust_pickle``."""
    is_zip = zipfile.is_zipfile(path)
    if is_zip and _is_torchscript(path):
        return _load_torchscript(path, trust_pickle)
    weights_only = not trust_pickle
    try:
        with warnings.catch_warnings():
            # A damaged pickle makes torch warn about odd protocol numbers before failing; the
            # one-line error below says what matters.
            warnings.simplefilter("ignore", UserWarning)
            return _torch_load(path, weights_only, is_zip)
    except pickle.UnpicklingError as exc:
        if weights_only and "Weights only load failed" in str(exc):
            raise _unsafe_error(path, is_zip, exc) from None
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint: {one_line(exc)}"
        ) from None
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        if trust_pickle:
            raise CheckpointError(
                f"{path} could not be unpickled (with --trust-pickle): "
                f"{type(exc).__name__}: {one_line(exc)}"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint: {type(exc).__name__}: {one_line(exc)}"
        ) from None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except Exception:  # noqa: BLE001 - not a readable zip: torch.load reports it
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _load_torchscript(path: Path, trust_pickle: bool) -> Any:
    """A ``torch.jit.save`` archive: its module runs TorchScript code, so only when trusted."""
    if not trust_pickle:
        raise CheckpointError(
            f"{path} is a TorchScript archive, which torch can only load by running its "
            "TorchScript code; pass --trust-pickle only if you trust its source"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"{path} could not be loaded as TorchScript: {type(exc).__name__}: {one_line(exc)}"
        ) from None


def _torch_load(path: Path, weights_only: bool, is_zip: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=is_zip)
    except RuntimeError as exc:
        if not is_zip or "mmap" not in str(exc):
            raise
        # A zip file torch still cannot map: read it whole rather than fail.
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=False)


def _unsafe_error(path: Path, is_zip: bool, exc: Exception) -> CheckpointError:
    names: list[str] = []
    if is_zip:
        try:
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - naming the globals is best effort
            names = []
    if not names:
        names = _GLOBAL_IN_MESSAGE.findall(str(exc))
    if not names:
        match = _UNPICKLER_DETAIL.search(str(exc))
        detail = match.group(1).strip() if match else "an object outside the safe set"
        return CheckpointError(
            f"{path} needs more than the safe weights-only unpickler allows ({detail}); "
            "pass --trust-pickle only if you trust its source"
        )
    listed = ", ".join(sorted(set(names)))
    return CheckpointError(
        f"{path} needs globals beyond the safe set ({listed}); "
        "pass --trust-pickle only if you trust its source"
    )


def find_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The model's tensors in a loaded checkpoint, by name (see the module docstring)."""
    if isinstance(obj, torch.nn.Module):
        return {k: v for k, v in obj.state_dict().items() if isinstance(v, torch.Tensor)}
    if not isinstance(obj, Mapping):
        return {}
    for key in STATE_KEYS:
        if key in obj and isinstance(obj[key], (Mapping, torch.nn.Module)):
            found = find_state_dict(obj[key])
            if found:
                return found
    return _collect(obj, "")


def _collect(obj: Mapping, prefix: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, Mapping) and key not in IGNORED_KEYS:
            out.update(_collect(value, f"{prefix}{key}."))
    return out


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``_orig_mod.`` everywhere and ``module.`` when every name starts with it."""
    names = {k: k.replace("_orig_mod.", "") for k in state}
    while names and all(v.startswith("module.") for v in names.values()):
        names = {k: v[len("module.") :] for k, v in names.items()}
    if len(set(names.values())) != len(names):  # stripping would merge two tensors: keep as saved
        return state
    return {names[k]: v for k, v in state.items()}


def _tie_key(t: torch.Tensor) -> tuple | None:
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None
    if ptr == 0 or t.numel() == 0:
        return None
    return (t.device.type, ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


class PytorchCheckpoint(Checkpoint):
    """A loaded (memory-mapped where possible) PyTorch state dict served as handles."""

    def __init__(self, path: Path, trust_pickle: bool = False):
        self.path = path
        self.format = "pytorch"
        self.size_bytes = path.stat().st_size
        obj = load_pickle(path, trust_pickle)
        state = find_state_dict(obj)
        del obj
        if not state:
            raise CheckpointError(
                f"{path} holds no tensors that look like model weights "
                f"(looked for a state dict under {', '.join(STATE_KEYS)} or at the top level)"
            )
        self._state: dict[str, torch.Tensor] | None = strip_prefixes(state)
        groups: dict[tuple, list[str]] = {}
        self._order: list[tuple[str, list[str]]] = []
        for name, t in self._state.items():
            key = _tie_key(t)
            if key is not None and key in groups:
                groups[key].append(name)
                continue
            aliases: list[str] = []
            if key is not None:
                groups[key] = aliases
            self._order.append((name, aliases))

    def handles(self) -> Iterator[TensorHandle]:
        if self._state is None:
            raise CheckpointError(f"{self.path} is closed")
        state = self._state
        for name, aliases in self._order:
            t = state[name]
            yield TensorHandle(
                name=name,
                shape=tuple(t.shape),
                dtype=_dtype_name(t),
                loader=_Get(state, name),
                aliases=list(aliases),
            )

    def close(self) -> None:
        self._state = None


class _Get:
    __slots__ = ("state", "name")

    def __init__(self, state: dict[str, torch.Tensor], name: str):
        self.state, self.name = state, name

    def __call__(self) -> torch.Tensor:
        t = self.state[self.name]
        return t.detach() if t.requires_grad else t


def open_pytorch(path: Path, trust_pickle: bool = False) -> Checkpoint:
    return PytorchCheckpoint(path, trust_pickle=trust_pickle)
