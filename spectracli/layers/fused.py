"""Fused projections: one stored tensor that stands for several linear maps, split into them.

Rules (parts are named ``<tensor>[<part>]``):

- ``fused.in_proj``: ``nn.MultiheadAttention.in_proj_weight`` (3E, E): rows [0:E] q, [E:2E] k,
  [2E:3E] v.
- ``fused.c_attn``: GPT-2's ``c_attn.weight``, a transformers ``Conv1D`` stored (in, out) =
  (E, 3E): columns split into q, k, v, each analysed as its (out, in) linear map (transposed).
- ``gpt2.conv1d``: GPT-2's other ``Conv1D`` weights (``c_proj``, ``c_fc``, ``q_attn``) are stored
  (in, out) too: analysed as the linear map (same singular values, ``transposed`` recorded).
- ``fused.qkv``: ``qkv_proj`` (Phi-3), ``Wqkv`` (MPT, MosaicBERT), ``qkv`` (timm ViT),
  ``to_qkv``, GGUF ``attn_qkv``, row-form ``c_attn`` (GPT-BigCode): rows [q | k | v] with
  q = heads * head_dim and k = v = kv_heads * head_dim from config.json (grouped-query shapes);
  equal thirds when rows = 3 * cols and the config gives no head counts.
- ``fused.query_key_value``: GPT-NeoX / BLOOM / Persimmon ``query_key_value`` interleaves per
  head as (heads, 3, head_dim); Falcon's new decoder architecture per key/value group as
  (kv_heads, heads / kv_heads + 2, head_dim); Falcon multi-query and ChatGLM concatenate
  [q | k | v]. Needs config.json's head counts: without them the tensor is analysed fused,
  with a warning saying why.
- ``fused.kv``: ``kv``, ``to_kv``, ``kv_proj`` (2E, in): rows [k | v].
- ``fused.gate_up``: ``gate_up_proj`` (2I, H), Phi-3 style: rows [gate | up] (columns when
  stored (H, 2I)); ChatGLM's ``dense_h_to_4h`` likewise.

With ``split=False`` every fused tensor is analysed whole (the rule name ends in ``.kept``).
"""

from __future__ import annotations

from spectracli.layers.context import Context, split_name
from spectracli.layers.plan import Cut, MatrixPlan, Outcome, TensorInfo

_QKV_MODULES = {"qkv_proj", "Wqkv", "wqkv", "qkv", "to_qkv", "attn_qkv", "qkv_linear"}
_KV_MODULES = {"kv", "to_kv", "kv_proj"}
_GATE_UP_MODULES = {"gate_up_proj", "gate_up", "w12", "ffn_gate_up"}
_CONV1D_MODULES = {"c_proj", "c_fc", "q_attn"}
_CONV1D_MODEL_TYPES = {"gpt2", "openai-gpt", "imagegpt", "decision_transformer"}


def module_of(t: TensorInfo) -> str | None:
    """The module name of a ``<module>.weight`` tensor, else None."""
    prefix, leaf = split_name(t.name)
    return split_name(prefix)[1] if leaf == "weight" and prefix else None


def cut_shape(shape: tuple[int, ...], cut: Cut) -> tuple[int, int]:
    """(m, n) of the matrix a :class:`Cut` makes from a tensor of ``shape``."""
    dims = list(shape[1:] if cut.select is not None else shape)
    if cut.every is not None:
        offset, stride = cut.every
        dims[cut.dim] = len(range(offset, dims[cut.dim], stride))
    elif cut.ranges:
        dims[cut.dim] = sum(b - a for a, b in cut.ranges)
    if cut.transpose:
        dims[0], dims[1] = dims[1], dims[0]
    return dims[0], dims[1]


def part_plans(
    t: TensorInfo,
    rule: str,
    parts: list[tuple[str, Cut]],
    *,
    group: str | None = None,
    notes: tuple[str, ...] = (),
) -> list[MatrixPlan]:
    """One linear plan per (part name, cut) of tensor ``t``."""
    return [
        MatrixPlan(
            name=f"{t.name}[{part}]", kind="linear", rule=rule, sources=(t.name,),
            shape=tuple(t.shape), dtype=t.dtype, matrix_shape=cut_shape(tuple(t.shape), cut),
            n_matrices=1, build=cut, part=part, transposed=cut.transpose, group=group,
            notes=notes,
        )
        for part, cut in parts
    ]


def whole_plan(t: TensorInfo, rule: str, *, transpose: bool = False,
               notes: tuple[str, ...] = ()) -> MatrixPlan:
    """A plan for the whole 2-D tensor ``t`` as one linear matrix (transposed: stored (in, out))."""
    shape = tuple(t.shape)
    cut = Cut(t.name, transpose=transpose)
    return MatrixPlan(
        name=t.name, kind="linear", rule=rule, sources=(t.name,), shape=shape, dtype=t.dtype,
        matrix_shape=cut_shape(shape, cut), n_matrices=1, build=cut, transposed=transpose,
        notes=notes,
    )


def blocks(sizes: list[int]) -> list[tuple[int, int]]:
    """Consecutive (start, stop) blocks of the given sizes."""
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return out


def _split(t: TensorInfo, ctx: Context, rule: str, names: tuple[str, ...],
           ranges: list[tuple[tuple[int, int], ...]], dim: int = 0,
           transpose: bool = False) -> Outcome:
    if not ctx.options.split:
        return Outcome(plans=[whole_plan(t, rule + ".kept", transpose=transpose)])
    parts = [(n, Cut(t.name, dim=dim, ranges=r, transpose=transpose))
             for n, r in zip(names, ranges, strict=True)]
    return Outcome(plans=part_plans(t, rule, parts))


def _fused_kept(t: TensorInfo, rule: str, why: str, transpose: bool = False) -> Outcome:
    return Outcome(plans=[whole_plan(t, rule + ".kept", transpose=transpose,
                                     notes=(f"analysed fused: {why}",))])


def conv1d_layout(ctx: Context) -> bool:
    """True when the checkpoint stores GPT-2-style Conv1D weights (in, out)."""
    if "conv1d_layout" not in ctx.memo:
        ctx.memo["conv1d_layout"] = ctx.model_type in _CONV1D_MODEL_TYPES or any(
            module_of(t) == "c_attn" and len(t.shape) == 2 and t.shape[1] == 3 * t.shape[0]
            for t in ctx.tensors.values()
        )
    return bool(ctx.memo["conv1d_layout"])


def qkv_sizes(t: TensorInfo, ctx: Context, rows: int, cols: int) -> tuple[list[int], str] | str:
    """[q, k, v] row counts of a concatenated fused q/k/v, or why they are unknown."""
    heads = ctx.head_counts(t.name)
    if heads is not None:
        h, kv, d = heads
        if h * d + 2 * kv * d == rows:
            return [h * d, kv * d, kv * d], "config"
    if rows == 3 * cols:
        return [rows // 3] * 3, "thirds"
    if heads is None:
        return f"{rows} rows are not 3 x {cols} and {ctx.config_lacks('head counts')}"
    h, kv, d = heads
    return (f"{rows} rows do not match config.json's heads={h}, kv_heads={kv}, "
            f"head_dim={d} ({h * d} + 2 x {kv * d})")


def rule_in_proj(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``fused.in_proj``."""
    if split_name(t.name)[1] != "in_proj_weight" or len(t.shape) != 2:
        return None
    rows = t.shape[0]
    if rows % 3:
        return _fused_kept(t, "fused.in_proj", f"{rows} rows are not divisible by 3")
    return _split(t, ctx, "fused.in_proj", ("q", "k", "v"), [(b,) for b in blocks([rows // 3] * 3)])


def rule_c_attn(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``fused.c_attn`` (GPT-2 Conv1D (E, 3E)); a row-form c_attn goes to ``fused.qkv``."""
    if module_of(t) != "c_attn" or len(t.shape) != 2:
        return None
    rows, cols = t.shape
    if cols == 3 * rows:
        return _split(t, ctx, "fused.c_attn", ("q", "k", "v"),
                      [(b,) for b in blocks([rows] * 3)], dim=1, transpose=True)
    return _qkv(t, ctx)


def rule_conv1d(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``gpt2.conv1d``: Conv1D weights stored (in, out), analysed as the (out, in) map."""
    if module_of(t) not in _CONV1D_MODULES or len(t.shape) != 2 or not conv1d_layout(ctx):
        return None
    return Outcome(plans=[whole_plan(t, "gpt2.conv1d", transpose=True)])


def _qkv(t: TensorInfo, ctx: Context) -> Outcome:
    rows, cols = t.shape
    sizes = qkv_sizes(t, ctx, rows, cols)
    if isinstance(sizes, str):
        return _fused_kept(t, "fused.qkv", sizes)
    return _split(t, ctx, "fused.qkv", ("q", "k", "v"), [(b,) for b in blocks(sizes[0])])


def rule_qkv(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``fused.qkv``."""
    if module_of(t) not in _QKV_MODULES or len(t.shape) != 2:
        return None
    return _qkv(t, ctx)


def rule_query_key_value(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``fused.query_key_value``: per-head layouts from config.json (see module doc)."""
    if module_of(t) != "query_key_value" or len(t.shape) != 2:
        return None
    rule = "fused.query_key_value"
    heads = ctx.head_counts(t.name)
    if heads is None:
        return _fused_kept(t, rule, "query_key_value interleaves q, k, v per head and "
                           + ctx.config_lacks("num_attention_heads"))
    h, kv, d = heads
    rows = t.shape[0]
    model = ctx.model_type
    new_arch = bool(ctx.config_value(t.name, "new_decoder_architecture"))
    if model == "chatglm" or (model == "falcon" and not new_arch and kv == 1):
        layout = "concatenated"
        ranges = [(b,) for b in blocks([h * d, kv * d, kv * d])]
    elif model == "falcon" and new_arch:
        layout = "grouped"
        per = h // kv if kv and h % kv == 0 else 0
        group = (per + 2) * d
        ranges = [
            tuple((g * group, g * group + per * d) for g in range(kv)),
            tuple((g * group + per * d, g * group + (per + 1) * d) for g in range(kv)),
            tuple((g * group + (per + 1) * d, (g + 1) * group) for g in range(kv)),
        ]
    else:  # GPT-NeoX, BLOOM, Persimmon: (heads, 3, head_dim)
        layout = "per-head"
        kv = h
        ranges = [tuple((i * 3 * d + j * d, i * 3 * d + (j + 1) * d) for i in range(h))
                  for j in range(3)]
    expected = sum(b - a for r in ranges for a, b in r)
    if expected != rows or (layout == "grouped" and not h // max(kv, 1)):
        return _fused_kept(t, rule, f"{rows} rows do not match the {layout} layout of "
                           f"config.json's heads={h}, kv_heads={kv}, head_dim={d}")
    return _split(t, ctx, rule, ("q", "k", "v"), ranges)


def rule_kv(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``fused.kv``."""
    if module_of(t) not in _KV_MODULES or len(t.shape) != 2:
        return None
    rows = t.shape[0]
    if rows % 2:
        return _fused_kept(t, "fused.kv", f"{rows} rows are odd")
    return _split(t, ctx, "fused.kv", ("k", "v"), [(b,) for b in blocks([rows // 2] * 2)])


def gate_up_dim(t: TensorInfo, ctx: Context, shape: tuple[int, int]) -> int | None:
    """The axis (0 or 1) of a (2I, H) / (H, 2I) gate_up matrix that holds [gate | up]."""
    inter = ctx.config_int(t.name, "moe_intermediate_size", "expert_intermediate_size",
                           "intermediate_size", "ffn_hidden_size", "n_inner")
    hidden = ctx.hidden_size(t.name)
    for dim in (0, 1):
        if inter and shape[dim] == 2 * inter and (hidden is None or shape[1 - dim] == hidden):
            return dim
    if hidden:
        for dim in (0, 1):
            if shape[1 - dim] == hidden and shape[dim] % 2 == 0:
                return dim
    return 0 if shape[0] % 2 == 0 and shape[0] != shape[1] else None


def rule_gate_up(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``fused.gate_up``."""
    module = module_of(t)
    chatglm = module == "dense_h_to_4h" and ctx.model_type == "chatglm"
    if (module not in _GATE_UP_MODULES and not chatglm) or len(t.shape) != 2:
        return None
    dim = gate_up_dim(t, ctx, (t.shape[0], t.shape[1]))
    if dim is None:
        what = ("no axis of even length matches config.json's intermediate size" if ctx.config
                else "no axis of even length, and " + ctx.config_lacks("intermediate size"))
        return _fused_kept(t, "fused.gate_up", what)
    half = t.shape[dim] // 2
    return _split(t, ctx, "fused.gate_up", ("gate", "up"), [(b,) for b in blocks([half] * 2)],
                  dim=dim, transpose=dim == 1)
