"""The statistics of a report (the JSON's ``summary`` and ``groups``).

Means and extremes over its layers, pooled expert groups, and the norm products of
generalisation bounds.

They read the layers' dict form (:mod:`spectracli.schema`), so a fresh analysis and a saved
report give the same figures. Means of fit numbers are over fits whose status is ``ok``: a
number from a failed fit is never averaged in.

Example::

    >>> from spectracli.summary import norm_products
    >>> products = norm_products([
    ...     {"kind": "linear", "sigma_max": 10.0, "frobenius_norm": 100.0},
    ...     {"kind": "linear", "sigma_max": 0.1, "frobenius_norm": 1.0}])
    >>> products["log10_spectral_norm_product"], products["log10_frobenius_norm_product"]
    (0.0, 2.0)
"""

from __future__ import annotations

import math
from typing import Any


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _mean(values: list[Any]) -> float | None:
    vals = _finite(values)
    return sum(vals) / len(vals) if vals else None


def group_summaries(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pooled figures of the results that share a ``group`` (the experts of one stacked tensor).

    Per group, in first-member order: ``name``, ``rule``, ``n_members``, ``n_not_ok``,
    ``worst_condition_number`` (inf when any member is rank deficient), ``max_sigma_max``,
    ``mean_alpha``, ``min_alpha``, ``max_alpha``, ``mean_farms_alpha`` (over ok fits),
    ``mean_stable_rank``.

    Args:
        layers: the report's layers (dict form).

    Returns:
        One dict per group, in the order of each group's first member.
    """
    members: dict[str, list[dict[str, Any]]] = {}
    for layer in layers:
        if layer.get("group"):
            members.setdefault(layer["group"], []).append(layer)
    out = []
    for name, group in members.items():
        conds = [layer.get("condition_number") for layer in group]
        # Fit figures over ok fits only: a number from a fit that is not ok is not pooled.
        alphas = _finite([layer.get("alpha") for layer in group
                          if layer.get("fit_status") in (None, "ok")])
        out.append({
            "name": name,
            "rule": group[0].get("rule"),
            "n_members": len(group),
            "n_not_ok": sum(1 for layer in group if layer.get("status") != "ok"),
            "worst_condition_number": (
                math.inf if any(c == math.inf for c in conds if isinstance(c, float))
                else max(_finite(conds), default=None)
            ),
            "max_sigma_max": max(_finite([layer.get("sigma_max") for layer in group]),
                                 default=None),
            "mean_alpha": _mean(alphas),
            "min_alpha": min(alphas, default=None),
            "max_alpha": max(alphas, default=None),
            "mean_farms_alpha": _mean([(layer.get("farms") or {}).get("alpha")
                                       for layer in group
                                       if (layer.get("farms") or {}).get("fit_status")
                                       in (None, "ok")]),
            "mean_stable_rank": _mean([layer.get("stable_rank") for layer in group]),
        })
    return out


def summarize(layers: list[dict[str, Any]], n_skipped: int) -> dict[str, Any]:
    """Means and extremes of the main metrics over the analysed layers (finite values only)."""
    conds = [layer.get("condition_number") for layer in layers]
    finite_conds = _finite(conds)
    # Means of fit numbers are over ok fits only: a number from a failed fit is not averaged in.
    ok = [layer for layer in layers if layer.get("fit_status") == "ok"]
    farms_alpha = [
        (layer.get("farms") or {}).get("alpha") for layer in layers
        if (layer.get("farms") or {}).get("fit_status") == "ok"
    ]
    return {
        "n_layers": len(layers),
        "n_skipped": n_skipped,
        "n_fit_failed": sum(
            1 for layer in layers if not str(layer.get("fit_status") or "").startswith("ok")
        ),
        "n_rank_deficient": sum(1 for layer in layers if layer.get("rank_deficient")),
        "n_not_ok": sum(1 for layer in layers if layer.get("status") != "ok"),
        "mean_alpha": _mean([layer.get("alpha") for layer in ok]),
        "mean_farms_alpha": _mean(farms_alpha),
        "mean_alpha_weighted": _mean([layer.get("alpha_weighted") for layer in ok]),
        "mean_stable_rank": _mean([layer.get("stable_rank") for layer in layers]),
        "mean_log10_sigma_max": _mean(
            [math.log10(v) for v in _finite([layer.get("sigma_max") for layer in layers]) if v > 0]
        ),
        "max_sigma_max": max(_finite([layer.get("sigma_max") for layer in layers]), default=None),
        "max_condition_number": (
            math.inf if any(c == math.inf for c in conds if isinstance(c, float))
            else max(finite_conds, default=None)
        ),
        **norm_products(layers),
    }


def _log10_sum(values: list[Any]) -> float | None:
    """sum of log10 v over the values; -inf if any is 0, None if any is missing or none given."""
    if not values or any(not isinstance(v, (int, float)) or v != v or v < 0 for v in values):
        return None
    if any(v == 0 for v in values):
        return -math.inf
    return sum(math.log10(v) for v in values)


def norm_products(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """log10 of the products of the layers' spectral and Frobenius norms (docs/metrics.md).

    Over the analysed layers that are linear maps (every kind but ``embedding``, a lookup); a
    zero layer makes a product -inf, a layer without a value (NaN/Inf weights) makes it None.
    A conv layer contributes its largest slice norm, a lower bound on the convolution's
    operator norm. These are the products in
    the norm-based generalisation bounds of Bartlett, Foster & Telgarsky (2017) and Neyshabur,
    Bhojanapalli & Srebro (2018); None too when no layer counts.

    Args:
        layers: the report's layers (dict form).

    Returns:
        ``n_norm_product_layers``, ``log10_spectral_norm_product`` and
        ``log10_frobenius_norm_product``.
    """
    counted = [layer for layer in layers if layer.get("kind") != "embedding"]
    return {
        "n_norm_product_layers": len(counted),
        "log10_spectral_norm_product": _log10_sum([la.get("sigma_max") for la in counted]),
        "log10_frobenius_norm_product": _log10_sum([la.get("frobenius_norm") for la in counted]),
    }
