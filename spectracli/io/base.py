"""What every checkpoint reader yields: names and lazy handles, one tensor loaded at a time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported by the readers that need it, not here
    import numpy as np
    import torch

from spectracli.dtypes import FLOAT_DTYPES


@dataclass
class TensorHandle:
    """A tensor in a checkpoint, known by name, shape and dtype before any data is read.

    ``load()`` reads this one tensor (on the CPU, in its stored dtype). ``aliases`` lists the
    other names that share its storage (tied weights); they are not yielded separately.

    Every reader presents tensors in PyTorch's layout (a linear map as (out, in), a conv kernel
    as (out, in / groups, *k)), transposing lazily where the format stores otherwise. ``meta``
    carries what the format knows and the layer model may use, all optional:
    ``"kind"`` (``"linear"``, ``"embedding"``, ``"conv"``: the consuming op said so, e.g. ONNX),
    ``"quant_type"`` (the stored quantisation, e.g. ``"Q4_K"``), ``"stored_dtype"`` (the dtype
    on disk when ``dtype`` is what ``load()`` returns after dequantisation), ``"skip"`` (a reason:
    the format lists the tensor but it cannot be produced, e.g. a quantisation the installed
    library cannot dequantise; the analysis lists it as skipped with that reason).

    ``numpy_loader``, where the format allows it (safetensors float16/32/64 and bfloat16, .npz,
    GGUF, ONNX), reads the same tensor as a numpy array without importing torch: a bfloat16
    tensor comes as float32 holding exactly the same values (``dtype`` stays the stored
    ``"bfloat16"``). ``None`` when only torch can produce it (fp8 safetensors, pickles,
    in-memory modules).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "bfloat16"
    loader: Callable[[], torch.Tensor] = field(repr=False)
    aliases: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    numpy_loader: Callable[[], np.ndarray] | None = field(default=None, repr=False)

    @property
    def is_float(self) -> bool:
        """Whether the stored dtype is a floating type (the spectra are of float weights)."""
        return self.dtype in FLOAT_DTYPES

    @property
    def numel(self) -> int:
        """The number of entries, from the shape (nothing is read)."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    def load(self) -> torch.Tensor:
        """This tensor alone, read now: on the CPU, in its stored dtype."""
        return self.loader()

    def load_numpy(self) -> np.ndarray:
        """This tensor as a numpy array, read without torch (bfloat16 as exact float32).

        Returns:
            The array, in native byte order.

        Raises:
            ValueError: the reader has no numpy path for this tensor (``numpy_loader`` is None).
        """
        if self.numpy_loader is None:
            raise ValueError(f"tensor {self.name!r} ({self.dtype}) has no numpy reader")
        return self.numpy_loader()


class Checkpoint:
    """An open checkpoint: iterate ``handles()``; use as a context manager to close files."""

    path: Path
    format: str  # "safetensors" | "safetensors-sharded" | "pytorch" | "npz"
    size_bytes: int
    # The Hugging Face ``config.json`` beside the weights, parsed; None when there is none.
    config: dict[str, Any] | None = None
    # Globals of a pickle that were read as inert placeholders (never imported nor run).
    # {"repo_id", "revision", "commit", "downloaded"} when opened from a Hugging Face id.
    hub: dict[str, Any] | None = None
    stubbed_globals: list[str] = []  # readers assign a new list; never mutated in place

    def handles(self) -> Iterator[TensorHandle]:
        """One lazy handle per stored tensor (tied ones once, with aliases), in file order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the files (readers holding files override this)."""

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_config_json(directory: Path) -> dict[str, Any] | None:
    """The parsed ``config.json`` in ``directory``, or None when absent or not a JSON object."""
    try:
        with open(directory / "config.json", encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None
