"""safetensors tensors read into numpy without torch: the fast, torch-free path.

The header (:mod:`~spectracli.io.safetensors_header`) gives each tensor's byte range; the bytes
are read straight into a numpy array that owns its memory (like the ``pread`` backend: no pages
stay mapped after the tensor is dropped). float16/32/64 and the integer types are numpy types.
bfloat16 is the top half of a float32 (same sign, exponent and 7 fraction bits), so
``(uint16 as uint32) << 16`` viewed as float32 is the exact value (Google Brain bfloat16; the
float32 layout of IEEE 754). fp8 and the sub-byte types have no numpy path: torch reads them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from spectracli.errors import CheckpointError
from spectracli.io._common import bfloat16_to_float32, one_line
from spectracli.io.safetensors_header import TensorEntry

# safetensors dtype code -> numpy dtype of the stored bytes (little-endian, as the format says)
__all__ = ["NUMPY_DTYPES", "bfloat16_to_float32", "numpy_readable", "read_numpy"]

NUMPY_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",  # widened to float32 on read
    "I64": "<i8",
    "U64": "<u8",
    "I32": "<i4",
    "U32": "<u4",
    "I16": "<i2",
    "U16": "<u2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def numpy_readable(entry: TensorEntry) -> bool:
    """Whether :func:`read_numpy` can read this tensor (its dtype has a numpy path)."""
    return entry.code in NUMPY_DTYPES


def read_numpy(path: Path, entry: TensorEntry) -> np.ndarray:
    """One tensor of a validated safetensors file as a numpy array in native byte order.

    bfloat16 comes back as float32 holding the same values; every other type as stored.

    Returns:
        The array, shaped as the entry says.

    Raises:
        CheckpointError: no numpy path for the dtype, no memory for the tensor, or the file
            cannot be read (or is shorter than its header says).
    """
    if entry.code not in NUMPY_DTYPES:
        raise CheckpointError(f"{path}: tensor '{entry.name}' ({entry.dtype}) has no numpy reader")
    dtype = np.dtype(NUMPY_DTYPES[entry.code])
    try:
        out = np.empty(math.prod(entry.shape), dtype=dtype)
    except MemoryError:
        raise CheckpointError(
            f"cannot read tensor '{entry.name}' of shape {entry.shape} ({entry.dtype}) from "
            f"{path}: not enough memory for its {entry.end - entry.begin:,} bytes"
        ) from None
    want = out.nbytes
    try:
        with open(path, "rb", buffering=0) as f:
            f.seek(entry.offset)
            got = f.readinto(memoryview(out).cast("B")) if want else 0
    except OSError as exc:
        raise CheckpointError(
            f"cannot read tensor '{entry.name}' from {path}: {one_line(exc)}"
        ) from None
    if got != want:
        raise CheckpointError(
            f"cannot read tensor '{entry.name}' from {path}: the file ends {want - (got or 0)} "
            "bytes early (truncated since it was opened?)"
        )
    if not dtype.isnative:
        out = out.astype(dtype.newbyteorder("="))
    if entry.code == "BF16":
        out = bfloat16_to_float32(out)
    return out.reshape(entry.shape)
