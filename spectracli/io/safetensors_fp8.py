"""Block-scaled fp8 safetensors (DeepSeek-V3 style), dequantised on load.

An fp8 ``X.weight`` beside a float ``X.weight_scale_inv`` of shape (ceil(out/b0), ceil(in/b1)) is
served as one float32 tensor, ``W = fp8(W) * scale_inv`` per block; the scale tensor is consumed.
The block size is read from ``config.json`` (``quantization_config.weight_block_size``) beside the
file (:mod:`~spectracli.io.safetensors_config`), else inferred from the shapes (128 x 128 when
consistent). An fp8 weight without a usable scale keeps its fp8 dtype and is never cast
silently. Dequantisation runs in torch (numpy has no fp8 types).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spectracli.io.safetensors_config import config_block

if TYPE_CHECKING:
    import torch

FP8_DTYPES = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
SCALE_SUFFIX = ".weight_scale_inv"


class _Dequant:
    __slots__ = ("file", "name", "scale_file", "scale_name", "block")

    def __init__(
        self,
        file: Any,
        name: str,
        scale_file: Any,
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
    import torch

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


def fp8_scales(
    owner: dict[str, Any], config_dir: Path
) -> dict[str, tuple[str, tuple[int, int] | None]]:
    """``{weight_name: (scale_name, block)}`` for fp8 weights whose scale fits their shape."""
    found: dict[str, tuple[str, tuple[int, int] | None]] = {}
    block_from_config = config_block(config_dir)
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
        block = _block_for(w.shape, s.shape, block_from_config)
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
