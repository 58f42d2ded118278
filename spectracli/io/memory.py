"""In-memory sources: an ``nn.Module`` or a mapping of names to tensors, served as a checkpoint.

Nothing is copied and nothing touches the disk: each handle's ``load()`` returns the tensor
itself (detached, on its device, in its dtype). The names are those of the saved state dict,
found by the PyTorch reader's own rules (``state_dict``/``model``/... keys of a training
checkpoint dict, nested dicts flattened with dots, ``module.`` and ``_orig_mod.`` prefixes
removed), and tensors sharing storage are tied weights served once with the other names as
aliases; so analysing a model object gives the same report as analysing its saved checkpoint.

A module's tensors are ``model.state_dict()``: parameters and persistent buffers, as
``torch.save(model.state_dict())`` or ``safetensors.torch.save_model`` would write them. A
Hugging Face-style model's ``model.config`` (``to_dict()``) is the checkpoint's ``config``.

Example::

    >>> import torch
    >>> from spectracli.io.memory import memory_checkpoint
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    >>> [(h.name, h.shape) for h in memory_checkpoint(net).handles()]
    [('0.weight', (3, 4)), ('0.bias', (3,))]
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from spectracli.errors import CheckpointError, SpectraTypeError
from spectracli.io.base import Checkpoint, TensorHandle
from spectracli.io.pytorch_reader import _tie_key, find_state_dict, group_tied, strip_prefixes


class MemoryCheckpoint(Checkpoint):
    """Tensors already in memory (a module's state dict or a mapping), served as handles.

    ``format`` is ``"module"`` or ``"state_dict"``; ``path`` is a label such as ``<module MLP>``
    (there is no file).
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        fmt: str,
        label: str,
        config: dict[str, Any] | None = None,
        conv_transposed: set[tuple] | None = None,
    ) -> None:
        meta = [name for name, t in tensors.items() if t.is_meta]
        if meta:
            raise CheckpointError(
                f"{label}: {len(meta)} tensors are on the meta device and hold no data (first: "
                f"{meta[0]}); load the weights before analysing"
            )
        self.path = label  # type: ignore[assignment]  # a label, not a file
        self.format = fmt
        self.config = config
        self._state = tensors
        self._order = group_tied(tensors)
        # storage keys of nn.ConvTranspose*d weights: stored (in, out / groups, *k)
        self._conv_transposed = conv_transposed or set()
        self.size_bytes = sum(
            tensors[name].numel() * tensors[name].element_size() for name, _ in self._order
        )

    def handles(self) -> Iterator[TensorHandle]:
        """One handle per tensor (tied ones once, with aliases); loading detaches, never copies."""
        for name, aliases in self._order:
            t = self._state[name]
            yield TensorHandle(
                name=name,
                shape=tuple(t.shape),
                dtype=str(t.dtype).removeprefix("torch."),
                loader=t.detach,  # the same storage: no copy, no device move
                aliases=list(aliases),
                meta={"conv_transposed": True} if _tie_key(t) in self._conv_transposed else {},
            )


def _conv_transposed_keys(model: torch.nn.Module) -> set[tuple]:
    """The model's transposed-convolution weights, by storage.

    The module type is the evidence a file lacks: PyTorch stores them (in, out / groups, *k).

    Returns:
        Their storage keys (as ``group_tied`` computes them).
    """
    kinds = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    keys = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, kinds) and isinstance(weight, torch.Tensor):
            key = _tie_key(weight.detach())
            if key is not None:
                keys.add(key)
    return keys


def _hf_config(model: torch.nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    if isinstance(config, Mapping):
        return dict(config)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        try:
            out = to_dict()
        except Exception:  # noqa: BLE001 - a config that cannot serialise is just not used
            return None
        return out if isinstance(out, dict) else None
    return None


def _as_tensor(value: Any) -> Any:
    """A numeric numpy array as a tensor on the same memory; anything else as it is."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        with warnings.catch_warnings():  # read-only arrays: we never write to them
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(value)
    return value


def memory_checkpoint(obj: torch.nn.Module | Mapping[str, Any]) -> MemoryCheckpoint:
    """An ``nn.Module`` or a mapping of names to tensors as a :class:`MemoryCheckpoint`.

    Numpy arrays are viewed as tensors, without a copy.

    Returns:
        The checkpoint of the module's weights or the mapping's tensors (a training checkpoint
        dict's under ``state_dict``/``model``...), wrapper prefixes stripped.

    Raises:
        SpectraTypeError: ``obj`` is neither a module nor a mapping (a ``TypeError``).
        CheckpointError: it holds no tensors, or tensors without data (meta device).
    """
    transposed: set[tuple] = set()
    if isinstance(obj, torch.nn.Module):
        label, fmt, config = f"<module {type(obj).__name__}>", "module", _hf_config(obj)
        found = find_state_dict(obj)
        transposed = _conv_transposed_keys(obj)
    elif isinstance(obj, Mapping):
        label, fmt, config = "<state dict>", "state_dict", None
        found = find_state_dict({k: _as_tensor(v) for k, v in obj.items()})
    else:
        raise SpectraTypeError(
            f"expected an nn.Module or a mapping of names to tensors, got {type(obj).__name__}",
            params=("source",),
        )
    if not found:
        raise CheckpointError(
            f"{label} holds no tensors that look like model weights (looked for a state dict "
            "under the usual keys or tensors at the top level)"
        )
    return MemoryCheckpoint(strip_prefixes(found), fmt, label, config, transposed)
