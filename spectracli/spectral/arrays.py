"""The array layer under spectracli.spectral: one code path for numpy arrays and torch tensors.

The math in :mod:`~spectracli.spectral.esd`, :mod:`~spectracli.spectral.farms` and
:mod:`~spectracli.spectral.metrics` is written against the Python array API standard
(https://data-apis.org/array-api/2023.12/) through ``array-api-compat``, which gives numpy and
torch (CPU or CUDA) the standard's names. A numpy array is computed with numpy/LAPACK on the
host, a torch tensor with torch on its own device; nothing here imports torch, so a numpy-only
run never loads it.

Dtypes are named as the standard names them (``"float64"``, ``"float32"``); a dtype object of
either library (``torch.float64``, ``numpy.float32``) is accepted too.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

# Storage dtypes by name (torch's spelling): (machine epsilon, bits), from torch.finfo. A name
# not listed (an integer type, an unknown quantisation such as GGUF's "Q4_K") counts as float32.
STORAGE_PRECISION: dict[str, tuple[float, int]] = {
    "float64": (2.0**-52, 64),
    "double": (2.0**-52, 64),
    "float32": (2.0**-23, 32),
    "float": (2.0**-23, 32),
    "float16": (2.0**-10, 16),
    "half": (2.0**-10, 16),
    "bfloat16": (2.0**-7, 16),
    "float8_e4m3fn": (2.0**-3, 8),
    "float8_e4m3fnuz": (2.0**-3, 8),
    "float8_e5m2": (2.0**-2, 8),
    "float8_e5m2fnuz": (2.0**-3, 8),
    "float8_e8m0fnu": (1.0, 8),
}


def dtype_name(dtype: Any) -> str | None:
    """``"float32"`` for ``"float32"``, ``"torch.float32"``, ``torch.float32`` or ``np.float32``.

    ``None`` stays ``None`` (the callers' "exact values, float64").

    Returns:
        The dtype's name without a ``torch.`` prefix, or None.
    """
    if dtype is None:
        return None
    if isinstance(dtype, str):
        return dtype.removeprefix("torch.")
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        return np.dtype(dtype).name
    name = getattr(dtype, "name", None)  # numpy dtype objects
    return name if isinstance(name, str) else str(dtype).removeprefix("torch.")


def namespace(*arrays: Any) -> Any:
    """The array API namespace of ``arrays`` (Python array API standard).

    Returns:
        numpy itself for numpy arrays (numpy >= 2.1 has every name used here, and its compat
        wrapper costs 0.1 s of imports), else ``array_api_compat.array_namespace`` (torch's
        wrapper).

    Raises:
        TypeError: an object that is no array of a supported library, or arrays of two libraries.
    """
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np
    return array_api_compat.array_namespace(*arrays)


def float_dtype(xp: Any, dtype: Any) -> Any:
    """The namespace's floating dtype for ``dtype`` (a name or either library's dtype object).

    Returns:
        ``xp``'s dtype object of that name.

    Raises:
        ValueError: a dtype the namespace has no floating type of that name for.
    """
    name = dtype_name(dtype)
    found = getattr(xp, name, None) if name else None
    if found is None or name not in STORAGE_PRECISION:
        raise ValueError(f"dtype must be a floating dtype such as 'float64', got {dtype!r}")
    return found


def device(x: Any) -> Any:
    """The device ``x`` lives on (the array API's ``device(x)``: ``"cpu"`` for numpy)."""
    return array_api_compat.device(x)


def is_torch(x: Any) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return array_api_compat.is_torch_array(x)


def to_numpy(x: Any) -> np.ndarray:
    """A float64 numpy copy (or view) of ``x`` on the host.

    Takes numpy arrays, torch tensors on any device (detached), or anything numpy can read.

    Returns:
        The float64 numpy array (a view when ``x`` is already float64 numpy).
    """
    if array_api_compat.is_torch_array(x):
        import torch  # a tensor is given: torch is loaded already

        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def numel(x: Any) -> int:
    """The number of entries of ``x``."""
    n = 1
    for d in x.shape:
        n *= int(d)
    return n
