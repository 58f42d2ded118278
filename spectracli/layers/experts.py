"""Stacked mixture-of-experts weights: one matrix per expert, pooled per tensor for the table.

- ``experts.stacked``: a 3-D tensor [E, a, b] whose name says experts (``...experts.down_proj``
  in Qwen/DeepSeek/gpt-oss/Llama-4 style checkpoints; GGUF ``ffn_gate_exps``, ``ffn_up_exps``,
  ``ffn_down_exps``): E matrices (a, b), named ``<tensor>[7]``.
- ``experts.gate_up``: a stacked fused ``gate_up_proj`` [E, 2I, H] or [E, H, 2I]: per expert
  ``[7.gate]`` and ``[7.up]``, split along the 2I axis (found from the down projection beside it
  or config.json's intermediate size); gpt-oss (``model_type`` gpt_oss) interleaves gate and up
  columns (gate = [..., ::2], up = [..., 1::2]); a [E, H, 2I] tensor is stored (in, out), and its
  parts and the down projection beside it are analysed transposed.
- ``experts.rows``: a 2-D tensor named ``experts`` whose rows are E blocks of the config's
  expert width I (DBRX ``w1``/``v1``/``w2`` (E * I, H), ``ffn_config.moe_num_experts`` and
  ``ffn_hidden_size``): ``[7]`` = rows [7I, 8I).

A name with an index after ``experts`` (``experts.3.w1.weight``) is one expert already and a
``shared_experts`` MLP is no stack: both are read as ordinary matrices.

Every per-expert result carries ``group`` = the tensor name; the report pools each group
(worst condition number, mean alpha) in ``groups``.
"""

from __future__ import annotations

import re

from spectracli.layers.context import Context, join, split_name
from spectracli.layers.fused import blocks, gate_up_dim, part_plans
from spectracli.layers.plan import Cut, Outcome, TensorInfo

_GGUF_EXPS = re.compile(r"(^|\.)ffn_(gate|up|down|gate_up)_exps(\.|$)")
# ``.experts.`` as a whole component, not followed by an expert index (``experts.3.w1`` is one
# expert already) and not ``shared_experts`` (an ordinary MLP beside the routed experts).
_EXPERTS = re.compile(r"(^|\.)experts(\.(?!\d+(\.|$))|$)")


def is_experts(name: str) -> bool:
    """Whether ``name`` is a stack of routed experts (``.experts.`` unindexed, GGUF ``*_exps``)."""
    return bool(_EXPERTS.search(name) or _GGUF_EXPS.search(name))


def _is_gate_up(name: str) -> bool:
    leaf = split_name(name)[1]
    module = split_name(split_name(name)[0])[1] if leaf == "weight" else leaf
    return "gate_up" in module


def expert_count(name: str, ctx: Context) -> int | None:
    """The number of routed experts the config declares for ``name``, or None when unknown."""
    count = ctx.config_int(name, "num_experts", "num_local_experts", "n_routed_experts",
                           "moe_num_experts")
    ffn = ctx.config.get("ffn_config")
    if count is None and isinstance(ffn, dict):  # DBRX
        count = ffn.get("moe_num_experts") if isinstance(ffn.get("moe_num_experts"), int) else None
    return count


def _down_sibling(t: TensorInfo, ctx: Context) -> TensorInfo | None:
    prefix, leaf = split_name(t.name)
    for other in (join(prefix, leaf.replace("gate_up", "down")),
                  join(split_name(prefix)[0], split_name(prefix)[1].replace("gate_up", "down"))
                  + ("." + leaf if leaf == "weight" else "")):
        found = ctx.tensors.get(other)
        if found is not None and other != t.name and len(found.shape) == 3:
            return found
    return None


# Models whose stacked experts are stored (in, out): gate_up [E, H, 2I], down [E, I, H].
_IN_OUT_MODEL_TYPES = {"gpt_oss", "llama4", "llama4_text"}


def gate_up_axis(t: TensorInfo, ctx: Context) -> int | None:
    """The axis (0 or 1 of each expert's matrix) that holds [gate | up]."""
    a, b = t.shape[1], t.shape[2]
    down = _down_sibling(t, ctx)
    if down is not None:
        p, q = down.shape[1], down.shape[2]
        dims = [dim for dim, (two_i, hidden) in enumerate(((a, b), (b, a)))
                if (hidden, two_i) in ((p, 2 * q), (q, 2 * p))]
        if len(dims) == 2:  # H = 2I: both axes fit; the model type tells the layout
            return 1 if ctx.model_type in _IN_OUT_MODEL_TYPES else 0
        if dims:
            return dims[0]
    if ctx.model_type in _IN_OUT_MODEL_TYPES and b % 2 == 0:
        return 1
    return gate_up_dim(t, ctx, (a, b))


def stored_in_out(t: TensorInfo, ctx: Context) -> bool:
    """True when the stacked experts beside ``t`` store (in, out): a [E, H, 2I] gate_up."""
    prefix = split_name(t.name)[0]
    for other in ctx.tensors.values():
        if (other is not t and len(other.shape) == 3 and _is_gate_up(other.name)
                and split_name(other.name)[0] == prefix):
            return gate_up_axis(other, ctx) == 1
    return _is_gate_up(t.name) and gate_up_axis(t, ctx) == 1


def rule_experts(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``experts.stacked`` / ``experts.gate_up`` / ``experts.rows``."""
    if not is_experts(t.name) or (t.meta or {}).get("kind") == "conv":
        return None
    if len(t.shape) == 2:
        return _rows(t, ctx)
    if len(t.shape) != 3:
        return None
    count = t.shape[0]
    if _is_gate_up(t.name) and ctx.options.split:
        dim = gate_up_axis(t, ctx)
        if dim is not None:
            half = t.shape[1 + dim] // 2
            interleaved = ctx.model_type == "gpt_oss"
            parts = []
            for e in range(count):
                for j, gate in enumerate(("gate", "up")):
                    cut = (Cut(t.name, select=e, dim=dim, every=(j, 2), transpose=dim == 1)
                           if interleaved else
                           Cut(t.name, select=e, dim=dim, ranges=(blocks([half] * 2)[j],),
                               transpose=dim == 1))
                    parts.append((f"{e}.{gate}", cut))
            return Outcome(plans=part_plans(t, "experts.gate_up", parts, group=t.name))
    transpose = stored_in_out(t, ctx)
    parts = [(str(e), Cut(t.name, select=e, transpose=transpose)) for e in range(count)]
    return Outcome(plans=part_plans(t, "experts.stacked", parts, group=t.name))


def _rows(t: TensorInfo, ctx: Context) -> Outcome | None:
    count = expert_count(t.name, ctx)
    rows = t.shape[0]
    if not count or count < 2 or rows % count:
        return None
    size = rows // count
    ffn = ctx.config.get("ffn_config")
    sizes = {ctx.config_int(t.name, "moe_intermediate_size", "intermediate_size"),
             ffn.get("ffn_hidden_size") if isinstance(ffn, dict) else None}
    if size not in sizes:  # the blocks must be the config's expert width
        return None
    parts = [(str(e), Cut(t.name, ranges=(b,))) for e, b in enumerate(blocks([size] * count))]
    return Outcome(plans=part_plans(t, "experts.rows", parts, group=t.name))
