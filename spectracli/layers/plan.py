"""The layer model's vocabulary: what it sees (tensor infos), what it says (matrix plans, skips).

A :class:`MatrixPlan` names one matrix (or one stack of equal-shape matrices, e.g. a conv kernel
read as slices) to analyse: its result name, its kind, the rule that made it, the stored tensors
it is built from, and a :class:`Recipe` that builds it from those tensors once they are loaded.
Plans are made from names, shapes, dtypes, format meta and the checkpoint's ``config.json``
alone; nothing is loaded to plan.

Naming: a matrix that is a part of a tensor is ``<tensor name>[<part>]``
(``attn.in_proj_weight[q]``, ``lstm.weight_hh_l0[f]``, ``mlp.experts.gate_up_proj[7.up]``); a
weight rebuilt from several tensors keeps the layer's weight name (``conv.weight`` from
``conv.weight_g`` and ``conv.weight_v``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import array_api_compat
import numpy as np

if TYPE_CHECKING:
    import torch

    Array = np.ndarray | torch.Tensor

from spectracli.options import ConvView

# Recipes find a base checkpoint's tensors (``MatrixPlan.base_sources``) under this prefix.
BASE_PREFIX = "base:"
CONV_VIEWS = ConvView.values()  # how a conv kernel may be read (spectracli.layers.conv)


def namespace(*arrays: Any) -> Any:
    """The array API namespace of the recipes' inputs.

    Returns:
        numpy itself for numpy arrays (as ``spectracli.spectral.arrays.namespace``), else
        ``array_api_compat``'s namespace (torch's wrapper).

    Raises:
        TypeError: an object that is no array of a supported library, or arrays of two libraries.
    """
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np
    return array_api_compat.array_namespace(*arrays)


class TensorInfo(Protocol):
    """What the layer model knows of a stored tensor before loading it (io's TensorHandle fits)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    meta: Mapping[str, Any]


@dataclass(frozen=True)
class Info:
    """A plain :class:`TensorInfo` (tests, in-memory sources)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerOptions:
    """Choices that change which matrices are built.

    ``min_size``: matrices with fewer rows or columns are skipped. ``conv_view``: ``slices``
    (prod(k) matrices (out, in), one per kernel position), ``unfold`` (one (out, in * prod(k))
    matrix) or ``auto`` (unfold where the slices are degenerate). ``split``: cut fused tensors
    (q/k/v, gates, gate/up) into the matrices they stand for; False keeps them whole.
    """

    min_size: int = 10
    conv_view: str = "auto"
    split: bool = True

    def __post_init__(self) -> None:
        if self.conv_view not in CONV_VIEWS:
            raise ValueError(
                f"conv_view must be one of {', '.join(CONV_VIEWS)}, got {self.conv_view!r}"
            )
        if self.min_size < 1:
            raise ValueError(f"min_size must be at least 1, got {self.min_size}")


class Recipe:
    """Builds a plan's weight (2-D matrix or N-D kernel) from its loaded source tensors."""

    def __call__(self, tensors: Mapping[str, Array]) -> Array:
        """The plan's weight from ``tensors`` (loaded source name -> numpy array or tensor).

        Raises:
            NotImplementedError: in the base class; each recipe defines it.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Cut(Recipe):
    """A part of one stored tensor, as a view where possible.

    ``select``: index along dim 0 first (one expert of a stack). ``ranges``: (start, stop) blocks
    along ``dim`` (after ``select``), concatenated in order; empty keeps the whole dimension.
    ``every``: (offset, stride) along ``dim`` instead (interleaved parts). ``transpose``: the
    tensor stores (in, out) (GPT-2 Conv1D): return the (out, in) linear map.
    """

    source: str
    select: int | None = None
    dim: int = 0
    ranges: tuple[tuple[int, int], ...] = ()
    every: tuple[int, int] | None = None
    transpose: bool = False

    def __call__(self, tensors: Mapping[str, Array]) -> Array:
        """The selected part of the source tensor (a view where the layout allows)."""
        t = tensors[self.source]
        xp = namespace(t)
        if self.select is not None:
            t = t[self.select]
        lead = (slice(None),) * self.dim
        if self.every is not None:
            offset, stride = self.every
            t = t[(*lead, slice(offset, None, stride))]
        elif self.ranges:
            blocks = [t[(*lead, slice(a, b))] for a, b in self.ranges]
            t = blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=self.dim)
        if self.transpose:
            t = xp.permute_dims(t, (1, 0, *range(2, t.ndim)))
        return t


@dataclass(frozen=True)
class MatrixPlan:
    """One matrix (or stack of equal-shape matrices) to analyse, and how to build it.

    ``shape``/``dtype`` are those of the main stored tensor; ``matrix_shape`` is the (m, n) of each
    of the ``n_matrices`` matrices analysed. ``sources`` are the stored tensors the recipe needs
    (loaded together, once for all plans that share them); ``base_sources`` those it needs from
    a base checkpoint (a merged adapter). ``subtract_base``: analyse build(W) - build(W_base).
    ``notes`` are caveats the result carries as warnings. ``farms``: False where windows of the
    built matrix are not windows of the weight (an adapter's r x r core); ``extent`` is then
    the (m, n) of the map the small matrix stands for, which ``min_size`` applies to.
    """

    name: str
    kind: str  # linear | embedding | conv1d | conv2d | conv3d
    rule: str
    sources: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    matrix_shape: tuple[int, int]
    n_matrices: int
    build: Recipe
    part: str | None = None
    conv_view: str | None = None
    transposed: bool = False
    group: str | None = None
    notes: tuple[str, ...] = ()
    base_sources: tuple[str, ...] = ()
    subtract_base: bool = False
    base_names: tuple[str, ...] = ()  # with subtract_base: each source's name in the base
    farms: bool = True
    extent: tuple[int, int] | None = None  # (m, n) of the map, when not matrix_shape (dW)


@dataclass(frozen=True)
class Skip:
    """A tensor (or a part of one) that is not analysed, and the true reason."""

    name: str
    shape: tuple[int, ...]
    reason: str
    rule: str = ""


@dataclass
class Outcome:
    """What a rule says about a tensor: plans, skips, and the other tensors it consumed."""

    plans: list[MatrixPlan] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    claims: tuple[str, ...] = ()


def as_stack(weight: Array, plan: MatrixPlan) -> Array:
    """A built weight as the (n_matrices, m, n) stack the spectra are computed on.

    2-D: (1, m, n). Conv kernel (out, in, *k): ``slices`` -> (prod(k), out, in), one matrix per
    kernel position; ``unfold`` -> (1, out, in * prod(k)), the im2col matrix. ``weight`` is a
    numpy array or a torch tensor; the stack is in the same library.

    Returns:
        The stack, a view of ``weight`` where possible (same dtype and device).
    """
    xp = namespace(weight)
    if weight.ndim == 2:
        return xp.expand_dims(weight, axis=0)
    out_c, in_c = weight.shape[0], weight.shape[1]
    if plan.conv_view == "unfold":
        return xp.reshape(weight, (1, out_c, -1))
    return xp.permute_dims(xp.reshape(weight, (out_c, in_c, -1)), (2, 0, 1))
