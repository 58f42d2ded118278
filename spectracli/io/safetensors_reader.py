"""safetensors files, read lazily one tensor at a time (the file handle and the checkpoint).

One concern per module: the header is read and validated in
:mod:`~spectracli.io.safetensors_header` before the file is handed to ``safetensors.safe_open``;
block-scaled fp8 is dequantised in :mod:`~spectracli.io.safetensors_fp8` (block size from
:mod:`~spectracli.io.safetensors_config`); sharded directories are
:mod:`~spectracli.io.safetensors_sharded`; the torch-free numpy read is
:mod:`~spectracli.io.safetensors_numpy`. Shapes and dtypes come from the header alone; tensor data
is read only by ``TensorHandle.load()`` (torch) or ``TensorHandle.load_numpy()`` (numpy: float16,
float32, float64, bfloat16 as exact float32, integers; torch is not imported).

Tensors are read with the ``pread`` backend where the installed safetensors has one, so that a
loaded tensor owns its memory and the pages of tensors already analysed are not kept mapped: the
resident memory stays at about one tensor instead of growing to the file size (measured on a
384 MB file: peak RSS 238 MB with pread, 607 MB with mmap; the bare interpreter with torch is
218 MB). The numpy read copies the bytes into an owned array the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from spectracli.errors import CheckpointError
from spectracli.io._common import one_line
from spectracli.io.base import Checkpoint, TensorHandle
from spectracli.io.safetensors_fp8 import (  # noqa: F401 - re-exported for callers of this module
    FP8_DTYPES,
    SCALE_SUFFIX,
    _Dequant,
    dequantize_fp8,
    fp8_scales,
)
from spectracli.io.safetensors_header import (  # noqa: F401 - re-exported
    DTYPES,
    MAX_HEADER_BYTES,
    TensorEntry,
    metadata_aliases,
    read_header,
)
from spectracli.io.safetensors_numpy import numpy_readable, read_numpy

if TYPE_CHECKING:
    import numpy as np
    import torch


class SafetensorsFile:
    """One validated safetensors file; ``safe_open`` is called once, on the first load."""

    def __init__(self, path: Path):
        self.path = path
        self.entries, self.metadata = read_header(path)
        self.size_bytes = path.stat().st_size
        self._handle: Any = None
        self._lock = threading.Lock()  # loads may come from several threads: open once

    def __getstate__(self) -> dict[str, Any]:  # picklable for worker processes: reopen there
        state = self.__dict__.copy()
        state["_handle"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _open(self) -> Any:
        with self._lock:
            return self._open_locked()

    def _open_locked(self) -> Any:
        if self._handle is None:
            try:
                try:
                    handle = safe_open(
                        str(self.path), framework="pt", device="cpu", backend="pread"
                    )
                except TypeError:  # safetensors without the backend option: mmap only
                    handle = safe_open(str(self.path), framework="pt", device="cpu")
                self._handle = handle.__enter__()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # the Rust core can raise a PanicException
                raise CheckpointError(
                    f"safetensors cannot open {self.path}: {one_line(exc)}"
                ) from None
        return self._handle

    def load(self, name: str) -> torch.Tensor:
        """Tensor ``name`` through safetensors' torch reader (CheckpointError if it fails)."""
        handle = self._open()
        try:
            return handle.get_tensor(name)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise CheckpointError(
                f"cannot read tensor '{name}' from {self.path}: {one_line(exc)}"
            ) from None

    def load_numpy(self, name: str) -> np.ndarray:
        """One tensor as a numpy array, without torch (:mod:`.safetensors_numpy`)."""
        return read_numpy(self.path, self.entries[name])

    def close(self) -> None:
        """Close the file handle, if open (errors while closing are ignored)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - closing must not mask the real outcome
                pass


class SafetensorsCheckpoint(Checkpoint):
    """Handles over one or more safetensors files, with alias and fp8-scale resolution."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        files: list[SafetensorsFile],
        owner: dict[str, SafetensorsFile],
        config_dir: Path,
    ):
        self.path = path
        self.format = fmt
        self._files = files
        self._owner = owner  # tensor name -> the file that serves it
        self.size_bytes = sum(f.size_bytes for f in files)
        names = set(owner)
        self._aliases: dict[str, list[str]] = {}
        for f in files:
            for kept, dropped in metadata_aliases(f.metadata, names).items():
                self._aliases.setdefault(kept, []).extend(dropped)
        self._scales = fp8_scales(owner, config_dir)

    def _entry(self, name: str) -> TensorEntry:
        return self._owner[name].entries[name]

    def handles(self) -> Iterator[TensorHandle]:
        """One handle per tensor; fp8 weights with a block scale load dequantised to float32."""
        consumed = {scale for scale, _ in self._scales.values()}
        for f in self._files:
            for name in f.entries:
                if self._owner.get(name) is not f or name in consumed:
                    continue
                entry = f.entries[name]
                if name in self._scales:
                    scale_name, block = self._scales[name]
                    yield TensorHandle(
                        name=name,
                        shape=entry.shape,
                        dtype="float32",
                        loader=_Dequant(f, name, self._owner[scale_name], scale_name, block),
                        aliases=list(self._aliases.get(name, [])),
                    )
                else:
                    yield TensorHandle(
                        name=name,
                        shape=entry.shape,
                        dtype=entry.dtype,
                        loader=_Load(f, name),
                        aliases=list(self._aliases.get(name, [])),
                        numpy_loader=_LoadNumpy(f, name) if numpy_readable(entry) else None,
                    )

    def close(self) -> None:
        """Close every file."""
        for f in self._files:
            f.close()


class _Load:
    """A picklable, reference-light loader: the file and a name, never the tensor."""

    __slots__ = ("file", "name")

    def __init__(self, file: SafetensorsFile, name: str):
        self.file, self.name = file, name

    def __call__(self) -> torch.Tensor:
        return self.file.load(self.name)


class _LoadNumpy(_Load):
    """The same tensor read as a numpy array, without torch."""

    __slots__ = ()

    def __call__(self) -> np.ndarray:  # type: ignore[override]
        return self.file.load_numpy(self.name)


def open_safetensors(path: Path) -> Checkpoint:
    """One safetensors file, its header validated before any tensor is read."""
    f = SafetensorsFile(path)
    return SafetensorsCheckpoint(path, "safetensors", [f], {n: f for n in f.entries}, path.parent)
