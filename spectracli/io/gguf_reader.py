"""GGUF files (llama.cpp) through the ``gguf`` package, one tensor dequantised at a time.

``gguf.GGUFReader`` memory-maps the file and parses the header: tensor names, types and
dimensions are known before any data is read. GGUF lists dimensions fastest-moving first
(``ne[0]`` is the input dimension of a matrix); the reader reverses them, which is exactly
PyTorch's layout: a linear weight ``(out, in)``, ``token_embd.weight`` ``(vocab, hidden)``, stacked
experts ``ffn_gate_exps.weight`` ``(experts, ff, hidden)``, a conv kernel ``(out, in, k)``.

What ``load()`` returns, and ``dtype``:

- ``F32``, ``F16``, ``BF16``, ``F64``: the values as stored, in that dtype (as from safetensors);
- quantised types that ``gguf.quants.dequantize`` implements (``Q8_0``, ``Q4_0``, ``Q4_1``,
  ``Q5_0``, ``Q5_1``, ``Q2_K`` ... ``Q6_K``, ``IQ*``, ``TQ*``, ``MXFP4`` in gguf 0.19): dequantised
  to float32 by that function, so ``dtype`` is ``"float32"``. The spectra are those of the
  dequantised matrix, the weights the quantised model computes with; float32 holds them to its own
  rounding, so the analysis' stored-precision rules treat them as float32;
- integer types: as stored (not analysed, like any integer tensor).

``config`` is built from the header's metadata (``general.architecture`` as ``model_type``,
``{arch}.attention.head_count`` as ``num_attention_heads``, ``head_count_kv``, ``embedding_length``,
``expert_count`` ...), so the layer rules can split ``attn_qkv`` by head counts as they do with a
config.json.

``meta["quant_type"]`` is the GGUF type name (``"Q4_K"``, ``"F16"``) and ``meta["stored_dtype"]``
the same for quantised types (the dtype on disk otherwise). A tensor whose type the installed
``gguf`` does not know, or cannot dequantise, is still listed, with ``meta["skip"]`` giving the
reason; the rest of the file is read. A file truncated before the end of any tensor's data, or
with a corrupt header, is refused with one line.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectracli.errors import CheckpointError
from spectracli.io._common import bfloat16_to_float32, missing_extra, one_line
from spectracli.io.base import Checkpoint, TensorHandle

if TYPE_CHECKING:
    import torch

_AS_STORED = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
              "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64"}
_reader_cls: Any = None
_lock = threading.Lock()


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise missing_extra("gguf", "gguf", "GGUF files") from None
    return gguf


def _reader_class() -> Any:
    """``gguf.GGUFReader`` that lists tensors of unknown types instead of failing the file."""
    global _reader_cls
    with _lock:
        if _reader_cls is None:
            gguf = _gguf()

            class _Reader(gguf.GGUFReader):
                unknown: list[tuple[str, tuple[int, ...], int]]

                def _build_tensors(self, start_offs: int, fields: list) -> None:
                    known, self.unknown = [], []
                    size = len(self.data)
                    for field in fields:
                        _n, name_data, _nd, dims, raw_type, offset = field.parts
                        name = bytes(name_data).decode("utf-8", errors="replace")
                        shape = tuple(int(d) for d in reversed(dims.tolist()))
                        code = int(raw_type[0])
                        try:
                            qtype = gguf.GGMLQuantizationType(code)
                            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
                        except (ValueError, KeyError):
                            self.unknown.append((name, shape, code))
                            continue
                        n_elems = int(np.prod(dims, dtype=np.int64))
                        end = start_offs + int(offset[0]) + n_elems * type_size // block
                        if end > size:
                            raise _Truncated(
                                f"tensor '{name}' ends at byte {end}, past the end of the file "
                                f"({size} bytes)"
                            )
                        known.append(field)
                    super()._build_tensors(start_offs, known)

            _reader_cls = _Reader
    return _reader_cls


class _Truncated(ValueError):
    pass


class GgufCheckpoint(Checkpoint):
    """The tensors of one GGUF file as lazy handles (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = path
        self.format = "gguf"
        self.size_bytes = path.stat().st_size
        gguf = _gguf()
        self._gguf = gguf
        try:
            self._reader: Any = _reader_class()(str(path))
        except _Truncated as exc:
            raise CheckpointError(f"{path} is a truncated GGUF file: {exc}") from None
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - gguf raises many types on a damaged header
            raise CheckpointError(
                f"{path} is not a readable GGUF file (corrupt or truncated header): "
                f"{type(exc).__name__}: {one_line(exc)}"
            ) from None
        self.config = gguf_config(self._reader)
        self._unreadable: dict[str, str] = {}
        for t in self._reader.tensors:
            why = _cannot_dequantize(gguf, t)
            if why:
                self._unreadable[t.name] = why

    def handles(self) -> Iterator[TensorHandle]:
        """One lazy handle per tensor; types gguf cannot dequantise carry a skip reason."""
        if self._reader is None:
            raise CheckpointError(f"{self.path} is closed")
        version = getattr(self._gguf, "__version__", None) or _package_version()
        for index, t in enumerate(self._reader.tensors):
            qname = t.tensor_type.name
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            dtype = _AS_STORED.get(qname, "float32")
            meta: dict[str, Any] = {
                "quant_type": qname, "stored_dtype": _AS_STORED.get(qname, qname)
            }
            if t.name in self._unreadable:
                meta["skip"] = self._unreadable[t.name]
            yield TensorHandle(name=t.name, shape=shape, dtype=dtype,
                               loader=_Load(self, index), meta=meta,
                               numpy_loader=_LoadNumpy(self, index))
        for name, shape, code in self._reader.unknown:
            why = (f"GGUF tensor type {code} is unknown to the installed gguf {version}: "
                   "cannot dequantise (try a newer gguf)")
            yield TensorHandle(name=name, shape=shape, dtype="unknown",
                               loader=_Refuse(self.path, name, why),
                               meta={"quant_type": f"type {code}", "stored_dtype": f"type {code}",
                                     "skip": why})

    def _read(self, index: int) -> tuple[np.ndarray, bool]:
        """Tensor ``index`` as numpy in PyTorch's shape, and whether it holds bfloat16 bits."""
        if self._reader is None:
            raise CheckpointError(f"{self.path} is closed")
        t = self._reader.tensors[index]
        if t.name in self._unreadable:
            raise CheckpointError(f"{self.path}: tensor '{t.name}': {self._unreadable[t.name]}")
        qname = t.tensor_type.name
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        try:
            if qname == "BF16":  # stored as raw bytes by the reader
                raw = np.ascontiguousarray(t.data).view(np.uint16)
                return raw.copy().reshape(shape), True
            if qname in _AS_STORED:
                return np.array(t.data).reshape(shape), False
            values = self._gguf.quants.dequantize(t.data, t.tensor_type)
            return np.ascontiguousarray(values, dtype=np.float32).reshape(shape), False
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged block surfaces as any numpy error
            raise CheckpointError(
                f"cannot read tensor '{t.name}' ({qname}) from {self.path}: {one_line(exc)}"
            ) from None

    def load(self, index: int) -> torch.Tensor:
        """Tensor ``index``, dequantised to float32 (float types as stored; CheckpointError)."""
        import torch

        arr, bf16 = self._read(index)
        if bf16:
            return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(arr)

    def load_numpy(self, index: int) -> np.ndarray:
        """Tensor ``index`` as numpy, without torch (bfloat16 as exact float32; CheckpointError)."""
        arr, bf16 = self._read(index)
        return bfloat16_to_float32(arr) if bf16 else arr

    def close(self) -> None:
        """Drop the reader and its memory map."""
        self._reader = None


# GGUF metadata keys ("{arch}." prefix) -> the config.json names the layer rules read.
_CONFIG_KEYS = {
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "block_count": "num_hidden_layers",
    "expert_count": "num_experts",
    "expert_used_count": "num_experts_per_tok",
    "expert_feed_forward_length": "moe_intermediate_size",
    "vocab_size": "vocab_size",
}


def gguf_config(reader: Any) -> dict[str, Any] | None:
    """A config.json-like dict from a GGUF header: ``model_type`` and the sizes the rules use.

    GGUF keeps the model's hyper-parameters as ``{arch}.attention.head_count`` and the like; a
    per-layer array that holds one value counts as that value.

    Returns:
        The config dict, or None without an architecture.
    """
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        return None
    config: dict[str, Any] = {"model_type": arch}
    for key, name in _CONFIG_KEYS.items():
        value = _field(reader, f"{arch}.{key}")
        if isinstance(value, list) and value and all(v == value[0] for v in value):
            value = value[0]
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            config[name] = int(value)
    return config


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 - metadata only informs the layer rules
        return None


def _cannot_dequantize(gguf: Any, t: Any) -> str | None:
    """Why ``gguf`` cannot make floats of this tensor (tried on its first block); None if it can."""
    qname = t.tensor_type.name
    if qname in _AS_STORED:
        return None
    block, type_size = gguf.GGML_QUANT_SIZES[t.tensor_type]
    try:
        gguf.quants.dequantize(np.asarray(t.data).reshape(-1)[:type_size].reshape(1, type_size),
                               t.tensor_type)
    except NotImplementedError:
        return f"GGUF type {qname} cannot be dequantised by the installed gguf"
    except Exception as exc:  # noqa: BLE001 - any failure on one block: the tensor is unusable
        return f"GGUF type {qname} could not be dequantised: {one_line(exc)}"
    return None


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("gguf")
    except Exception:  # noqa: BLE001
        return "?"


class _Load:
    __slots__ = ("ckpt", "index")

    def __init__(self, ckpt: GgufCheckpoint, index: int):
        self.ckpt, self.index = ckpt, index

    def __call__(self) -> torch.Tensor:
        return self.ckpt.load(self.index)


class _LoadNumpy(_Load):
    __slots__ = ()

    def __call__(self) -> np.ndarray:  # type: ignore[override]
        return self.ckpt.load_numpy(self.index)


class _Refuse:
    __slots__ = ("path", "name", "why")

    def __init__(self, path: Path, name: str, why: str):
        self.path, self.name, self.why = path, name, why

    def __call__(self) -> torch.Tensor:
        raise CheckpointError(f"{self.path}: tensor '{self.name}': {self.why}")


def open_gguf(path: Path) -> Checkpoint:
    """The GGUF file at ``path`` (needs the ``gguf`` extra)."""
    return GgufCheckpoint(path)
