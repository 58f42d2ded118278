"""ONNX models through the ``onnx`` package: initializers as lazy handles, kinds from the graph.

The model is parsed with ``onnx.load(path, load_external_data=False)``: the graph and the
initializers' headers (name, dims, type) are read, external data files are not. Every external
reference is checked at open (file present beside the model, inside its directory, long enough),
so a model with missing data fails before any tensor is analysed. ``load()`` reads one tensor
(a copy of its ``TensorProto`` filled from its external file, then ``numpy_helper.to_array``) and
keeps nothing.

The op that consumes an initializer decides what it is and its layout (handles are in PyTorch's
layout, ``meta["kind"]`` set):

- ``MatMul`` input B, stored (in, out): ``linear``, presented transposed as (out, in);
- ``Gemm`` input B: ``linear``; stored (out, in) with ``transB=1``, else (in, out) and transposed;
- ``Conv`` / ``ConvTranspose`` input W: ``conv``, stored as torch stores it (a ``ConvTranspose``
  kernel is (in, out / groups, *k): ``meta["conv_transposed"]``, read as (out, in, *k));
- ``Gather`` input data: ``embedding``, (vocab, dim) as stored;
- through ``Identity``, ``Cast`` and a 2-D ``Transpose`` (which flips the stored layout).

Quantised weights: ``DequantizeLinear(x, scale, zero_point)`` with constant inputs is applied on
load, ``(x - zero_point) * scale`` in float32 per tensor, per axis or per block (``axis``,
``block_size``), the handle named after ``x`` with ``meta["quant_type"]`` (e.g. ``"int8"``) and
``dtype`` ``"float32"``; the scale and zero point are consumed. The weights of ``QLinearMatMul``,
``QLinearConv``, ``QGemm``, ``DynamicQuantizeMatMul``, ``MatMulIntegerToFloat`` are dequantised the
same way from their own scale and zero point inputs, and ``MatMulInteger`` weights (onnxruntime's
``quantize_dynamic``) with the ``W_scale`` initializer that names them (``W_quantized``); without
a constant scale the integer weight is listed as stored (and not analysed).
Initializers consumed by nothing above (biases, norms, shapes) are yielded as stored.

Names: an initializer the exporter named itself (``onnx::MatMul_8``: torch.onnx's name for the
transposed weight of a bias-less ``nn.Linear``) is named after the node that uses it as a weight,
``/encoder/fc1/MatMul`` -> ``encoder.fc1.weight`` (the stored name is kept as an alias), unless
that name is taken or the node has no name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectracli.errors import CheckpointError
from spectracli.io._common import (
    bfloat16_to_float32,
    contained_file,
    missing_extra,
    one_line,
    tensor_dtype_name,
)
from spectracli.io.base import Checkpoint, TensorHandle

if TYPE_CHECKING:
    import torch

_PASS_THROUGH = ("Identity", "Cast")
# Quantised weight ops: (weight input, scale input or -1, zero point input, kind). A linear weight
# B is stored (in, out) (per-channel scales along its axis 1) unless QGemm's transB says (out, in).
_DEQUANT_INPUTS = {
    "QLinearMatMul": (3, 4, 5, "linear"),
    "QLinearConv": (3, 4, 5, "conv"),
    "QGemm": (3, 4, 5, "linear"),  # com.microsoft
    "MatMulInteger": (1, -1, 3, "linear"),  # scale: the weight's "<name>_scale" initializer
    "DynamicQuantizeMatMul": (1, 2, 3, "linear"),  # com.microsoft
    "MatMulIntegerToFloat": (1, 3, 5, "linear"),  # com.microsoft
}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise missing_extra("onnx", "onnx", "ONNX models") from None
    return onnx


@dataclass
class _Plan:
    """How one initializer is presented: kind, transposition, dequantisation."""

    kind: str | None = None
    transpose: bool = False
    scale: str | None = None  # initializer names of a dequantisation
    zero_point: str | None = None
    axis: int = 1
    block_size: int = 0
    consumed: list[str] = field(default_factory=list)
    node: str | None = None  # the name (or first output) of the node using it as a weight


class OnnxCheckpoint(Checkpoint):
    """The initializers of one ONNX model as lazy handles (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = path
        self.format = "onnx"
        onnx = _onnx()
        self._onnx = onnx
        self._base_dir = path.parent
        try:
            model = onnx.load(str(path), load_external_data=False)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
            raise CheckpointError(
                f"{path} is not a readable ONNX model: {type(exc).__name__}: {one_line(exc)}"
            ) from None
        graph = model.graph
        self._init: dict[str, Any] = {t.name: t for t in graph.initializer}
        for node in graph.node:  # weights some exporters keep in Constant nodes
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value" and attr.HasField("t"):
                        self._init.setdefault(node.output[0], attr.t)
        if not self._init:
            raise CheckpointError(f"{path} is an ONNX model without initializers: no weights")
        self._plans = _plan_graph(graph, self._init)
        external = 0
        self._external: dict[str, Path] = {}  # tensor -> its checked data file, resolved
        for tensor in self._init.values():
            external += self._check_external(tensor)
        self.size_bytes = path.stat().st_size + external

    def _check_external(self, tensor: Any) -> int:
        if tensor.data_location != self._onnx.TensorProto.EXTERNAL:
            return 0
        info = self._onnx.external_data_helper.ExternalDataInfo(tensor)
        location = info.location
        target = contained_file(self._base_dir, location, self.path,
                                f"tensor {tensor.name!r}'s external data location")
        if not target.is_file():
            raise CheckpointError(
                f"{self.path}: tensor '{tensor.name}' needs external data file '{location}', "
                f"missing from {self._base_dir}{os.sep}"
            )
        size = target.stat().st_size
        offset = int(info.offset or 0)
        length = int(info.length) if info.length else size - offset
        if offset + length > size:
            raise CheckpointError(
                f"{self.path}: tensor '{tensor.name}' needs bytes [{offset}, {offset + length}) "
                f"of '{location}', which holds {size} (truncated)"
            )
        self._external[tensor.name] = target.resolve()
        return length

    def handles(self) -> Iterator[TensorHandle]:
        """One lazy handle per initializer, except the scales and zero points a plan consumes."""
        consumed = {c for p in self._plans.values() for c in p.consumed}
        shown = _display_names(self._init, self._plans)
        for name, tensor in self._init.items():
            if name in consumed:
                continue
            plan = self._plans.get(name, _Plan())
            shape = tuple(int(d) for d in tensor.dims)
            stored = _dtype_name(self._onnx, tensor.data_type)
            meta: dict[str, Any] = {"stored_dtype": stored}
            if plan.kind == "conv_transposed":  # ConvTranspose W is (in, out / groups, *k)
                meta["kind"], meta["conv_transposed"] = "conv", True
            elif plan.kind:
                meta["kind"] = plan.kind
            dtype = stored
            if plan.scale is not None:
                dtype = "float32"
                meta["quant_type"] = stored
            if plan.transpose and len(shape) == 2:
                shape = (shape[1], shape[0])
                meta["transposed"] = True
            display = shown.get(name, name)
            yield TensorHandle(name=display, shape=shape, dtype=dtype, loader=_Load(self, name),
                               aliases=[name] if display != name else [], meta=meta,
                               numpy_loader=_LoadNumpy(self, name))

    def _array(self, name: str) -> np.ndarray:
        proto = self._init[name]
        base_dir = self._base_dir
        if proto.data_location == self._onnx.TensorProto.EXTERNAL:
            copy = self._onnx.TensorProto()
            copy.CopyFrom(proto)  # filling the copy keeps the model proto free of data
            proto = copy
            # Read from the file checked in __init__, named by its resolved path: onnx (>= 1.17)
            # refuses every symlink, and a Hugging Face cache snapshot is made of symlinks.
            target = self._external[name]
            base_dir = target.parent
            for entry in proto.external_data:
                if entry.key == "location":
                    entry.value = target.name
        try:
            return self._onnx.numpy_helper.to_array(proto, base_dir=str(base_dir))
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - onnx raises many types on bad data
            raise CheckpointError(
                f"cannot read tensor '{name}' from {self.path}: {one_line(exc)}"
            ) from None

    def _read(self, name: str) -> tuple[np.ndarray, bool]:
        """Initializer ``name`` dequantised (numpy), and whether it is a plain bfloat16 one."""
        plan = self._plans.get(name, _Plan())
        arr = self._array(name)
        if plan.scale is not None:
            return _dequantize(arr, self._array(plan.scale),
                               self._array(plan.zero_point) if plan.zero_point else None,
                               plan.axis, plan.block_size), False
        return arr, arr.dtype.name == "bfloat16"  # ml_dtypes' bfloat16: same bits as torch's

    def load(self, name: str) -> torch.Tensor:
        """Initializer ``name`` as ``W`` (dequantised and transposed as its plan says)."""
        import torch

        arr, bf16 = self._read(name)
        if bf16:
            t = torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
        else:
            arr = np.ascontiguousarray(arr)
            t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if self._plans.get(name, _Plan()).transpose and t.dim() == 2:
            t = t.t().contiguous()
        return t

    def load_numpy(self, name: str) -> np.ndarray:
        """Initializer ``name`` as ``W`` in numpy, without torch (bfloat16 as exact float32)."""
        arr, bf16 = self._read(name)
        if bf16:
            arr = bfloat16_to_float32(arr.view(np.uint16))
        if self._plans.get(name, _Plan()).transpose and arr.ndim == 2:
            arr = arr.T
        return np.ascontiguousarray(arr)

def _display_names(inits: dict[str, Any], plans: dict[str, _Plan]) -> dict[str, str]:
    """Names for exporter-named weights (``onnx::MatMul_8``) from the node that uses them.

    Returns:
        ``{initializer name: display name}`` for those renamed (module doc).
    """
    out: dict[str, str] = {}
    taken = set(inits)
    for name, plan in plans.items():
        if not name.startswith("onnx::") or not plan.node:
            continue
        parts = [p for p in plan.node.replace("/", ".").split(".") if p]
        if len(parts) < 2:
            continue
        display = ".".join([*parts[:-1], "weight"])
        if display not in taken:
            out[name] = display
            taken.add(display)
    return out


def _dtype_name(onnx: Any, data_type: int) -> str:
    if data_type == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        name = tensor_dtype_name(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)))
    except Exception:  # noqa: BLE001 - types numpy has no dtype for
        name = None
    # types torch has no dtype for (strings, 4-bit, fp8 ...): ONNX's own name
    return name or onnx.TensorProto.DataType.Name(data_type).lower()


def _dequantize(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block_size: int
) -> np.ndarray:
    """ONNX ``DequantizeLinear``: ``(x - zero_point) * scale`` (per tensor, axis or block)."""
    xf = x.astype(np.float32)
    s = scale.astype(np.float32)
    z = zero_point.astype(np.float32) if zero_point is not None else np.zeros_like(s)
    if s.ndim == 0 or s.size == 1:
        return (xf - z.reshape(())) * s.reshape(())
    axis = axis % x.ndim
    if block_size and s.ndim == x.ndim:  # blocked: repeat each scale along the axis
        s = np.repeat(s, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
        z = np.repeat(z, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
        return (xf - z) * s
    shape = [1] * x.ndim
    shape[axis] = -1
    return (xf - z.reshape(shape)) * s.reshape(shape)


def _attr(node: Any, key: str, default: int) -> int:
    """The integer attribute ``key`` of an ONNX node, or ``default``."""
    for a in node.attribute:
        if a.name == key:
            return int(a.i)
    return default


def _plan_graph(graph: Any, inits: dict[str, Any]) -> dict[str, _Plan]:
    """Kind, layout and dequantisation of each initializer, from the ops that consume it.

    Returns:
        ``{initializer name: plan}`` for the initializers used as weights or quantised.
    """
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    plans: dict[str, _Plan] = {}
    for name in inits:
        plan = _plan_of(name, inits, consumers)
        _keep_constant_scales(plan, inits)
        if plan.kind or plan.scale:
            plans[name] = plan
    return plans


def _plan_of(name: str, inits: dict[str, Any],
             consumers: dict[str, list[tuple[Any, int]]]) -> _Plan:
    """The plan of initializer ``name``: dequantised by its first quantised consumer, if any.

    Returns:
        A ``DequantizeLinear`` or quantised-op plan (scale, zero point, axis), else the plain
        kind and layout of its first weight use.
    """
    for node, i in consumers.get(name, []):
        if node.op_type == "DequantizeLinear" and i == 0:
            plan = _Plan(scale=_input(node, 1), zero_point=_input(node, 2),
                         axis=_attr(node, "axis", 1), block_size=_attr(node, "block_size", 0))
            plan.kind, plan.transpose, plan.node = (_follow(consumers, node.output[0])
                                                    or (None, False, None))
            return plan
        if node.op_type in _DEQUANT_INPUTS and i == _DEQUANT_INPUTS[node.op_type][0]:
            _w, s, z, kind = _DEQUANT_INPUTS[node.op_type]
            scale = _input(node, s) if s >= 0 else _scale_by_name(name, inits)
            per_channel = scale in inits and _numel(inits[scale]) > 1
            transpose = kind == "linear" and not (
                node.op_type == "QGemm" and _attr(node, "transB", 0)
            )
            axis = (1 if transpose else 0) if per_channel else 0
            return _Plan(kind=kind, transpose=transpose, scale=scale,
                         zero_point=_input(node, z), axis=axis, node=_node_label(node))
    plan = _Plan()
    plan.kind, plan.transpose, plan.node = _follow(consumers, name) or (None, False, None)
    return plan


def _node_label(node: Any) -> str | None:
    """A node's name, else its first output (what a weight it uses can be named after)."""
    return node.name or (node.output[0] if node.output else None) or None


def _follow(consumers: dict[str, list[tuple[Any, int]]], value: str, flipped: bool = False,
            depth: int = 0) -> tuple[str, bool, str | None] | None:
    """(kind, transpose, node) from the first op using ``value`` as a weight.

    ``flipped``: the value is the transpose of the stored initializer (a ``Transpose`` on the
    way); ``Identity``/``Cast``/``Transpose`` are followed up to 8 deep.

    Returns:
        The kind, whether the stored tensor is the transpose of ``W``, and the using node's
        label (:func:`_node_label`); None when nothing uses it as a weight.
    """
    for node, i in consumers.get(value, []):
        op = node.op_type
        if op in _PASS_THROUGH and i == 0 and depth < 8:
            found = _follow(consumers, node.output[0], flipped, depth + 1)
        elif op == "Transpose" and i == 0 and depth < 8:
            perm = [int(p) for a in node.attribute if a.name == "perm" for p in a.ints]
            found = (_follow(consumers, node.output[0], not flipped, depth + 1)
                     if perm in ([], [1, 0]) else None)
        else:
            use = _weight_use(node, i, flipped)
            found = (*use, _node_label(node)) if use else None
        if found:
            return found
    return None


def _weight_use(node: Any, i: int, flipped: bool) -> tuple[str, bool] | None:
    """(kind, transpose) when input ``i`` of ``node`` is a weight of a MatMul, Gemm, conv or Gather.

    Returns:
        The kind and layout, or None for any other use.
    """
    op = node.op_type
    if op == "MatMul" and i == 1:  # B is (in, out): W = B^T
        return "linear", not flipped
    if op == "Gemm" and i == 1:  # op(B) is (in, out): W = B if transB else B^T
        return "linear", flipped != (_attr(node, "transB", 0) == 0)
    if op == "Conv" and i == 1:
        return "conv", False
    if op == "ConvTranspose" and i == 1:
        return "conv_transposed", False
    if op == "Gather" and i == 0:
        return "embedding", flipped
    return None


def _keep_constant_scales(plan: _Plan, inits: dict[str, Any]) -> None:
    """Drop a scale or zero point that is computed (not an initializer); list the ones kept."""
    if plan.scale is not None and plan.scale not in inits:
        plan.scale = plan.zero_point = None  # computed scales: not a constant weight
    elif plan.scale is not None:
        if plan.zero_point is not None and plan.zero_point not in inits:
            plan.zero_point = None
        plan.consumed = [n for n in (plan.scale, plan.zero_point) if n]


def _scale_by_name(weight: str, inits: dict[str, Any]) -> str | None:
    """onnxruntime's quantize_dynamic names a weight ``W_quantized``, its scale ``W_scale``."""
    base = weight.removesuffix("_quantized")
    return base + "_scale" if base + "_scale" in inits else None


def _numel(tensor: Any) -> int:
    n = 1
    for d in tensor.dims:
        n *= int(d)
    return n


def _input(node: Any, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


class _Load:
    __slots__ = ("ckpt", "name")

    def __init__(self, ckpt: OnnxCheckpoint, name: str):
        self.ckpt, self.name = ckpt, name

    def __call__(self) -> torch.Tensor:
        return self.ckpt.load(self.name)


class _LoadNumpy(_Load):
    __slots__ = ()

    def __call__(self) -> np.ndarray:  # type: ignore[override]
        return self.ckpt.load_numpy(self.name)


def open_onnx(path: Path) -> Checkpoint:
    """The ONNX model at ``path`` (needs the ``onnx`` extra)."""
    return OnnxCheckpoint(path)
