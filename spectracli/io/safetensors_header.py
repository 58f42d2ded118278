"""The safetensors header, read and validated in Python before any library sees the file.

A corrupt file then gives a one-line ``CheckpointError`` that says what is wrong and where,
instead of a Rust error or panic. Shapes, dtypes and byte offsets come from the header alone.

Tied weights: ``safetensors.torch.save_model`` drops every tensor that shares storage with a kept
one and records ``{dropped_name: kept_name}`` in the header's ``__metadata__``; a metadata entry
whose key is not a tensor of the file and whose value is one is read as such an alias
(:func:`metadata_aliases`).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from spectracli.errors import CheckpointError
from spectracli.io._common import one_line

# safetensors dtype code -> (torch dtype name, bits per element)
DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8),
    "U8": ("uint8", 8),
    "I8": ("int8", 8),
    "F8_E5M2": ("float8_e5m2", 8),
    "F8_E4M3": ("float8_e4m3fn", 8),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 8),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 8),
    "F8_E8M0": ("float8_e8m0fnu", 8),
    "I16": ("int16", 16),
    "U16": ("uint16", 16),
    "F16": ("float16", 16),
    "BF16": ("bfloat16", 16),
    "I32": ("int32", 32),
    "U32": ("uint32", 32),
    "F32": ("float32", 32),
    "F64": ("float64", 64),
    "C64": ("complex64", 64),
    "I64": ("int64", 64),
    "U64": ("uint64", 64),
    "F4": ("float4_e2m1fn_x2", 4),
    "F6_E2M3": ("float6_e2m3", 6),
    "F6_E3M2": ("float6_e3m2", 6),
}
MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself enforces
class TensorEntry:
    """One tensor as the header describes it."""

    __slots__ = ("name", "code", "dtype", "shape", "begin", "end", "offset")

    def __init__(self, name: str, code: str, shape: tuple[int, ...], begin: int, end: int):
        self.name = name
        self.code = code
        self.dtype = DTYPES[code][0]
        self.shape = shape
        self.begin = begin  # data_offsets: relative to the data section
        self.end = end
        self.offset = begin  # absolute position in the file, set by read_header


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Read and validate a safetensors header.

    Checks everything the safetensors library checks, so that a file passing here opens there:
    an 8-byte little-endian header length that fits the file, a JSON object header, known dtypes,
    shapes of non-negative ints, ``data_offsets`` that match shape x dtype size, lie inside the
    file, and tile the data section without gaps or overlaps.

    Returns:
        ``(entries, metadata)``: the tensors by name in file order (absolute byte offsets), and
        the ``__metadata__`` strings.

    Raises:
        CheckpointError: an unreadable, empty, truncated or corrupt file, the message saying
            which check failed.
    """
    raw, n, size = _raw_header(path)
    header = _parse_header(path, raw)
    metadata_raw = header.pop("__metadata__", None) or {}
    if not isinstance(metadata_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
    ):
        raise CheckpointError(
            f"{path} is not a valid safetensors file: __metadata__ must map strings to strings"
        )
    data_len = size - 8 - n
    entries = sorted((_entry(path, name, info, data_len) for name, info in header.items()),
                     key=lambda e: (e.begin, e.end))
    _check_tiling(path, entries, data_len)
    for e in entries:
        e.offset = 8 + n + e.begin
    return {e.name: e for e in entries}, dict(metadata_raw)


def _raw_header(path: Path) -> tuple[bytes, int, int]:
    """The header bytes of a safetensors file, after checking its 8-byte length prefix.

    Returns:
        ``(header bytes, header length n, file size)``.

    Raises:
        CheckpointError: unreadable, empty, shorter than 8 bytes, or a length beyond the limit
            or the file.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if size == 0:
                raise CheckpointError(f"{path} is empty (0 bytes), expected a safetensors file")
            if len(head) < 8:
                raise CheckpointError(
                    f"{path} is truncated: {size} bytes, shorter than the 8-byte header length "
                    "a safetensors file starts with"
                )
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"{path} is not a valid safetensors file: header length {n} exceeds "
                    f"the {MAX_HEADER_BYTES}-byte limit"
                )
            if 8 + n > size:
                raise CheckpointError(
                    f"{path} is truncated or corrupt: header length {n} is larger than "
                    f"the file ({size} bytes)"
                )
            return f.read(n), n, size
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {one_line(exc)}") from None


class _DuplicateKey(Exception):
    """A JSON object of the header names one key twice (``json`` would keep the last)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_header(path: Path, raw: bytes) -> dict[str, Any]:
    """The header as a JSON object.

    Returns:
        The parsed object (``__metadata__`` included).

    Raises:
        CheckpointError: not UTF-8 JSON, not an object, or a key named twice in an object.
    """
    not_json = f"{path} is not a valid safetensors file: its header is not JSON"
    try:
        text = raw.decode("utf-8")
        header = (json.loads(text, object_pairs_hook=_unique_keys)
                  if text.lstrip().startswith("{") else None)
    except _DuplicateKey as exc:
        raise CheckpointError(
            f"{path} is corrupt: its header names {exc.args[0]!r} twice (which one holds "
            "the data is undefined)"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{not_json} ({one_line(exc)})") from None
    if header is None:
        raise CheckpointError(f"{not_json} (header does not start with '{{')")
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path} is not a valid safetensors file: header is not a JSON object"
        )
    return header


def _check_tiling(path: Path, entries: list[TensorEntry], data_len: int) -> None:
    """The tensors, sorted by offset, tile the ``data_len`` bytes after the header exactly.

    Raises:
        CheckpointError: a gap, an overlap, or data left over (the tensor named).
    """
    cursor = 0
    for e in entries:
        if e.begin != cursor:
            what = "overlaps the tensor before it" if e.begin < cursor else "leaves a gap"
            raise CheckpointError(
                f"{path} is corrupt: tensor '{e.name}' data_offsets [{e.begin}, {e.end}] {what} "
                f"(expected it to start at {cursor})"
            )
        cursor = e.end
    if cursor != data_len:
        raise CheckpointError(
            f"{path} is corrupt: the tensors cover {cursor} bytes of data but the file holds "
            f"{data_len} bytes after the header"
        )


def _entry(path: Path, name: str, info: Any, data_len: int) -> TensorEntry:
    if not isinstance(info, dict):
        raise CheckpointError(f"{path} is corrupt: header entry '{name}' is not an object")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(code, str) or code not in DTYPES:
        raise CheckpointError(f"{path}: tensor '{name}' has an unknown dtype {code!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise CheckpointError(f"{path} is corrupt: tensor '{name}' has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise CheckpointError(
            f"{path} is corrupt: tensor '{name}' has invalid data_offsets {offsets!r}"
        )
    begin, end = offsets
    if end > data_len:
        raise CheckpointError(
            f"{path} is truncated or corrupt: tensor '{name}' data_offsets [{begin}, {end}] go "
            f"past the end of the file (the data section holds {data_len} bytes)"
        )
    bits = math.prod(shape) * DTYPES[code][1]
    if bits % 8 or bits // 8 != end - begin:
        raise CheckpointError(
            f"{path} is corrupt: tensor '{name}' of shape {tuple(shape)} and dtype {code} needs "
            f"{bits / 8:g} bytes but its data_offsets [{begin}, {end}] hold {end - begin}"
        )
    return TensorEntry(name, code, tuple(shape), begin, end)


def metadata_aliases(metadata: dict[str, str], names: set[str]) -> dict[str, list[str]]:
    """``{kept_name: [dropped names]}`` from ``save_model``'s ``{dropped: kept}`` metadata."""
    aliases: dict[str, list[str]] = {}
    for key, value in metadata.items():
        if key not in names and value in names:
            aliases.setdefault(value, []).append(key)
    return {k: sorted(v) for k, v in aliases.items()}
