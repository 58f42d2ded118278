"""Trace of a symmetric operator by Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021).

With ``m`` products split in three: sketch ``Q = orth(A S)`` with ``m/3`` Rademacher columns
``S``, then ``tr(A) ~= tr(Q^T A Q) + mean_i g_i^T (I - QQ^T) A (I - QQ^T) g_i`` over ``m/3``
Rademacher ``g_i``. The first term is exact on the top of the spectrum, so the Hutchinson part
only sees the deflated remainder: error ``O(1/m)`` instead of ``O(1/sqrt m)``. The error bar is
the standard error of that Hutchinson mean (sample std / sqrt(probes)); the sketch term adds no
variance given ``Q``.

When ``m >= n`` the trace is computed exactly instead, as ``sum_i e_i^T A e_i`` over the ``n``
unit vectors (``n`` products, ``stderr`` 0, ``exact`` true): Hutch++ with ``n <= m < 3n``
products is still an estimate, and ``n`` products give the answer.

Memory: ``m/3`` float64 vectors of length ``n`` (one for the exact trace).

Example::

    >>> import torch
    >>> from spectracli.hessian.linop import DenseOperator
    >>> a = DenseOperator(torch.diag(torch.arange(1.0, 201.0, dtype=torch.float64)))
    >>> est = hutchpp(a, n_matvecs=60)
    >>> abs(est.estimate - 20100.0) < 4 * est.stderr + 1e-6
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from spectracli.hessian.linop import LinearOperator, apply, check_operator


@dataclass
class TraceEstimate:
    """Hutch++ trace: ``estimate`` +- ``stderr`` (one standard error) from ``n_matvecs``."""

    estimate: float
    stderr: float
    n_matvecs: int
    sketch_trace: float  # tr(Q^T A Q), the exact part
    n_sketch: int
    n_probes: int
    exact: bool = False  # the sum of e_i^T A e_i over all n unit vectors (n_matvecs >= n)

    def to_dict(self) -> dict[str, Any]:
        """The estimate's fields as JSON."""
        return asdict(self)


def _rademacher(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.randint(0, 2, (n,), generator=gen).to(device, torch.float64) * 2.0 - 1.0)


def hutchpp(
    op: LinearOperator,
    n_matvecs: int = 99,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> TraceEstimate:
    """Hutch++ estimate of ``tr(A)`` with ``n_matvecs`` products (module doc).

    Args:
        op: the symmetric operator (:class:`~spectracli.hessian.linop.LinearOperator`).
        n_matvecs: products in all, >= 6: ``min(n_matvecs // 3, n)`` sketch vectors, as many
            products for ``tr(Q^T A Q)``, the rest Hutchinson probes of the deflated operator;
            when ``n_matvecs >= n``, the exact trace by ``n`` unit-vector products instead.
        seed: seed of the Rademacher vectors.
        progress: ``progress(products done, products in all)``.

    Returns:
        :class:`TraceEstimate` (``estimate`` +- ``stderr``, one standard error).

    Raises:
        ValueError: when ``n_matvecs < 6`` (and ``< n``).
        TypeError: when ``op`` is not a LinearOperator.
        FloatingPointError: when a product is not finite.
    """
    op = check_operator(op)
    n, device = op.n, torch.device(op.device)
    if n_matvecs >= n:
        return exact_trace(op, progress)
    if n_matvecs < 6:
        raise ValueError(f"n_matvecs must be >= 6 for Hutch++ (3 groups of >= 2), got {n_matvecs}")
    gen = torch.Generator().manual_seed(seed)
    n_sketch = min(n_matvecs // 3, n)
    n_probes = n_matvecs - 2 * n_sketch
    done = 0

    def mv(v: torch.Tensor) -> torch.Tensor:
        nonlocal done
        out = apply(op, v)
        done += 1
        if progress is not None:
            progress(done, 2 * n_sketch + n_probes)
        return out

    ys = torch.empty(n, n_sketch, dtype=torch.float64, device=device)
    for i in range(n_sketch):
        ys[:, i] = mv(_rademacher(n, gen, device))
    q, _ = torch.linalg.qr(ys)
    del ys
    sketch = 0.0
    for i in range(q.shape[1]):
        sketch += float(q[:, i] @ mv(q[:, i].clone()))
    samples = []
    for _ in range(n_probes):
        g = _rademacher(n, gen, device)
        g -= q @ (q.T @ g)
        samples.append(float(g @ mv(g)))
    vals = torch.tensor(samples, dtype=torch.float64)
    mean = float(vals.mean())
    stderr = float(vals.std(unbiased=True) / len(samples) ** 0.5) if len(samples) > 1 else 0.0
    return TraceEstimate(
        estimate=sketch + mean,
        stderr=stderr,
        n_matvecs=done,
        sketch_trace=sketch,
        n_sketch=n_sketch,
        n_probes=n_probes,
    )


def exact_trace(
    op: LinearOperator, progress: Callable[[int, int], None] | None = None
) -> TraceEstimate:
    """``tr(A) = sum_i e_i^T A e_i`` from the ``n`` unit-vector products (``stderr`` 0).

    Args:
        op: the symmetric operator.
        progress: ``progress(products done, n)``.

    Returns:
        :class:`TraceEstimate` with ``exact`` true, ``n_matvecs == n``.

    Raises:
        TypeError: when ``op`` is not a LinearOperator.
        FloatingPointError: when a product is not finite.
    """
    op = check_operator(op)
    n = op.n
    e = torch.zeros(n, dtype=torch.float64, device=torch.device(op.device))
    total = 0.0
    for i in range(n):
        e.zero_()
        e[i] = 1.0
        total += float(apply(op, e)[i])
        if progress is not None:
            progress(i + 1, n)
    return TraceEstimate(estimate=total, stderr=0.0, n_matvecs=n, sketch_trace=total,
                         n_sketch=0, n_probes=0, exact=True)
