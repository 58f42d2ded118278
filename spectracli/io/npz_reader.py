"""NumPy ``.npz`` archives, read with ``allow_pickle=False`` one array at a time.

Shapes and dtypes come from each member's ``.npy`` header, read without the array data. An array
of Python objects would need unpickling: it is never loaded, and listed as skipped with that
reason (``meta["skip"]``) while the other arrays are analysed.
Arrays that torch cannot hold (strings, structured records, datetimes, float128) are not tensors
and are ignored, like non-tensor entries of a PyTorch checkpoint. Each handle reads its array
as numpy (``load_numpy``, torch never imported) or as a torch tensor sharing that memory
(``load``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spectracli.errors import CheckpointError
from spectracli.io._common import one_line, tensor_dtype_name
from spectracli.io.base import Checkpoint, TensorHandle

if TYPE_CHECKING:
    import torch


def _read_npy_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:  # (3, 0) only differs in allowing utf-8 field names
        shape, _, dtype = np.lib.format._read_array_header(fh, version)
    return tuple(int(d) for d in shape), dtype


class NpzCheckpoint(Checkpoint):
    """The arrays of one ``.npz`` archive as lazy handles (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = path
        self.format = "npz"
        self.size_bytes = path.stat().st_size
        try:
            self._npz = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy/zipfile raise many types on bad data
            raise CheckpointError(
                f"{path} is not a readable .npz archive: {one_line(exc)}"
            ) from None
        if not isinstance(self._npz, np.lib.npyio.NpzFile):
            raise CheckpointError(
                f"{path} is a single .npy array, not an .npz archive of named arrays"
            )
        self._entries: list[tuple[str, tuple[int, ...], str, str | None]] = []
        try:
            for member in self._npz.zip.namelist():
                if not member.endswith(".npy"):
                    continue
                key = member[: -len(".npy")]
                with self._npz.zip.open(member) as fh:
                    shape, dtype = _read_npy_header(fh)
                if dtype.hasobject:  # never unpickled: listed as skipped, the rest analysed
                    self._entries.append((key, shape, "object", (
                        "array of Python objects (dtype=object): reading it would unpickle "
                        "(run code); .npz arrays are read without pickle")))
                    continue
                name = tensor_dtype_name(dtype)
                if name is not None:
                    self._entries.append((key, shape, name, None))
        except CheckpointError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - numpy/zipfile raise many types on bad data
            self.close()
            raise CheckpointError(f"{path} is a corrupt .npz archive: {one_line(exc)}") from None

    def handles(self) -> Iterator[TensorHandle]:
        """One lazy handle per array torch can hold, in archive order.

        Yields:
            The arrays' handles (numpy and torch loaders); an object array's handle carries
            ``meta["skip"]`` (the reason) and is never loaded.
        """
        for key, shape, dtype, skip in self._entries:
            yield TensorHandle(
                name=key, shape=shape, dtype=dtype, loader=_Get(self, key),
                numpy_loader=_GetNumpy(self, key), meta={"skip": skip} if skip else {},
            )

    def load(self, key: str) -> torch.Tensor:
        """Array ``key`` as a torch tensor sharing the numpy array's memory."""
        import torch

        return torch.from_numpy(self.load_numpy(key))

    def load_numpy(self, key: str) -> np.ndarray:
        """Array ``key``, read anew from the archive, in native byte order.

        Returns:
            The array.

        Raises:
            CheckpointError: the archive is closed, or the member cannot be read.
        """
        if self._npz is None:
            raise CheckpointError(f"{self.path} is closed")
        try:
            arr = self._npz[key]  # NpzFile reads the member anew each time: nothing is cached
        except Exception as exc:  # noqa: BLE001 - numpy/zipfile raise many types on bad data
            raise CheckpointError(
                f"cannot read array '{key}' from {self.path}: {one_line(exc)}"
            ) from None
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr

    def close(self) -> None:
        """Close the archive."""
        npz, self._npz = getattr(self, "_npz", None), None
        if npz is not None:
            npz.close()


class _Get:
    __slots__ = ("ckpt", "key")

    def __init__(self, ckpt: NpzCheckpoint, key: str):
        self.ckpt, self.key = ckpt, key

    def __call__(self) -> torch.Tensor:
        return self.ckpt.load(self.key)


class _GetNumpy(_Get):
    __slots__ = ()

    def __call__(self) -> np.ndarray:  # type: ignore[override]
        return self.ckpt.load_numpy(self.key)


def open_npz(path: Path) -> Checkpoint:
    """The ``.npz`` archive at ``path`` (read with ``allow_pickle=False``)."""
    return NpzCheckpoint(path)
