"""Tensor data files for the Hessian: an input and a target tensor in one file.

``.npz``, ``.pt``/``.pth`` or ``.safetensors`` files hold the two tensors, named ``x`` and
``y`` unless told otherwise.

``.pt`` files are read with ``weights_only=True`` (no code runs) and may hold a dict of tensors
or an ``(x, y)`` pair. Every failure is a one-line :class:`~spectracli.errors.SpectraError`.

Example::

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "d.pt"
    >>> torch.save({"x": torch.zeros(4, 2), "y": torch.arange(4)}, path)
    >>> [tuple(t.shape) for t in read_xy(path)]
    [(4, 2), (4,)]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spectracli.errors import SpectraError

DATA_SUFFIXES = (".npz", ".pt", ".pth", ".safetensors")


def is_data_file(ref: str) -> bool:
    """Whether ``ref`` names a tensor data file (by suffix; not ``file.py:callable``)."""
    path = Path(ref)
    return path.suffix.lower() in DATA_SUFFIXES and ":" not in path.name


def _short(items: list[str], limit: int = 5) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _as_tensor(value: Any, name: str, origin: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return torch.from_numpy(value)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    raise SpectraError(f"data {origin}: {name} must be a tensor, got {type(value).__name__}")


def _read(path: Path, x_key: str, y_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The tensors ``x_key`` and ``y_key`` of a data file, read by its suffix.

    Returns:
        ``(x, y)`` as tensors.

    Raises:
        SpectraError: an unknown suffix, an unreadable file, or a missing name.
    """
    readers = {".npz": _read_npz, ".safetensors": _read_safetensors,
               ".pt": _read_pt, ".pth": _read_pt}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise SpectraError(
            f"data {path}: expected a .npz, .pt or .safetensors file or file.py:callable"
        )
    store, keys = reader(path, x_key, y_key)
    for key in (x_key, y_key):
        if key not in store:
            raise SpectraError(f"data {path} has no tensor {key!r} (it has: {_short(keys, 10)})")
    return _as_tensor(store[x_key], x_key, str(path)), _as_tensor(store[y_key], y_key, str(path))


def _read_npz(path: Path, x_key: str, y_key: str) -> tuple[dict[str, Any], list[str]]:
    """The arrays ``x_key`` and ``y_key`` of an ``.npz`` (no pickles), and every name in it.

    Returns:
        ``(arrays found, all names)``.

    Raises:
        SpectraError: the file is not a readable ``.npz``.
    """
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            return {k: data[k] for k in (x_key, y_key) if k in keys}, keys
    except (OSError, ValueError) as exc:
        raise SpectraError(f"data {path} is not a readable .npz file ({exc})") from None


def _read_safetensors(path: Path, x_key: str, y_key: str) -> tuple[dict[str, Any], list[str]]:
    """Every tensor of a ``.safetensors`` file (``x_key``/``y_key`` are picked by the caller).

    Returns:
        ``(tensors by name, all names)``.

    Raises:
        SpectraError: the file is not readable safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        store = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise SpectraError(f"data {path} is not a readable safetensors file ({exc})") from None
    return store, list(store)


def _read_pt(path: Path, x_key: str, y_key: str) -> tuple[dict[str, Any], list[str]]:
    """A ``.pt``/``.pth`` file read with ``weights_only=True``: a dict, or an ``(x, y)`` pair.

    Returns:
        ``(objects by name, all names)``; a pair is named ``x_key``, ``y_key``.

    Raises:
        SpectraError: the file is not readable, or holds neither a dict nor a pair.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - many pickle failure types
        raise SpectraError(
            f"data {path} is not a readable tensor file ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        obj = {x_key: obj[0], y_key: obj[1]}
    if not isinstance(obj, dict):
        raise SpectraError(f"data {path} must hold a dict of tensors, got {type(obj).__name__}")
    return obj, list(obj)




def check_pair(x: torch.Tensor, y: torch.Tensor, origin: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` when both have one non-empty sample dimension of one length.

    Returns:
        ``(x, y)`` unchanged.

    Raises:
        SpectraError: a scalar, different sample counts, or no samples (``origin`` named).
    """
    if x.dim() == 0 or y.dim() == 0:
        raise SpectraError(f"data {origin}: x and y need a sample dimension, got scalars")
    if x.shape[0] != y.shape[0]:
        raise SpectraError(
            f"data {origin}: x has {x.shape[0]} samples but y has {y.shape[0]} "
            f"(shapes {tuple(x.shape)} and {tuple(y.shape)})"
        )
    if x.shape[0] == 0:
        raise SpectraError(f"data {origin} is empty (0 samples)")
    return x, y




def read_xy(path: str | Path, x_key: str = "x", y_key: str = "y") -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """``(x, y)`` from a ``.npz``, ``.pt``/``.pth`` or ``.safetensors`` file.

    Args:
        path: the file.
        x_key: the name of the input tensor.
        y_key: the name of the target tensor.

    Returns:
        the two tensors, as stored (numpy arrays converted), with one sample dimension.

    Raises:
        SpectraError: a missing or unreadable file, a missing name, tensors without a common
            sample dimension, no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise SpectraError(f"data file {path} does not exist")
    x, y = _read(path, x_key, y_key)
    return check_pair(x, y, str(path))
