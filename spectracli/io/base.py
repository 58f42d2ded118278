"""What every checkpoint reader yields: names and lazy handles, one tensor loaded at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass
class TensorHandle:
    """A tensor in a checkpoint, known by name, shape and dtype before any data is read.

    ``load()`` reads this one tensor (on the CPU, in its stored dtype). ``aliases`` lists the
    other names that share its storage (tied weights); they are not yielded separately.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "bfloat16"
    loader: Callable[[], torch.Tensor] = field(repr=False)
    aliases: list[str] = field(default_factory=list)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def load(self) -> torch.Tensor:
        return self.loader()


class Checkpoint:
    """An open checkpoint: iterate ``handles()``; use as a context manager to close files."""

    path: Path
    format: str  # "safetensors" | "safetensors-sharded" | "pytorch" | "npz"
    size_bytes: int

    def handles(self) -> Iterator[TensorHandle]:
        raise NotImplementedError

    def close(self) -> None:  # readers holding files override this
        pass

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
