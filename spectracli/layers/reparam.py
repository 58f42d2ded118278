"""Reparametrised weights rebuilt into the effective weight before analysis.

The analysed matrix is the weight the layer really multiplies by; the result keeps the layer's
weight name (``conv.weight``) and lists the stored tensors it came from in ``sources``.

- ``reparam.weight_norm``: ``torch.nn.utils.weight_norm`` stores ``<w>_g`` and ``<w>_v``;
  W = g * v / ||v||, the norm taken over every axis where g has size 1 (all but ``dim``, 0 by
  default; over everything for ``dim=None``) (Salimans & Kingma 2016; torch ``_weight_norm``).
- ``reparam.weight_norm_parametrization``: ``torch.nn.utils.parametrizations.weight_norm``
  stores ``parametrizations.<w>.original0`` (g) and ``original1`` (v); the same W.
- ``reparam.spectral_norm``: ``torch.nn.utils.spectral_norm`` stores ``<w>_orig``, ``<w>_u``,
  ``<w>_v``; W = W_orig / sigma with sigma = u . (W_mat v), the estimate the layer uses in eval
  mode (Miyato et al. 2018; torch ``SpectralNorm.compute_weight``); W_mat is W_orig with the
  normalised axis first, flattened to 2-D.
- ``reparam.spectral_norm_parametrization``: ``parametrizations.<w>.original`` with
  ``parametrizations.<w>.0._u`` and ``._v``; the same W.
- ``reparam.parametrization_unknown``: ``parametrizations.<w>.original`` alone: the file does
  not record which parametrisation; analysed as stored, with a warning. The parametrisation's
  other tensors (e.g. orthogonal's ``0.base``) are skipped as its buffers (``reparam.buffer``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spectracli.layers.context import Context, join, split_name
from spectracli.layers.kinds import weight_plan
from spectracli.layers.plan import Cut, Info, Outcome, Recipe, Skip, TensorInfo, namespace

if TYPE_CHECKING:
    from spectracli.layers.plan import Array

_PARAM = re.compile(r"^(?P<module>.*?)\.?parametrizations\.(?P<w>[^.]+)\.(?P<rest>.+)$")


@dataclass(frozen=True)
class WeightNorm(Recipe):
    """W = g * v / ||v|| (norm over the axes where g has size 1), in float64."""

    g: str
    v: str

    def __call__(self, tensors: Mapping[str, Array]) -> Array:
        """W = g v / ||v|| from the loaded ``g`` and ``v``, in float64 (numpy or torch)."""
        xp = namespace(tensors[self.g], tensors[self.v])
        g = xp.astype(tensors[self.g], xp.float64)
        v = xp.astype(tensors[self.v], xp.float64)
        if g.ndim == 0 or math.prod(g.shape) == 1:
            return xp.reshape(g, ()) * v / xp.linalg.vector_norm(v)
        axes = tuple(d for d in range(v.ndim) if g.shape[d] == 1)
        return g * v / xp.linalg.vector_norm(v, axis=axes, keepdims=True)


@dataclass(frozen=True)
class SpectralNorm(Recipe):
    """W = W_orig / (u . W_mat v), W_mat = W_orig with axis ``dim`` first, flattened; float64."""

    weight: str
    u: str
    v: str
    dim: int = 0

    def __call__(self, tensors: Mapping[str, Array]) -> Array:
        """W_orig divided by its power-iteration estimate of sigma_max, u . W_mat v, in float64."""
        xp = namespace(tensors[self.weight], tensors[self.u], tensors[self.v])
        w = xp.astype(tensors[self.weight], xp.float64)
        u = xp.astype(tensors[self.u], xp.float64)
        v = xp.astype(tensors[self.v], xp.float64)
        mat = xp.reshape(xp.moveaxis(w, self.dim, 0), (w.shape[self.dim], -1))
        return w / xp.vecdot(u, mat @ v)


def _g_fits(g: TensorInfo, v: TensorInfo) -> bool:
    if len(g.shape) == 0 or all(d == 1 for d in g.shape):
        return True
    return len(g.shape) == len(v.shape) and all(
        a in (1, b) for a, b in zip(g.shape, v.shape, strict=True)
    ) and any(a == 1 for a in g.shape)


def _weight_norm(name: str, g: TensorInfo, v: TensorInfo, ctx: Context, rule: str) -> Outcome:
    shape = tuple(v.shape)
    plan = weight_plan(name, shape, v.dtype, ctx, rule=rule, kind_from=Info(name, shape),
                       sources=(g.name, v.name), build=WeightNorm(g.name, v.name))
    return Outcome(plans=[plan], claims=(g.name, v.name))


def _spectral(name: str, w: TensorInfo, u: TensorInfo, v: TensorInfo, ctx: Context,
              rule: str) -> Outcome | None:
    shape = tuple(w.shape)
    if len(u.shape) != 1 or len(v.shape) != 1 or len(shape) < 2:
        return None
    n = 1
    for d in shape:
        n *= d
    dims = [d for d in range(len(shape)) if shape[d] == u.shape[0] and n // shape[d] == v.shape[0]]
    if not dims:
        return None
    plan = weight_plan(name, shape, w.dtype, ctx, rule=rule, kind_from=Info(name, shape),
                       sources=(w.name, u.name, v.name),
                       build=SpectralNorm(w.name, u.name, v.name, dims[0]))
    return Outcome(plans=[plan], claims=(w.name, u.name, v.name))


def rule_reparam(t: TensorInfo, ctx: Context) -> Outcome | None:
    """All ``reparam.*`` rules (see module doc), whichever stored tensor comes first.

    Returns:
        The plan (or skip) of the reparametrised weight ``t`` belongs to, or None when ``t`` is
        not part of one.
    """
    m = _PARAM.match(t.name)
    if m is not None:
        return _parametrization(t, m, ctx)
    return _hook_reparam(t, ctx)


def _parametrization(t: TensorInfo, m: re.Match[str], ctx: Context) -> Outcome | None:
    """The ``torch.nn.utils.parametrize`` rules: weight norm, spectral norm, or unknown.

    Returns:
        The outcome for ``t`` (named ``<module>.parametrizations.<w>.<rest>``, matched as
        ``m``), or None.
    """
    tensors = ctx.tensors
    base = join(m["module"], "parametrizations." + m["w"])
    name = join(m["module"], m["w"])
    g, v = tensors.get(base + ".original0"), tensors.get(base + ".original1")
    if g is not None and v is not None and _g_fits(g, v):
        return _weight_norm(name, g, v, ctx, "reparam.weight_norm_parametrization")
    w = tensors.get(base + ".original")
    u, v1 = tensors.get(base + ".0._u"), tensors.get(base + ".0._v")
    if w is not None and u is not None and v1 is not None:
        out = _spectral(name, w, u, v1, ctx, "reparam.spectral_norm_parametrization")
        if out is not None:
            return out
    if m["rest"] not in ("original", "original0", "original1") and (
            base + ".original" in tensors or base + ".original0" in tensors):
        return Outcome(skips=[Skip(t.name, tuple(t.shape), f"a buffer of the "
                                   f"parametrisation of {name}, not a weight",
                                   "reparam.buffer")])
    if t.name == base + ".original" and len(t.shape) >= 2:
        shape = tuple(t.shape)
        plan = weight_plan(
            name, shape, t.dtype, ctx, rule="reparam.parametrization_unknown",
            kind_from=Info(name, shape), sources=(t.name,), build=Cut(t.name),
            notes=("the file stores only the parametrisation's original: analysed as "
                   "stored, the parametrisation is not applied",),
        )
        return Outcome(plans=[plan])
    return None


def _hook_reparam(t: TensorInfo, ctx: Context) -> Outcome | None:
    """The hook-based rules: ``weight_g``/``weight_v`` and ``weight_orig``/``_u``/``_v``.

    Returns:
        The outcome for ``t``, or None.
    """
    prefix, leaf = split_name(t.name)
    tensors = ctx.tensors
    for suffix in ("_g", "_v"):
        if leaf.endswith(suffix) and len(leaf) > 2:
            stem = leaf[:-2]
            g, v = tensors.get(join(prefix, stem + "_g")), tensors.get(join(prefix, stem + "_v"))
            if g is not None and v is not None and _g_fits(g, v) and len(v.shape) >= 2:
                return _weight_norm(join(prefix, stem), g, v, ctx, "reparam.weight_norm")
    for suffix in ("_orig", "_u", "_v"):
        if leaf.endswith(suffix):
            stem = leaf[: -len(suffix)]
            w = tensors.get(join(prefix, stem + "_orig"))
            u, v = tensors.get(join(prefix, stem + "_u")), tensors.get(join(prefix, stem + "_v"))
            if w is not None and u is not None and v is not None:
                return _spectral(join(prefix, stem), w, u, v, ctx, "reparam.spectral_norm")
    return None
