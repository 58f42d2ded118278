"""Run the rules over a checkpoint's tensors: every tensor becomes plans or skips, in order."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spectracli.layers import adapters, conv, experts, fused, kinds, recurrent, reparam
from spectracli.layers.context import Context
from spectracli.layers.plan import LayerOptions, MatrixPlan, Outcome, Skip, TensorInfo

Rule = Callable[[TensorInfo, Context], "Outcome | None"]

# Tried in this order; the first rule that answers decides (rule_other always answers).
RULES: tuple[Rule, ...] = (
    kinds.rule_non_float,
    adapters.rule_lora,
    reparam.rule_reparam,
    kinds.rule_scalar_vector,
    kinds.rule_bias,
    kinds.rule_squeeze,
    experts.rule_experts,
    recurrent.rule_recurrent,
    fused.rule_in_proj,
    fused.rule_c_attn,
    fused.rule_conv1d,
    fused.rule_qkv,
    fused.rule_query_key_value,
    fused.rule_kv,
    fused.rule_gate_up,
    kinds.rule_norm_scale,
    kinds.rule_matrix,
    conv.rule_conv_kernel,
    kinds.rule_other,
)


@dataclass
class LayerPlan:
    """The matrices to analyse, in checkpoint order, and every tensor (or part) not analysed."""

    plans: list[MatrixPlan] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)


def glob_match(name: str, pattern: str) -> bool:
    """Whether ``name`` matches the glob ``pattern`` (case-sensitive ``fnmatch``).

    Part names end in brackets (``attn.in_proj_weight[q]``), which a glob reads as a character
    class; so a pattern also matches when it equals the name, or when it matches with its ``[``
    taken literally: ``*[q]`` selects every q part, ``layers.[0-3].*`` keeps its class.

    Returns:
        Whether the name matches.

    >>> glob_match("attn.in_proj_weight[q]", "*[q]"), glob_match("layers.2.w", "layers.[0-3].*")
    (True, True)
    """
    return (name == pattern or fnmatch.fnmatchcase(name, pattern)
            or ("[" in pattern and fnmatch.fnmatchcase(name, pattern.replace("[", "[[]"))))


def name_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Glob filters on one name: kept if it matches an include (or none is given) and no exclude.

    Patterns match as :func:`glob_match` says (a part name as is, or ``*[q]``).

    Returns:
        Whether the name is kept.
    """
    def hit(pat: str) -> bool:
        return glob_match(name, pat)

    if include and not any(hit(p) for p in include):
        return False
    return not any(hit(p) for p in exclude)


def plan_selected(plan: MatrixPlan, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """A plan is kept when its name or a source tensor's name is included and none is excluded."""
    names = (plan.name, *plan.sources)
    if any(not name_selected(n, (), exclude) for n in names):
        return False
    return not include or any(name_selected(n, include, ()) for n in names)


def _too_small(plan: MatrixPlan, min_size: int) -> bool:
    return min(plan.extent or plan.matrix_shape) < min_size


def plan_layers(
    tensors: Iterable[TensorInfo],
    *,
    config: Mapping[str, Any] | None = None,
    options: LayerOptions | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    adapter_config: Mapping[str, Any] | None = None,
    base: Mapping[str, tuple[int, ...]] | None = None,
) -> LayerPlan:
    """The layer model of a checkpoint, from names, shapes, dtypes, meta and config.json alone.

    Args:
        tensors: every stored tensor (``name``, ``shape``, ``dtype``, ``meta``), in file order.
        config: the parsed ``config.json`` (head counts, vocabulary size, ...), or None.
        options: min_size, conv_view, split (see :class:`LayerOptions`).
        include: glob filters on result names and source tensor names (keep matches).
        exclude: glob filters on result names and source tensor names (drop matches).
        adapter_config: the PEFT ``adapter_config.json`` beside an adapter, or None.
        base: name -> shape of a base checkpoint: plans then analyse ``W - W_base`` (an adapter
            is merged into its base weight instead); tensors missing there are skipped.

    Returns:
        A :class:`LayerPlan`: each tensor is in some plan's ``sources`` or in ``skips``.

    Example:
        A fused attention projection is cut into its q, k, v rows (``nn.MultiheadAttention``
        stores them stacked, 3E x E), an LSTM weight into its gates i, f, g, o (4H x in), and a
        bias is skipped with its reason:

        >>> from spectracli.layers import Info, plan_layers
        >>> plan = plan_layers([Info("attn.in_proj_weight", (192, 64)),
        ...                     Info("attn.in_proj_bias", (192,)),
        ...                     Info("lstm.weight_hh_l0", (128, 32))])
        >>> [(p.name, p.matrix_shape) for p in plan.plans]  # doctest: +NORMALIZE_WHITESPACE
        [('attn.in_proj_weight[q]', (64, 64)), ('attn.in_proj_weight[k]', (64, 64)),
         ('attn.in_proj_weight[v]', (64, 64)), ('lstm.weight_hh_l0[i]', (32, 32)),
         ('lstm.weight_hh_l0[f]', (32, 32)), ('lstm.weight_hh_l0[g]', (32, 32)),
         ('lstm.weight_hh_l0[o]', (32, 32))]
        >>> [(s.name, s.rule) for s in plan.skips]
        [('attn.in_proj_bias', 'skip.vector')]
    """
    infos = list(tensors)
    ctx = Context(
        tensors={t.name: t for t in infos},
        config=config or {},
        options=options or LayerOptions(),
        adapter_config=adapter_config,
        base=base,
    )
    result = LayerPlan()
    consumed: set[str] = set()
    for t in infos:
        if t.name in consumed:
            continue
        outcome: Outcome | None = None
        for rule in RULES:
            outcome = rule(t, ctx)
            if outcome is not None:
                break
        assert outcome is not None  # rule_other always answers
        consumed.update(outcome.claims)
        _settle(t, outcome, ctx, include, exclude, result)
    return result


def _settle(
    t: TensorInfo,
    outcome: Outcome,
    ctx: Context,
    include: Sequence[str],
    exclude: Sequence[str],
    result: LayerPlan,
) -> None:
    """Apply the filters, the base checkpoint and min_size to one rule's answer."""
    excluded = "excluded by include/exclude"
    for skip in outcome.skips:
        keep = name_selected(skip.name, include, exclude)
        result.skips.append(skip if keep else replace(skip, reason=excluded))
    if not outcome.plans:
        return
    kept = [p for p in outcome.plans if plan_selected(p, include, exclude)]
    if not kept:
        result.skips += _tensor_skips(t, outcome, excluded)
        return
    kept_ids = {id(p) for p in kept}  # identity: an MoE tensor has hundreds of plans
    result.skips += [Skip(p.name, p.shape, excluded, p.rule) for p in outcome.plans
                     if id(p) not in kept_ids]
    if ctx.base is not None:
        kept = _against_base(kept, ctx, result)
    small = [p for p in kept if _too_small(p, ctx.options.min_size)]
    small_ids = {id(p) for p in small}
    if small and len(small) == len(kept) == len(outcome.plans) and len(kept) > 1:
        m, n = small[0].matrix_shape
        same = all(p.matrix_shape == (m, n) for p in small)
        what = f"its {len(small)} matrices of {m}x{n}" if same else f"its {len(small)} matrices"
        result.skips += _tensor_skips(
            t, outcome, f"{what} have fewer than min_size={ctx.options.min_size} rows or columns"
        )
        return
    for p in kept:
        if id(p) in small_ids:
            m, n = p.extent or p.matrix_shape
            result.skips.append(Skip(
                p.name, p.shape,
                f"matrix {m}x{n} has fewer than min_size={ctx.options.min_size} rows or columns",
                p.rule,
            ))
        else:
            result.plans.append(p)


def _tensor_skips(t: TensorInfo, outcome: Outcome, reason: str) -> list[Skip]:
    """One skip per plan name when the plans rebuild a weight, else one for the tensor."""
    names = {p.name for p in outcome.plans}
    if len(names) == 1 and next(iter(names)) != t.name:
        plan = outcome.plans[0]
        return [Skip(plan.name, plan.shape, reason, plan.rule)]
    return [Skip(t.name, tuple(t.shape), reason, outcome.plans[0].rule)]


def _against_base(plans: list[MatrixPlan], ctx: Context, result: LayerPlan) -> list[MatrixPlan]:
    """Mark plans to analyse W - W_base; skip those whose sources the base lacks or reshapes."""
    assert ctx.base is not None
    kept = []
    for p in plans:
        if p.base_sources:  # an adapter merged into its base weight: no difference taken
            kept.append(p)
            continue
        why = None
        names = []
        for src in p.sources:
            found = next((n for n in base_candidates(src) if n in ctx.base), None)
            mine = tuple(ctx.tensors[src].shape)
            if found is None:
                why = "not in the base checkpoint"
            elif tuple(ctx.base[found]) != mine:
                why = (f"shape {list(mine)} differs from the base checkpoint's "
                       f"{list(ctx.base[found])}")
            if why:
                break
            names.append(found)
        if why:
            result.skips.append(Skip(p.name, p.shape, why, p.rule))
        else:
            kept.append(replace(p, subtract_base=True, base_names=tuple(names)))
    return kept


def base_candidates(name: str) -> list[str]:
    """Names a tensor may have in a base checkpoint.

    Itself, then without PEFT's wrapping (``base_model.model.`` prefix, ``.base_layer`` /
    ``.modules_to_save.<adapter>`` infixes).

    Returns:
        The candidate names, ``name`` first.
    """
    out = [name]
    bare = name[len("base_model.model."):] if name.startswith("base_model.model.") else name
    bare = re.sub(r"\.base_layer(?=\.)|\.modules_to_save\.[^.]+(?=\.)", "", bare)
    if bare != name:
        out.append(bare)
    return out
