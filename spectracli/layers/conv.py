"""Conv kernels (out, in / groups, *k) of any length, 1-D/2-D/3-D, read as slices or unfolded.

- ``slices``: prod(k) matrices of shape (out, in), one per kernel position, pooled into one ESD
  (the convention of WeightWatcher's per-slice view; docs/metrics.md).
- ``unfold``: one (out, in * prod(k)) matrix, the im2col form of the convolution's linear map
  per output position (Chellapilla et al. 2006; the reshape used by spectral-norm conv layers,
  Miyato et al. 2018).
- ``auto``: ``unfold`` where the slices are degenerate (a depthwise kernel, in = 1; a first layer,
  in <= 4; slices with fewer than ``min_size`` rows or columns), ``slices`` elsewhere.

A transposed convolution (``nn.ConvTranspose2d``) stores (in, out / groups, *k); when the reader
knows it (``meta["conv_transposed"]``: an in-memory module says so by its type) the kernel is read
as (out, in, *k) (``transposed`` recorded). A file does not say which kernels are transposed:
there they are read as stored; their ``slices`` have the same singular values either way, their
``unfold`` matrix does not (docs/checkpoints.md).

Rule: ``conv.kernel``; the view each kernel used is in the plan's ``conv_view``.
"""

from __future__ import annotations

import math

from spectracli.layers.context import Context
from spectracli.layers.plan import Cut, MatrixPlan, Outcome, Recipe, TensorInfo

FIRST_LAYER_MAX_IN = 4


def conv_view_for(shape: tuple[int, ...], view: str, min_size: int) -> str:
    """The view a kernel of ``shape`` is read in under the option ``view`` (see module doc)."""
    if view != "auto":
        return view
    out_c, in_c = shape[0], shape[1]
    if math.prod(shape[2:]) > 1 and (
        in_c <= FIRST_LAYER_MAX_IN or min(out_c, in_c) < min_size
    ):
        return "unfold"
    return "slices"


def conv_plan(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    ctx: Context,
    *,
    rule: str = "conv.kernel",
    sources: tuple[str, ...] | None = None,
    build: Recipe | None = None,
    conv_transposed: bool = False,
    **extra: object,
) -> MatrixPlan:
    """The plan of a kernel (out, in, *k) under the context's conv view.

    ``conv_transposed``: the kernel is stored (in, out, *k) (a transposed convolution); it is
    read as (out, in, *k) and the plan records ``transposed``.

    Returns:
        The plan: ``prod(k)`` (out, in) slices or one (out, in * prod(k)) matrix.
    """
    stored = shape
    if conv_transposed:
        shape = (shape[1], shape[0], *shape[2:])
        build = build or Cut(name, transpose=True)
        extra["transposed"] = True
    view = conv_view_for(shape, ctx.options.conv_view, ctx.options.min_size)
    k = math.prod(shape[2:])
    out_c, in_c = shape[0], shape[1]
    matrix_shape, count = ((out_c, in_c), k) if view == "slices" else ((out_c, in_c * k), 1)
    return MatrixPlan(
        name=name, kind=f"conv{len(shape) - 2}d", rule=rule, sources=sources or (name,),
        shape=stored, dtype=dtype, matrix_shape=matrix_shape, n_matrices=count,
        build=build or Cut(name), conv_view=view, **extra,  # type: ignore[arg-type]
    )


def rule_conv_kernel(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``conv.kernel``: a 3-D/4-D/5-D float tensor no earlier rule claimed is a conv kernel.

    Earlier rules take what is not: stacked experts, recurrent and fused tensors, reparametrised
    weights and tables with leading singleton axes; ``meta["kind"]`` from the format wins.

    Returns:
        The plan of the kernel (view ``ctx``'s ``conv_view``), or None for another tensor.
    """
    if not 3 <= len(t.shape) <= 5:
        return None
    kind = (t.meta or {}).get("kind")
    if kind not in (None, "conv"):
        return None
    transposed = bool((t.meta or {}).get("conv_transposed"))
    return Outcome(plans=[conv_plan(t.name, tuple(t.shape), t.dtype, ctx,
                                    conv_transposed=transposed)])
