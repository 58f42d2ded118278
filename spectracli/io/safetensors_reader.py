"""safetensors files and Hugging Face sharded directories, read lazily one tensor at a time.

The header is read and validated here, in Python, before the file is handed to
``safetensors.safe_open``: a corrupt file then gives a one-line ``CheckpointError`` that says what
is wrong and where, instead of a Rust error or panic. Shapes and dtypes come from the header alone;
tensor data is read only by ``TensorHandle.load()``.

Tensors are read with the ``pread`` backend where the installed safetensors has one, so that a
loaded tensor owns its memory and the pages of tensors already analysed are not kept mapped: the
resident memory stays at about one tensor instead of growing to the file size (measured on a
384 MB file: peak RSS 238 MB with pread, 607 MB with mmap; the bare interpreter with torch is
218 MB).

Tied weights: ``safetensors.torch.save_model`` drops every tensor that shares storage with a kept
one and records ``{dropped_name: kept_name}`` in the header's ``__metadata__``. A metadata entry
whose key is not a tensor of the file and whose value is one is read as such an alias.

Block-scaled fp8 (DeepSeek-V3 style): an fp8 ``X.weight`` beside a float ``X.weight_scale_inv`` of
shape (ceil(out/b0), ceil(in/b1)) is dequantised on load, ``W = fp8(W) * scale_inv`` per block, and
served as one float32 handle; the scale tensor is consumed and not yielded. The block size is read
from ``config.json`` (``quantization_config.weight_block_size``) beside the file, else inferred
from the shapes (128 x 128 when consistent). An fp8 weight without a usable scale keeps its fp8
dtype and is never cast silently.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from spectracli.errors import CheckpointError
from spectracli.io._common import one_line, read_weight_map
from spectracli.io.base import Checkpoint, TensorHandle

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
FP8_DTYPES = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself enforces
SCALE_SUFFIX = ".weight_scale_inv"


class TensorEntry:
    """One tensor as the header describes it."""

    __slots__ = ("name", "code", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, code: str, shape: tuple[int, ...], begin: int, end: int):
        self.name = name
        self.code = code
        self.dtype = DTYPES[code][0]
        self.shape = shape
        self.begin = begin
        self.end = end


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Read and validate a safetensors header; return its tensors (in file order) and metadata.

    Checks everything the safetensors library checks, so that a file passing here opens there:
    an 8-byte little-endian header length that fits the file, a JSON object header, known dtypes,
    shapes of non-negative ints, ``data_offsets`` that match shape x dtype size, lie inside the
    file, and tile the data section without gaps or overlaps.
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
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {one_line(exc)}") from None
    try:
        text = raw.decode("utf-8")
        if not text.lstrip().startswith("{"):
            raise ValueError("header does not start with '{'")
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a valid safetensors file: its header is not JSON ({one_line(exc)})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path} is not a valid safetensors file: header is not a JSON object"
        )

    metadata_raw = header.pop("__metadata__", None) or {}
    if not isinstance(metadata_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
    ):
        raise CheckpointError(
            f"{path} is not a valid safetensors file: __metadata__ must map strings to strings"
        )

    data_len = size - 8 - n
    entries: list[TensorEntry] = []
    for name, info in header.items():
        entries.append(_entry(path, name, info, data_len))
    entries.sort(key=lambda e: (e.begin, e.end))
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
    return {e.name: e for e in entries}, dict(metadata_raw)


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
        handle = self._open()
        try:
            return handle.get_tensor(name)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise CheckpointError(
                f"cannot read tensor '{name}' from {self.path}: {one_line(exc)}"
            ) from None

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - closing must not mask the real outcome
                pass


def metadata_aliases(metadata: dict[str, str], names: set[str]) -> dict[str, list[str]]:
    """``{kept_name: [dropped names]}`` from ``save_model``'s ``{dropped: kept}`` metadata."""
    aliases: dict[str, list[str]] = {}
    for key, value in metadata.items():
        if key not in names and value in names:
            aliases.setdefault(value, []).append(key)
    return {k: sorted(v) for k, v in aliases.items()}


class _SafetensorsCheckpoint(Checkpoint):
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
        self._scales = _fp8_scales(owner, config_dir)

    def _entry(self, name: str) -> TensorEntry:
        return self._owner[name].entries[name]

    def handles(self) -> Iterator[TensorHandle]:
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
                    )

    def close(self) -> None:
        for f in self._files:
            f.close()


class _Load:
    """A picklable, reference-light loader: the file and a name, never the tensor."""

    __slots__ = ("file", "name")

    def __init__(self, file: SafetensorsFile, name: str):
        self.file, self.name = file, name

    def __call__(self) -> torch.Tensor:
        return self.file.load(self.name)


class _Dequant:
    __slots__ = ("file", "name", "scale_file", "scale_name", "block")

    def __init__(
        self,
        file: SafetensorsFile,
        name: str,
        scale_file: SafetensorsFile,
        scale_name: str,
        block: tuple[int, int] | None,
    ):
        self.file, self.name = file, name
        self.scale_file, self.scale_name, self.block = scale_file, scale_name, block

    def __call__(self) -> torch.Tensor:
        return dequantize_fp8(
            self.file.load(self.name), self.scale_file.load(self.scale_name), self.block
        )


def dequantize_fp8(
    weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] | None
) -> torch.Tensor:
    """float32 ``W[i, j] = fp8(W)[i, j] * scale_inv[i // b0, j // b1]`` (block None: one scale)."""
    w = weight.to(torch.float32)
    s = scale_inv.to(torch.float32)
    if block is None:
        return w.mul_(s.reshape(()))
    b0, b1 = block
    cols = w.shape[1]
    # Row blocks one at a time: no second full-size float32 buffer for the expanded scale.
    for i in range(s.shape[0]):
        w[i * b0 : (i + 1) * b0].mul_(s[i].repeat_interleave(b1)[:cols])
    return w


def _fp8_scales(
    owner: dict[str, SafetensorsFile], config_dir: Path
) -> dict[str, tuple[str, tuple[int, int] | None]]:
    """``{weight_name: (scale_name, block)}`` for fp8 weights whose scale fits their shape."""
    found: dict[str, tuple[str, tuple[int, int] | None]] = {}
    config_block = _config_block(config_dir)
    for scale_name in owner:
        if not scale_name.endswith(SCALE_SUFFIX):
            continue
        weight_name = scale_name[: -len(SCALE_SUFFIX)] + ".weight"
        if weight_name not in owner:
            continue
        w = owner[weight_name].entries[weight_name]
        s = owner[scale_name].entries[scale_name]
        if w.dtype not in FP8_DTYPES or not s.dtype.startswith(("float", "bfloat")):
            continue
        if math.prod(s.shape) == 1:
            found[weight_name] = (scale_name, None)
            continue
        if len(w.shape) != 2 or len(s.shape) != 2:
            continue
        block = _block_for(w.shape, s.shape, config_block)
        if block is not None:
            found[weight_name] = (scale_name, block)
    return found


def _block_for(
    w: tuple[int, ...], s: tuple[int, ...], config_block: tuple[int, int] | None
) -> tuple[int, int] | None:
    def fits(b: tuple[int, int]) -> bool:
        return b[0] > 0 and b[1] > 0 and -(-w[0] // b[0]) == s[0] and -(-w[1] // b[1]) == s[1]

    candidates = [config_block] if config_block else []
    candidates.append((128, 128))
    if s[0] and s[1]:
        candidates.append((-(-w[0] // s[0]), -(-w[1] // s[1])))
    for b in candidates:
        if b is not None and fits(b):
            return b
    return None


def _config_block(config_dir: Path) -> tuple[int, int] | None:
    try:
        with open(config_dir / "config.json", encoding="utf-8") as f:
            block = json.load(f)["quantization_config"]["weight_block_size"]
        return int(block[0]), int(block[1])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def open_safetensors(path: Path) -> Checkpoint:
    f = SafetensorsFile(path)
    return _SafetensorsCheckpoint(path, "safetensors", [f], {n: f for n in f.entries}, path.parent)


def open_sharded(index_path: Path, shown_path: Path) -> Checkpoint:
    """A Hugging Face sharded checkpoint: ``*.safetensors.index.json`` plus its shards.

    Every shard named by the index must exist and every tensor the index places in a shard must
    be in that shard's header; all headers are validated before any handle is yielded. Each shard
    is opened once and serves all of its tensors.
    """
    root = index_path.parent
    weight_map = read_weight_map(index_path)
    shard_names = sorted(set(weight_map.values()))
    files: list[SafetensorsFile] = []
    owner: dict[str, SafetensorsFile] = {}
    by_shard: dict[str, SafetensorsFile] = {}
    for s in shard_names:
        f = SafetensorsFile(root / s)
        files.append(f)
        by_shard[s] = f
    for name, s in weight_map.items():
        f = by_shard[s]
        if name not in f.entries:
            raise CheckpointError(
                f"index {index_path} places tensor '{name}' in shard {s}, which does not hold it"
            )
        owner[name] = f
    for f in files:  # tensors a shard holds that the index forgot: still served, once
        for name in f.entries:
            owner.setdefault(name, f)
    return _SafetensorsCheckpoint(shown_path, "safetensors-sharded", files, owner, root)
