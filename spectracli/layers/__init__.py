"""The layer model: names + shapes (+ config.json) -> the matrices each layer stands for.

Pure: it sees names, shapes, dtypes, format meta and the parsed ``config.json`` before anything
is loaded, and says which matrices to build (a tensor, a part of one, several combined, a view of
a kernel). It never imports io, cli, report or gate. One small module per rule family; every
rule is named and listed in docs/checkpoints.md.

    from spectracli.layers import Info, LayerOptions, plan_layers
    plan = plan_layers([Info("attn.in_proj_weight", (192, 64))])
    [p.name for p in plan.plans]   # ['attn.in_proj_weight[q]', '...[k]', '...[v]']
"""

from spectracli.layers.plan import (
    CONV_VIEWS,
    Cut,
    Info,
    LayerOptions,
    MatrixPlan,
    Recipe,
    Skip,
    TensorInfo,
    as_stack,
)
from spectracli.layers.planner import RULES, LayerPlan, glob_match, name_selected, plan_layers

__all__ = [
    "CONV_VIEWS",
    "RULES",
    "Cut",
    "Info",
    "LayerOptions",
    "LayerPlan",
    "MatrixPlan",
    "Recipe",
    "Skip",
    "TensorInfo",
    "as_stack",
    "glob_match",
    "name_selected",
    "plan_layers",
]
