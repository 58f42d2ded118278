"""PyTorch checkpoints (.pt/.pth/.bin/.ckpt): zip files memory-mapped, legacy pickles read whole.

Safety: files are loaded with ``torch.load(weights_only=True)``, which refuses any global outside
torch's safe set (so a pickle cannot run code). A refused file raises a ``CheckpointError`` that
names the globals it needs (``torch.serialization.get_unsafe_globals_in_checkpoint`` for zip files,
which reads them without unpickling; the unpickler's own message for legacy files) and the
``trust_pickle=True`` option (``--trust-pickle`` in the CLI); only with it does a file load
with ``weights_only=False``.

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
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from spectracli.errors import CheckpointError
from spectracli.io._common import group_tied as _group_tied
from spectracli.io._common import one_line, read_weight_map, strip_prefixes
from spectracli.io.base import Checkpoint, TensorHandle
from spectracli.io.stub_pickle import (
    ForeignTensorError,
    Placeholder,
    foreign_leaves,
    load_with_placeholders,
    module_state_dict,
)

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
        "hparams_name",
        "datamodule_hparams",
        "datamodule_hparams_name",
        "args",
        "config",
        "epoch",
        "global_step",
        "step",
        "iteration",
    }
)


def load_pickle(path: Path, trust_pickle: bool) -> Any:
    """``torch.load`` on the CPU, mmap for zip files, weights_only unless ``trust_pickle``."""
    return load_pickle_stubbed(path, trust_pickle)[0]


def load_pickle_stubbed(path: Path, trust_pickle: bool) -> tuple[Any, list[str]]:
    """:func:`load_pickle` plus the foreign globals that were stubbed (see ``stub_pickle``).

    Without ``trust_pickle``, a file the plain ``weights_only`` load refuses for globals outside
    torch's safe set is loaded again with each such global replaced by an inert placeholder.

    Returns:
        ``(loaded object, sorted names of the stubbed globals)``.

    Raises:
        CheckpointError: an unreadable or damaged file, a TorchScript archive without
            ``trust_pickle``, or a refusal of the placeholder load (see ``stub_pickle``).
        MemoryError: the file does not fit in memory (not turned into a CheckpointError).
        KeyboardInterrupt: passed through as it is.
        SystemExit: passed through as it is.
    """
    is_zip = zipfile.is_zipfile(path)
    if is_zip and _is_torchscript(path):
        return _load_torchscript(path, trust_pickle), []
    weights_only = not trust_pickle

    def load() -> Any:
        with warnings.catch_warnings():
            # A damaged pickle makes torch warn about odd protocol numbers before failing; the
            # one-line error below says what matters.
            warnings.simplefilter("ignore", UserWarning)
            return _torch_load(path, weights_only, is_zip)

    try:
        return load(), []
    except pickle.UnpicklingError as exc:
        if weights_only and "Weights only load failed" in str(exc):
            return load_with_placeholders(path, load, exc)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint: {one_line(exc)}"
        ) from None
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        if trust_pickle:
            raise CheckpointError(
                f"{path} could not be unpickled (with trust_pickle=True): "
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
            "TorchScript code; pass trust_pickle=True only if you trust its source"
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


def find_state_dict(obj: Any, path: Path | None = None) -> dict[str, torch.Tensor]:
    """The model's tensors in a loaded checkpoint, by name (see the module docstring).

    Returns:
        ``{name: tensor}`` (empty when nothing looks like a state dict).

    Raises:
        ForeignTensorError: the mapping chosen as the state dict holds a placeholder of a stubbed
            global (a tensor that only foreign code could build).
    """
    if isinstance(obj, torch.nn.Module):
        return {k: v for k, v in obj.state_dict().items() if isinstance(v, torch.Tensor)}
    if isinstance(obj, Placeholder):  # a whole pickled module: its recorded state, not run
        found = module_state_dict(obj)
        if found is None:
            raise ForeignTensorError(
                f"{path or 'checkpoint'} is a pickled {obj.__spectracli_global__} object, whose "
                "tensors only its own code rebuilds; refused (pass trust_pickle=True only if you "
                "trust its source, or save its state_dict())"
            )
        return found
    if not isinstance(obj, Mapping):
        return {}
    for key in STATE_KEYS:
        if key in obj and isinstance(obj[key], (Mapping, torch.nn.Module, Placeholder)):
            found = find_state_dict(obj[key], path)
            if isinstance(obj[key], Placeholder):
                return found
            _refuse_foreign(obj[key], path, "")
            if found:
                return found
    _refuse_foreign({k: v for k, v in obj.items() if k not in IGNORED_KEYS}, path, "")
    return _collect(obj, "")


def _refuse_foreign(state: Any, path: Path | None, prefix: str) -> None:
    leaves = foreign_leaves(state, prefix) if isinstance(state, dict) else []
    if leaves:
        entry, name = leaves[0]
        more = f" (and {len(leaves) - 1} more entries)" if len(leaves) > 1 else ""
        raise ForeignTensorError(
            f"{path or 'checkpoint'}: state dict entry '{entry}' would be built by "
            f"{name}{more}, which is not run; refused (pass trust_pickle=True only if you trust "
            "its source)"
        )


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


def _tie_key(t: torch.Tensor) -> tuple | None:
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None
    if ptr == 0 or t.numel() == 0:
        return None
    return (t.device.type, ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def group_tied(tensors: Mapping[str, torch.Tensor]) -> list[tuple[str, list[str]]]:
    """Tied weights grouped: a tensor sharing another's storage view is an alias of the first.

    Returns:
        ``(name, aliases)`` in the order of ``tensors``, one entry per distinct view.
    """
    return _group_tied(tensors, _tie_key)


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


class PytorchCheckpoint(Checkpoint):
    """A loaded (memory-mapped where possible) PyTorch state dict served as handles."""

    def __init__(self, path: Path, trust_pickle: bool = False):
        self.path = path
        self.format = "pytorch"
        self.size_bytes = path.stat().st_size
        obj, self.stubbed_globals = load_pickle_stubbed(path, trust_pickle)
        state = find_state_dict(obj, path)
        keys = sorted(str(k) for k in obj)[:8] if isinstance(obj, Mapping) else []
        del obj
        if not state:
            seen = f"; its top-level keys: {', '.join(keys)}" if keys else ""
            raise CheckpointError(
                f"{path} holds no tensors that look like model weights "
                f"(looked for a state dict under {', '.join(STATE_KEYS)} or at the top level{seen})"
            )
        self._state: dict[str, torch.Tensor] | None = strip_prefixes(state)
        self._order = group_tied(self._state)

    def handles(self) -> Iterator[TensorHandle]:
        """One handle per tensor (tied ones once, with aliases), in the file's order."""
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
        """Drop the loaded state (and its memory map)."""
        self._state = None


class _Get:
    __slots__ = ("state", "name")

    def __init__(self, state: dict[str, torch.Tensor], name: str):
        self.state, self.name = state, name

    def __call__(self) -> torch.Tensor:
        t = self.state[self.name]
        return t.detach() if t.requires_grad else t


def open_pytorch(path: Path, trust_pickle: bool = False) -> Checkpoint:
    """The PyTorch checkpoint at ``path`` (weights only unless ``trust_pickle``)."""
    return PytorchCheckpoint(path, trust_pickle=trust_pickle)


class PytorchShardedCheckpoint(Checkpoint):
    """A sharded PyTorch ``.bin`` checkpoint: ``pytorch_model.bin.index.json`` plus its shards.

    Every shard the index names must exist (checked before any is loaded); each shard is loaded
    once (memory-mapped when it is a zip file, like a single ``.pt``) and serves all its tensors.
    A tensor the index places in a shard must be there; tensors a shard holds that the index
    forgot are still served.
    """

    def __init__(self, index_path: Path, shown_path: Path, trust_pickle: bool = False):
        self.path = shown_path
        self.format = "pytorch-sharded"
        root = index_path.parent
        weight_map = read_weight_map(index_path)
        self._shards = [
            PytorchCheckpoint(root / s, trust_pickle) for s in sorted(set(weight_map.values()))
        ]
        self.size_bytes = sum(s.size_bytes for s in self._shards)
        self.stubbed_globals = sorted({g for s in self._shards for g in s.stubbed_globals})
        by_file = {s.path.name: s for s in self._shards}
        for name, file in weight_map.items():
            shard = by_file[Path(file).name]
            if shard._state is not None and name not in shard._state:
                raise CheckpointError(
                    f"index {index_path} places tensor '{name}' in shard {file}, which does not "
                    "hold it"
                )

    def handles(self) -> Iterator[TensorHandle]:
        """The handles of every shard in turn; a name seen in an earlier shard is not repeated."""
        seen: set[str] = set()
        for shard in self._shards:
            for h in shard.handles():
                if h.name not in seen:
                    seen.add(h.name)
                    yield h

    def close(self) -> None:
        """Close every shard."""
        for shard in self._shards:
            shard.close()


def open_pytorch_sharded(
    index_path: Path, shown_path: Path, trust_pickle: bool = False
) -> Checkpoint:
    """The sharded PyTorch checkpoint of ``index_path`` (shown as ``shown_path``)."""
    return PytorchShardedCheckpoint(index_path, shown_path, trust_pickle)
