"""A mapping of names to numpy arrays, served as a checkpoint without importing torch.

``spectracli.analyze({"fc.weight": array, ...})`` takes this path when every value of the mapping
is a numpy array (a mapping holding torch tensors, nested dicts or a module goes through
:mod:`spectracli.io.memory`, which needs torch). The arrays are neither copied nor written
anywhere: ``load_numpy()`` returns the array itself (in native byte order), ``load()`` a torch
tensor sharing its memory, imported only if a caller asks for torch. Names and ties follow the
in-memory torch source exactly, so both give the same report: arrays of a kind torch holds
(bool, integers, floats) are served, others (complex, strings, objects) ignored;
``_orig_mod.`` and an all-names ``module.`` prefix are stripped; the same view under two names
is one tensor with an alias.

Example::

    >>> import numpy as np
    >>> from spectracli.io.arrays import array_checkpoint
    >>> w = np.ones((3, 4), np.float32)
    >>> [(h.name, h.shape, h.aliases) for h in array_checkpoint({"a": w, "b": w}).handles()]
    [('a', (3, 4), ['b'])]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from spectracli.errors import CheckpointError
from spectracli.io._common import group_tied, strip_prefixes, tensor_dtype_name
from spectracli.io.base import Checkpoint, TensorHandle

if TYPE_CHECKING:
    import torch

_TORCH_KINDS = "fiub"  # what the torch path turns into tensors (torch.from_numpy)


def is_array_mapping(obj: Any) -> bool:
    """Whether ``obj`` is a non-empty mapping whose values are all numpy arrays."""
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(v, np.ndarray) for v in obj.values()))


def _tie_key(a: np.ndarray) -> tuple | None:
    if a.size == 0:
        return None
    return (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)


class ArrayCheckpoint(Checkpoint):
    """Named numpy arrays in memory as handles (see the module docstring)."""

    def __init__(self, arrays: dict[str, np.ndarray], label: str = "<state dict>") -> None:
        self.path = label  # type: ignore[assignment]  # a label, not a file
        self.format = "state_dict"
        self.config = None
        self._arrays = arrays
        self._order = group_tied(arrays, _tie_key)
        self.size_bytes = sum(arrays[name].nbytes for name, _ in self._order)

    def handles(self) -> Iterator[TensorHandle]:
        """One handle per distinct array (tied ones once, with aliases); nothing is copied."""
        for name, aliases in self._order:
            a = self._arrays[name]
            yield TensorHandle(
                name=name, shape=tuple(int(d) for d in a.shape),
                dtype=str(tensor_dtype_name(a.dtype)), loader=_AsTensor(a),
                aliases=list(aliases), numpy_loader=_Native(a),
            )


class _Native:
    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __call__(self) -> np.ndarray:
        a = self.array
        return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


class _AsTensor(_Native):
    __slots__ = ()

    def __call__(self) -> torch.Tensor:  # type: ignore[override]
        import warnings

        import torch

        with warnings.catch_warnings():  # read-only arrays: never written to
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(super().__call__())


def array_checkpoint(arrays: Mapping[str, np.ndarray]) -> ArrayCheckpoint:
    """A mapping of names to numpy arrays as a torch-free in-memory checkpoint.

    Returns:
        The checkpoint of the arrays torch could hold (bool, integers, floats), names with
        wrapper prefixes stripped.

    Raises:
        CheckpointError: none of the arrays is of such a kind.
    """
    kept = {str(k): v for k, v in arrays.items()
            if v.dtype.kind in _TORCH_KINDS and tensor_dtype_name(v.dtype) is not None}
    if not kept:
        raise CheckpointError(
            "<state dict> holds no tensors that look like model weights (looked for a state dict "
            "under the usual keys or tensors at the top level)"
        )
    return ArrayCheckpoint(strip_prefixes(kept))
