"""Stacked mixture-of-experts weights: one matrix per expert, pooled per tensor for the table.

- ``experts.stacked``: a 3-D tensor [E, a, b] whose name says experts (``...experts.down_proj``
  in Qwen/DeepSeek/gpt-oss/Llama-4 style checkpoints; GGUF ``ffn_gate_exps``, ``ffn_up_exps``,
  ``ffn_down_exps``): E matrices (a, b), named ``<tensor>[7]``.
- ``experts.gate_up``: a stacked fused gate/up tensor (``experts.gate_up_proj``, GraniteMoE's
  ``block_sparse_moe.input_linear.weight``) [E, 2I, H] or [E, H, 2I]: per expert ``[7.gate]``
  and ``[7.up]``, cut by the layout the evidence gives (:func:`gate_up_layout`: the model type,
  else the down projection beside it or config.json's sizes): (out, in) with gate and up
  concatenated (Mixtral, Qwen-MoE, DeepSeek, OLMoE, GraniteMoE... in transformers), (in, out)
  concatenated (Llama 4) or (in, out) interleaved, gate = [..., ::2], up = [..., 1::2]
  (GPT-OSS). A stack stored (in, out) is analysed transposed, and so is the down projection
  beside it. Without evidence each expert's [gate | up] is analysed fused
  (``experts.gate_up.kept``) and its warning says what is missing.
- ``experts.rows``: a 2-D tensor named ``experts`` whose rows are E blocks of the config's
  expert width I (DBRX ``w1``/``v1``/``w2`` (E * I, H), ``ffn_config.moe_num_experts`` and
  ``ffn_hidden_size``): ``[7]`` = rows [7I, 8I); DBRX's ``w2`` blocks are (in, out) (its
  forward is ``x @ w2[e]``) and analysed transposed.

A name with an index after ``experts`` (``experts.3.w1.weight``) is one expert already and a
``shared_experts`` MLP is no stack: both are read as ordinary matrices.

Every per-expert result carries ``group`` = the tensor name; the report pools each group
(worst condition number, mean alpha) in ``groups``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spectracli.layers.context import Context, join, split_name
from spectracli.layers.fused import blocks, part_plans
from spectracli.layers.plan import Cut, Outcome, TensorInfo

# GraniteMoE as saved by transformers 4.x: [E, 2I, H] input_linear (gate|up), [E, H, I] output
_GRANITE = re.compile(r"(^|\.)block_sparse_moe\.(input|output)_linear(\.|$)")
_GGUF_EXPS = re.compile(r"(^|\.)ffn_(gate|up|down|gate_up)_exps(\.|$)")
# ``.experts.`` as a whole component, not followed by an expert index (``experts.3.w1`` is one
# expert already) and not ``shared_experts`` (an ordinary MLP beside the routed experts).
_EXPERTS = re.compile(r"(^|\.)experts(\.(?!\d+(\.|$))|$)")


def is_experts(name: str) -> bool:
    """Whether ``name`` is a stack of routed experts.

    ``.experts.`` unindexed, GGUF ``*_exps``, GraniteMoE's ``block_sparse_moe.input_linear`` /
    ``output_linear``.

    Returns:
        True for a stack (or a DBRX-style 2-D block of experts), else False.
    """
    return bool(_EXPERTS.search(name) or _GGUF_EXPS.search(name) or _GRANITE.search(name))


def _module(name: str) -> str:
    leaf = split_name(name)[1]
    return split_name(split_name(name)[0])[1] if leaf == "weight" else leaf


def _is_gate_up(name: str) -> bool:
    module = _module(name)
    return "gate_up" in module or (module == "input_linear" and _GRANITE.search(name) is not None)


def expert_count(name: str, ctx: Context) -> int | None:
    """The number of routed experts the config declares for ``name``, or None when unknown."""
    count = ctx.config_int(name, "num_experts", "num_local_experts", "n_routed_experts",
                           "moe_num_experts")
    ffn = ctx.config.get("ffn_config")
    if count is None and isinstance(ffn, dict):  # DBRX
        count = ffn.get("moe_num_experts") if isinstance(ffn.get("moe_num_experts"), int) else None
    return count


def _down_name(name: str) -> list[str]:
    """Where the down projection of the gate_up tensor ``name`` would be."""
    prefix, leaf = split_name(name)
    if _module(name) == "input_linear":  # GraniteMoE: input_linear.weight / output_linear.weight
        return [join(split_name(prefix)[0], "output_linear") + "." + leaf]
    return [join(prefix, leaf.replace("gate_up", "down")),
            join(split_name(prefix)[0], split_name(prefix)[1].replace("gate_up", "down"))
            + ("." + leaf if leaf == "weight" else "")]


def _down_sibling(t: TensorInfo, ctx: Context) -> TensorInfo | None:
    for other in _down_name(t.name):
        found = ctx.tensors.get(other)
        if found is not None and other != t.name and len(found.shape) == 3:
            return found
    return None


# How transformers stores a stacked ``experts.gate_up_proj`` [E, ., .], by model_type (read from
# its modeling_<model>.py and conversion_mapping.py, transformers 5.x; docs/checkpoints.md):
# - (out, in), [gate | up] concatenated: gate_up [E, 2I, H] used as F.linear(x, W[e]) and
#   .chunk(2, dim=-1); down [E, H, I]. The checkpoints of Mixtral/PhiMoE (experts.N.w1/w3) and
#   Qwen2-MoE-like models (experts.N.gate_proj/up_proj) are fused so on load; GraniteMoE stores
#   it so on disk as block_sparse_moe.input_linear.weight / output_linear.weight.
# - (in, out), concatenated: Llama 4, gate_up [E, H, 2I] used as bmm(x, W) and .chunk(2, -1);
#   down [E, I, H].
# - (in, out), interleaved: GPT-OSS, gate = [..., ::2], up = [..., 1::2]; down [E, I, H];
#   a gate_up_proj_bias [E, 2I] beside it.
_OUT_IN_CONCAT = frozenset({
    "mixtral", "minimax", "minimax_m2", "phimoe", "qwen2_moe", "qwen3_moe", "qwen3_next",
    "qwen3_omni_moe", "qwen3_vl_moe", "deepseek_v2", "deepseek_v3", "olmoe", "flex_olmo",
    "jamba", "granitemoe", "granitemoeshared", "granitemoehybrid", "glm4_moe", "glm4v_moe",
    "ernie4_5_moe", "hunyuan_v1_moe", "dots1", "lfm2_moe", "afmoe",
})
_LAYOUTS: dict[str, tuple[bool, bool]] = {  # model_type -> (stored (in, out), interleaved)
    **{m: (False, False) for m in _OUT_IN_CONCAT},
    "llama4": (True, False), "llama4_text": (True, False),
    "gpt_oss": (True, True),
}
# config.json "architectures" class prefixes, for a config without model_type
_ARCHITECTURES = {"GptOss": "gpt_oss", "Llama4": "llama4", "Mixtral": "mixtral",
                  "PhiMoE": "phimoe", "Qwen2Moe": "qwen2_moe", "Qwen3Moe": "qwen3_moe",
                  "DeepseekV2": "deepseek_v2", "DeepseekV3": "deepseek_v3", "Olmoe": "olmoe",
                  "Jamba": "jamba", "GraniteMoe": "granitemoe", "Glm4Moe": "glm4_moe",
                  "Ernie4_5_Moe": "ernie4_5_moe", "Dbrx": "dbrx"}


def moe_model_type(ctx: Context) -> str:
    """The config's ``model_type``, else the one its ``architectures`` names, else ``""``."""
    if ctx.model_type:
        return ctx.model_type
    for arch in ctx.config.get("architectures") or ():
        for prefix, model in _ARCHITECTURES.items():
            if isinstance(arch, str) and arch.startswith(prefix):
                return model
    return ""


@dataclass(frozen=True)
class GateUpLayout:
    """How each expert of a stacked gate_up tensor holds its gate and up projections.

    ``dim``: the axis of each expert's matrix that holds [gate, up] (0: stored (out, in) as
    (2I, H); 1: stored (in, out) as (H, 2I), analysed transposed). ``interleaved``: gate and up
    alternate along it (GPT-OSS) instead of being two halves. ``notes``: what was assumed, for
    the layer's warnings (empty when the model type says it all).
    """

    dim: int
    interleaved: bool
    notes: tuple[str, ...] = ()


def _expert_width(name: str, ctx: Context) -> int | None:
    width = ctx.config_int(name, "moe_intermediate_size", "expert_intermediate_size",
                           "intermediate_size")
    ffn = ctx.config.get("ffn_config")
    if width is None and isinstance(ffn, dict) and isinstance(ffn.get("ffn_hidden_size"), int):
        width = ffn["ffn_hidden_size"]
    return width


def _orientation(t: TensorInfo, ctx: Context) -> tuple[bool, str] | None:
    """(stored (in, out), the evidence) from the shapes: the down projection, then config."""
    a, b = t.shape[1], t.shape[2]
    down = _down_sibling(t, ctx)
    if down is not None and b % 2 == 0 and (down.shape[1], down.shape[2]) == (b // 2, a):
        return True, f"the down projection beside it is {down.shape[1]}x{down.shape[2]} (I, H)"
    if down is not None and a % 2 == 0 and (down.shape[1], down.shape[2]) == (b, a // 2):
        return False, f"the down projection beside it is {down.shape[1]}x{down.shape[2]} (H, I)"
    hidden, width = ctx.hidden_size(t.name), _expert_width(t.name, ctx)
    if hidden and width and (a, b) != (b, a):
        if (a, b) == (2 * width, hidden):
            return False, f"config.json's sizes give (2I, H) = ({a}, {b})"
        if (a, b) == (hidden, 2 * width):
            return True, f"config.json's sizes give (H, 2I) = ({a}, {b})"
    return None


def _declared_layout(t: TensorInfo, ctx: Context) -> GateUpLayout | str | None:
    """The layout a GGUF name or the model type declares (None: neither says)."""
    a, b = t.shape[1], t.shape[2]
    if _GGUF_EXPS.search(t.name):  # whatever the architecture, ggml stores (out, in)
        if a % 2:
            return f"GGUF gate_up of {a}x{b}: an odd number of rows"
        return GateUpLayout(0, False, ("GGUF stores every matrix (out, in); gate and up "
                                       "assumed concatenated",))
    model = moe_model_type(ctx)
    if model not in _LAYOUTS:
        return None
    in_out, interleaved = _LAYOUTS[model]
    if (b if in_out else a) % 2:
        return (f"model type {model} stores [gate | up] along an axis of {b if in_out else a}, "
                "which is odd")
    return GateUpLayout(1 if in_out else 0, interleaved)


def gate_up_layout(t: TensorInfo, ctx: Context) -> GateUpLayout | str:
    """The layout of stacked gate_up tensor ``t`` [E, a, b], or why it is unknown.

    Evidence, strongest first: a GGUF name ((out, in) whatever the architecture); the model
    type (``config.json`` ``model_type`` or ``architectures``; table above); else the
    orientation from the shapes (the down projection beside it, config.json's sizes), gate and
    up then interleaved only when a ``gate_up_proj_bias`` beside an (in, out) stack says
    GPT-OSS, else concatenated as every other model stores them (said in ``notes``).

    Returns:
        The layout, or a one-line reason when nothing tells which axis holds [gate | up].
    """
    declared = _declared_layout(t, ctx)
    if declared is not None:
        return declared
    a, b = t.shape[1], t.shape[2]
    found = _orientation(t, ctx)
    if found is None:
        model = moe_model_type(ctx)
        known = f"model type {model!r} is not one of the known MoE layouts; " if model else ""
        return (f"{known}no down projection beside it, config sizes or model type tell which "
                f"axis of {a}x{b} holds [gate | up] ({ctx.config_lacks('model type')})"
                if not ctx.config else
                f"{known}neither a down projection beside it nor config.json's sizes tell "
                f"which axis of {a}x{b} holds [gate | up]")
    in_out, why = found
    if not in_out:
        return GateUpLayout(0, False, (f"stored (out, in) as {why}; gate and up assumed "
                                       "concatenated, as every (out, in) MoE layout",))
    bias = ctx.tensors.get(join(split_name(t.name)[0], split_name(t.name)[1] + "_bias"))
    if bias is not None:
        return GateUpLayout(1, True, (f"stored (in, out) as {why}; gate and up assumed "
                                      "interleaved as GPT-OSS, which has the gate_up_proj_bias "
                                      "found beside it",))
    return GateUpLayout(1, False, (f"stored (in, out) as {why}; gate and up assumed "
                                   "concatenated as Llama 4 (GPT-OSS interleaves them, and "
                                   "stores a gate_up_proj_bias, absent here)",))


def stored_in_out(t: TensorInfo, ctx: Context) -> bool:
    """True when the stacked experts of ``t`` store each matrix (in, out), as [E, H, 2I]."""
    if _GGUF_EXPS.search(t.name):
        return False
    if _is_gate_up(t.name):
        layout = gate_up_layout(t, ctx)
        return isinstance(layout, GateUpLayout) and layout.dim == 1
    prefix = split_name(t.name)[0]
    for other in ctx.tensors.values():
        if (other is not t and len(other.shape) == 3 and _is_gate_up(other.name)
                and t.name in _down_name(other.name)):
            layout = gate_up_layout(other, ctx)
            return isinstance(layout, GateUpLayout) and layout.dim == 1
    for other in ctx.tensors.values():  # another stack of the same module
        if (other is not t and len(other.shape) == 3 and _is_gate_up(other.name)
                and split_name(other.name)[0] == prefix):
            layout = gate_up_layout(other, ctx)
            return isinstance(layout, GateUpLayout) and layout.dim == 1
    model = moe_model_type(ctx)
    return model in _LAYOUTS and _LAYOUTS[model][0]


def rule_experts(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``experts.stacked`` / ``experts.gate_up`` (``.kept``) / ``experts.rows``."""
    if not is_experts(t.name) or (t.meta or {}).get("kind") == "conv":
        return None
    if len(t.shape) == 2:
        return _rows(t, ctx)
    if len(t.shape) != 3:
        return None
    count = t.shape[0]
    if _is_gate_up(t.name) and ctx.options.split:
        layout = gate_up_layout(t, ctx)
        if isinstance(layout, str):
            parts = [(str(e), Cut(t.name, select=e)) for e in range(count)]
            return Outcome(plans=part_plans(t, "experts.gate_up.kept", parts, group=t.name,
                                            notes=(f"analysed fused: {layout}",)))
        return Outcome(plans=_gate_up_plans(t, layout))
    transpose = stored_in_out(t, ctx)
    parts = [(str(e), Cut(t.name, select=e, transpose=transpose)) for e in range(count)]
    return Outcome(plans=part_plans(t, "experts.stacked", parts, group=t.name))


def _gate_up_plans(t: TensorInfo, layout: GateUpLayout) -> list:
    dim, half = layout.dim, t.shape[1 + layout.dim] // 2
    parts = []
    for e in range(t.shape[0]):
        for j, gate in enumerate(("gate", "up")):
            cut = (Cut(t.name, select=e, dim=dim, every=(j, 2), transpose=dim == 1)
                   if layout.interleaved else
                   Cut(t.name, select=e, dim=dim, ranges=(blocks([half] * 2)[j],),
                       transpose=dim == 1))
            parts.append((f"{e}.{gate}", cut))
    return part_plans(t, "experts.gate_up", parts, group=t.name, notes=layout.notes)


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
    # DbrxExpertGLU: gate = x @ w1[e].T, up = x @ v1[e].T, down = h @ w2[e]: w2 is (in, out)
    transpose = _module(t.name) == "w2" and (moe_model_type(ctx) == "dbrx" or isinstance(ffn, dict))
    parts = [(str(e), Cut(t.name, ranges=(b,), transpose=transpose))
             for e, b in enumerate(blocks([size] * count))]
    return Outcome(plans=part_plans(t, "experts.rows", parts, group=t.name))
