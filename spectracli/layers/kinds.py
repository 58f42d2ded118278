"""What a plain tensor is, from evidence: dtype, shape, its siblings, config.json, format meta.

Rules (in the order the planner tries them):

- ``skip.non_float``: integer, bool and unscaled fp8 tensors are not weights to analyse.
- ``skip.scalar`` / ``skip.vector``: 0-D and 1-D tensors (biases, norm scales, buffers).
- ``skip.bias``: a 2-D tensor named ``bias`` or ``*_bias``: biases stacked (one per expert).
- ``skip.norm_scale``: a (1, N) or (N, 1) tensor is a vector stored 2-D; beside a norm (name or
  a same-size sibling) it is a norm scale. A linear layer with one output (a bias beside it, or
  a name that says linear) is left to ``kind.matrix`` (and skipped by ``min_size``).
- ``kind.squeeze``: a table stored with leading singleton axes, e.g. ViT's ``pos_embed``
  (1, 197, 768), is the matrix without them.
- ``kind.matrix``: a 2-D tensor is a linear map (out, in) or an embedding table (rows, dim).
  Evidence, strongest first: the format's ``meta["kind"]`` (ONNX knows the consuming op); a
  ``.bias`` sibling (a linear layer; embeddings have none); GGUF names (``token_embd``,
  ``position_embd``, ``token_types`` are tables; ``output``, ``blk.N.attn_q`` are maps); a
  module name that says linear (``proj``, ``dense``, ``head``, ``out`` ...) or embedding
  (``embed``, ``emb``, ``wte``, ``wpe``, ``pos`` ...); rows equal to config.json's
  ``vocab_size``, ``max_position_embeddings`` or ``type_vocab_size`` (columns equal to the hidden
  size when the config gives it). Otherwise: linear.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spectracli.dtypes import FLOAT_DTYPES
from spectracli.layers.context import Context, join, split_name
from spectracli.layers.conv import conv_plan
from spectracli.layers.plan import (
    Cut,
    MatrixPlan,
    Outcome,
    Recipe,
    Skip,
    TensorInfo,
    namespace,
)

if TYPE_CHECKING:
    from spectracli.layers.plan import Array

_LINEAR_TOKENS = {
    "proj", "projection", "linear", "dense", "fc", "fc1", "fc2", "lin", "mapping", "head",
    "heads", "out", "output", "query", "key", "value", "gate", "up", "down", "classifier",
    "lm", "decoder", "q", "k", "v", "o", "w1", "w2", "w3", "mlp", "ffn", "attn",
    "score", "pooler", "router", "logits", "transform",
}
_EMBEDDING_TOKENS = {
    "embed", "embeds", "embedding", "embeddings", "emb", "embd", "wte", "wpe", "shared", "pos",
    "positional", "position", "positions", "lookup",
}
_NORM_TOKENS = {
    "norm", "ln", "layernorm", "layer_norm", "rmsnorm", "bn", "batchnorm", "gamma", "beta",
    "scale", "g", "ln1", "ln2", "ln_1", "ln_2", "ln_f", "norm1", "norm2",
}
_WRAPPERS = {"base_layer", "original_module", "modules_to_save", "default"}
_GGUF_TABLES = {"token_embd", "position_embd", "token_types"}
_TOKEN_SPLIT = re.compile(r"[._]|(?<=[a-z])(?=[A-Z])")
_DIGITS = re.compile(r"\d+$")


def module_tokens(name: str) -> set[str]:
    """Lower-case word tokens of the module (or parameter) a tensor belongs to.

    ``a.word_embeddings.weight`` -> {word, embeddings}; ``x.pos_embed`` -> {pos, embed};
    trailing layer numbers are dropped (``fc1`` stays, ``layer3`` -> layer).

    Returns:
        The tokens, with each one's digit-free form added.
    """
    prefix, leaf = split_name(name)
    if leaf in ("weight", "bias"):
        # wrappers (PEFT's base_layer, modules_to_save.<adapter>) name no module of their own
        while prefix and split_name(prefix)[1] in _WRAPPERS:
            prefix = split_name(prefix)[0]
    module = split_name(prefix)[1] if leaf in ("weight", "bias") and prefix else leaf
    tokens = {tok.lower() for tok in _TOKEN_SPLIT.split(module) if tok}
    return tokens | {_DIGITS.sub("", tok) for tok in tokens if tok not in ("fc1", "fc2")}


def has_bias(t: TensorInfo, ctx: Context) -> bool:
    """A ``bias`` next to this weight (``fc.weight`` + ``fc.bias``, ``x_weight`` + ``x_bias``)."""
    prefix, leaf = split_name(t.name)
    if leaf == "weight":
        return ctx.sibling(t.name, "bias") is not None
    if leaf.endswith("weight"):
        return join(prefix, leaf[: -len("weight")] + "bias") in ctx.tensors
    return False


def matrix_kind(t: TensorInfo, ctx: Context) -> str:
    """``linear`` or ``embedding`` for a 2-D tensor, from the evidence listed in the module doc."""
    meta_kind = (t.meta or {}).get("kind")
    if meta_kind in ("linear", "embedding"):
        return str(meta_kind)
    if has_bias(t, ctx):
        return "linear"
    by_name = _kind_by_name(t.name)
    if by_name is not None:
        return by_name
    rows, cols = t.shape
    table_rows = {
        ctx.config_int(t.name, key)
        for key in ("vocab_size", "n_vocab", "padded_vocab_size", "max_position_embeddings",
                    "n_positions", "type_vocab_size")
    } - {None}
    hidden = ctx.hidden_size(t.name)
    if rows in table_rows and (hidden is None or cols == hidden):
        return "embedding"
    return "linear"


def _kind_by_name(name: str) -> str | None:
    """``linear`` or ``embedding`` from the tensor's name (GGUF tables, module tokens), if any.

    Returns:
        The kind the name says, or None when it says neither.
    """
    prefix, leaf = split_name(name)
    gguf = split_name(prefix)[1] if leaf == "weight" else leaf
    if gguf in _GGUF_TABLES:
        return "embedding"
    tokens = module_tokens(name)
    if tokens & _LINEAR_TOKENS:
        return "linear"
    if tokens & _EMBEDDING_TOKENS or (tokens & {"tokens"} and tokens & {"tok", "embed"}):
        return "embedding"
    return None


def weight_plan(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    ctx: Context,
    *,
    rule: str,
    kind_from: TensorInfo | None = None,
    sources: tuple[str, ...] | None = None,
    build: Recipe | None = None,
    **extra: object,
) -> MatrixPlan:
    """The plan of a whole weight: 2-D as a linear map or table, N-D as a conv kernel."""
    if len(shape) == 2:
        info = kind_from if kind_from is not None else _Shape(name, shape, dtype)
        return MatrixPlan(
            name=name, kind=matrix_kind(info, ctx), rule=rule, sources=sources or (name,),
            shape=shape, dtype=dtype, matrix_shape=(shape[0], shape[1]), n_matrices=1,
            build=build or Cut(name), **extra,  # type: ignore[arg-type]
        )
    return conv_plan(name, shape, dtype, ctx, rule=rule, sources=sources, build=build, **extra)


class _Shape:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        self.name, self.shape, self.dtype, self.meta = name, shape, dtype, {}


def rule_non_float(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``skip.non_float``."""
    if t.dtype in FLOAT_DTYPES:
        return None
    return Outcome(skips=[Skip(t.name, tuple(t.shape), f"non-float dtype {t.dtype}",
                               "skip.non_float")])


def rule_scalar_vector(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``skip.scalar`` / ``skip.vector``."""
    if len(t.shape) == 0:
        return Outcome(skips=[Skip(t.name, (), "scalar", "skip.scalar")])
    if len(t.shape) == 1:
        return Outcome(skips=[Skip(t.name, tuple(t.shape), "1-D tensor (bias, norm scale or "
                                   "buffer)", "skip.vector")])
    return None


def rule_bias(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``skip.bias``: a 2-D+ tensor named ``bias`` / ``*_bias`` (per-expert biases [E, out])."""
    leaf = split_name(t.name)[1]
    if len(t.shape) < 2 or not (leaf == "bias" or leaf.endswith("_bias")):
        return None
    shape = "x".join(map(str, t.shape))
    return Outcome(skips=[Skip(t.name, tuple(t.shape), f"{shape} stack of bias vectors (e.g. "
                               "one per expert), not a linear map", "skip.bias")])


def rule_norm_scale(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``skip.norm_scale``: (1, N) / (N, 1)."""
    if len(t.shape) != 2 or 1 not in t.shape:
        return None
    if has_bias(t, ctx) or module_tokens(t.name) & _LINEAR_TOKENS:
        return None  # a linear map with one output (a regression head): min_size says why
    n = max(t.shape)
    tokens = {tok.lower() for tok in _TOKEN_SPLIT.split(t.name) if tok}
    beside = any(
        other.name != t.name and tuple(other.shape) in ((n,), tuple(t.shape))
        and module_tokens(other.name) & _NORM_TOKENS
        for other in (ctx.sibling(t.name, "bias"), ctx.sibling(t.name, "beta"))
        if other is not None
    )
    shape = "x".join(map(str, t.shape))
    if tokens & _NORM_TOKENS or beside:
        reason = f"norm scale stored as {shape} (a vector, not a matrix)"
    else:
        reason = f"vector stored as {shape} (a bias, scale or buffer, not a matrix)"
    return Outcome(skips=[Skip(t.name, tuple(t.shape), reason, "skip.norm_scale")])


def rule_squeeze(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``kind.squeeze``: (1, ..., 1, N, D) named as a table (pos_embed, cls_token ...)."""
    if len(t.shape) < 3 or t.shape[0] != 1 or (t.meta or {}).get("kind") == "conv":
        return None
    tokens = module_tokens(t.name)
    if not tokens & (_EMBEDDING_TOKENS | {"token", "tokens", "cls", "latents", "query"}):
        return None
    kept = tuple(d for i, d in enumerate(t.shape) if d != 1 or i == len(t.shape) - 1)
    if len(kept) != 2:
        return Outcome(skips=[Skip(t.name, tuple(t.shape),
                                   f"{len(t.shape)}-D table with singleton axes: a vector",
                                   "kind.squeeze")])
    shape2 = (kept[0], kept[1])
    return Outcome(plans=[MatrixPlan(
        name=t.name, kind="embedding",
        rule="kind.squeeze", sources=(t.name,), shape=tuple(t.shape), dtype=t.dtype,
        matrix_shape=shape2, n_matrices=1, build=Reshape(t.name, shape2),
    )])


def rule_matrix(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``kind.matrix``: a 2-D tensor as a linear map or an embedding table."""
    if len(t.shape) != 2:
        return None
    # a reader that presents a stored (in, out) matrix as (out, in) says so (ONNX MatMul)
    transposed = bool((t.meta or {}).get("transposed"))
    return Outcome(plans=[weight_plan(t.name, tuple(t.shape), t.dtype, ctx, rule="kind.matrix",
                                      kind_from=t, transposed=transposed)])


def rule_other(t: TensorInfo, ctx: Context) -> Outcome:
    """The last rule: what no rule reads is skipped, saying what it is."""
    return Outcome(skips=[Skip(
        t.name, tuple(t.shape),
        f"{len(t.shape)}-D tensor that is neither a matrix, a conv kernel nor stacked experts "
        f"({math.prod(t.shape)} values)", "skip.other",
    )])


@dataclass(frozen=True)
class Reshape(Recipe):
    """One stored tensor reshaped (singleton axes dropped)."""

    source: str
    shape: tuple[int, int]

    def __call__(self, tensors: Mapping[str, Array]) -> Array:
        """The source tensor with this recipe's 2-D shape (numpy array or torch tensor)."""
        t = tensors[self.source]
        return namespace(t).reshape(t, self.shape)
