"""LoRA / PEFT adapters: a ``lora_A``/``lora_B`` pair is one update dW = s B A.

s = lora_alpha / r, or lora_alpha / sqrt(r) with ``use_rslora`` (Hu et al. 2021; Kalajdzievski
2023), read from the ``adapter_config.json`` beside the weights (``alpha_pattern`` overrides per
module, matched as PEFT does); r is the pair's stored rank. Without the file s = 1, with a
warning saying so.

- ``adapter.lora``: ``<module>.lora_A[.<adapter>].weight`` (r, in) and ``lora_B`` (out, r)
  (conv adapters: A (r, in, *k), B (out, r, 1...); embeddings: ``lora_embedding_A`` (r, rows),
  ``lora_embedding_B`` (dim, r)) -> ``<module>.delta_weight``: the r nonzero singular values of
  dW, exactly and without forming it: B = Q_B R_B, A^T = Q_A R_A (reduced QR), so
  s B A = Q_B (s R_B R_A^T) Q_A^T and the small core s R_B R_A^T has the same singular values.
  Its condition number is over those r values; FARMS does not apply (windows of the core are
  not windows of dW).
- ``adapter.lora_merged``: with a base checkpoint, the merged weight W + s B A (DoRA adapters,
  with ``lora_magnitude_vector`` m: m * (W + s B A) / ||W + s B A|| per output row), named and
  planned as the base weight (``model.layers.0.self_attn.q_proj.weight``). The base name is the
  module name without PEFT's ``base_model.model.`` prefix, + ``.weight`` (or
  ``.base_layer.weight``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spectracli.layers.context import Context
from spectracli.layers.kinds import weight_plan
from spectracli.layers.plan import (
    BASE_PREFIX,
    Info,
    MatrixPlan,
    Outcome,
    Recipe,
    Skip,
    TensorInfo,
    namespace,
)

if TYPE_CHECKING:
    from spectracli.layers.plan import Array

_LORA = re.compile(
    r"^(?P<module>.+)\.lora_(?P<emb>embedding_)?(?P<ab>A|B)(?:\.(?P<adapter>(?!weight$)[^.]+))?"
    r"(?P<weight>\.weight)?$"
)
_PEFT_PREFIX = "base_model.model."


def _factors(a: Array, b: Array, embedding: bool) -> tuple[Array, Array]:
    """(B (out, r), A (r, in)) in float64; an embedding's dW = (B A)^T, so the roles swap."""
    xp = namespace(a, b)
    r = a.shape[0]
    a2 = xp.reshape(xp.astype(a, xp.float64), (r, -1))
    b2 = xp.reshape(xp.astype(b, xp.float64), (b.shape[0], -1))
    if embedding:  # A (r, rows), B (dim, r): dW (rows, dim) = A^T B^T
        return a2.T, b2.T
    return b2, a2


@dataclass(frozen=True)
class LoraCore(Recipe):
    """The core s R_B R_A^T whose singular values are those of dW = s B A (see module doc)."""

    a: str
    b: str
    scale: float
    embedding: bool = False

    def __call__(self, tensors: Mapping[str, Array]) -> Array:
        """A small matrix with the singular values of ``scale * B A`` (QR R factors), float64."""
        left, right = _factors(tensors[self.a], tensors[self.b], self.embedding)
        xp = namespace(left)
        r_left = xp.linalg.qr(left).R  # left = Q R (reduced)
        r_right = xp.linalg.qr(right.T).R  # right^T = Q R
        return self.scale * (r_left @ r_right.T)


@dataclass(frozen=True)
class LoraMerged(Recipe):
    """W + s B A (and DoRA's m * V / ||V|| per output row), in float64, W's shape."""

    base: str
    a: str
    b: str
    scale: float
    embedding: bool = False
    magnitude: str | None = None

    def __call__(self, tensors: Mapping[str, Array]) -> Array:
        """The base weight with the adapter merged in (DoRA: rescaled by its magnitude)."""
        base = tensors[BASE_PREFIX + self.base]
        xp = namespace(base)
        w = xp.astype(base, xp.float64)
        left, right = _factors(tensors[self.a], tensors[self.b], self.embedding)
        merged = w + xp.reshape(self.scale * (left @ right), w.shape)
        if self.magnitude is not None:
            m = xp.reshape(xp.astype(tensors[self.magnitude], xp.float64), (-1,))
            rows = xp.reshape(merged, (merged.shape[0], -1))
            norm = xp.linalg.vector_norm(rows, axis=1)
            merged = merged * xp.reshape(m / norm, (-1, *([1] * (merged.ndim - 1))))
        return merged


def lora_scale(module: str, rank: int, adapter_config: Mapping[str, Any] | None) -> float | None:
    """s for a module's pair of rank ``rank``; None without an adapter_config.json."""
    if not adapter_config:
        return None
    alpha = adapter_config.get("lora_alpha", 8)
    for pattern, value in (adapter_config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            alpha = value
            break
    if adapter_config.get("use_rslora"):
        return float(alpha) / math.sqrt(rank)
    return float(alpha) / rank


def _pair(t: TensorInfo, ctx: Context) -> tuple[TensorInfo, TensorInfo, re.Match[str]] | None:
    m = _LORA.match(t.name)
    if m is None:
        return None
    other = "B" if m["ab"] == "A" else "A"
    emb = m["emb"] or ""
    tail = (f".{m['adapter']}" if m["adapter"] else "") + (m["weight"] or "")
    partner = ctx.tensors.get(f"{m['module']}.lora_{emb}{other}{tail}")
    if partner is None:
        return None
    a, b = (t, partner) if m["ab"] == "A" else (partner, t)
    if len(a.shape) < 2 or len(b.shape) < 2 or b.shape[1] != a.shape[0]:
        return None
    return a, b, m


def rule_lora(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``adapter.lora`` / ``adapter.lora_merged`` (see module doc)."""
    found = _pair(t, ctx)
    if found is None:
        return None
    a, b, m = found
    module = m["module"]
    embedding = bool(m["emb"])
    rank = a.shape[0]
    peft_module = module[len(_PEFT_PREFIX):] if module.startswith(_PEFT_PREFIX) else module
    scale = lora_scale(peft_module, rank, ctx.adapter_config)
    notes: tuple[str, ...] = ()
    if scale is None:
        scale = 1.0
        notes = ("no adapter_config.json beside the weights: scale lora_alpha / r unknown, "
                 "dW = B A (scale 1)",)
    magnitude = None
    for cand in (f"{module}.lora_magnitude_vector" + (f".{m['adapter']}" if m["adapter"] else ""),
                 f"{module}.lora_magnitude_vector.{m['adapter'] or 'default'}.weight",
                 f"{module}.lora_magnitude_vector.weight"):
        if cand in ctx.tensors:
            magnitude = cand
            break
    claims = (a.name, b.name) + ((magnitude,) if magnitude else ())
    if embedding:  # dW (rows, dim)
        dw_shape = (a.shape[1], b.shape[0])
    else:
        dw_shape = (b.shape[0], math.prod(a.shape[1:]))
    if ctx.base is not None:
        return _merged(t, ctx, module, peft_module, a, b, scale, embedding, magnitude, claims,
                       notes)
    if magnitude:
        notes += ("DoRA: the magnitude vector needs the base weight (give a base checkpoint); "
                  "analysed as the update s B A",)
    core = (min(dw_shape[0], rank), min(dw_shape[1], rank))
    plan = MatrixPlan(
        name=f"{module}.delta_weight", kind="embedding" if embedding else "linear",
        rule="adapter.lora", sources=(a.name, b.name), shape=dw_shape, dtype=a.dtype,
        matrix_shape=core, n_matrices=1, build=LoraCore(a.name, b.name, scale, embedding),
        notes=notes, farms=False, extent=dw_shape,
    )
    return Outcome(plans=[plan], claims=claims)


def _merged(t: TensorInfo, ctx: Context, module: str, peft_module: str, a: TensorInfo,
            b: TensorInfo, scale: float, embedding: bool, magnitude: str | None,
            claims: tuple[str, ...], notes: tuple[str, ...]) -> Outcome:
    assert ctx.base is not None
    names = [f"{peft_module}.weight", f"{peft_module}.base_layer.weight", f"{module}.weight",
             f"{module}.base_layer.weight"]
    base_name = next((n for n in names if n in ctx.base), None)
    if base_name is None:
        return Outcome(skips=[Skip(f"{module}.delta_weight", tuple(t.shape),
                                   f"no base weight {names[0]} in the base checkpoint",
                                   "adapter.lora_merged")], claims=claims)
    shape = tuple(ctx.base[base_name])
    plan = weight_plan(
        base_name, shape, a.dtype, ctx, rule="adapter.lora_merged",
        kind_from=Info(base_name, shape, meta={"kind": "embedding"} if embedding else {}),
        sources=claims,
        build=LoraMerged(base_name, a.name, b.name, scale, embedding, magnitude),
        base_sources=(base_name,), notes=notes,
    )
    return Outcome(plans=[plan], claims=claims)
