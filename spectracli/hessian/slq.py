"""Spectral density of a symmetric operator by stochastic Lanczos quadrature.

For ``n_probes`` random unit vectors ``q`` (Rademacher / sqrt n), ``n_steps`` Lanczos steps
(full reorthogonalisation, float64) give a tridiagonal ``T = U diag(theta) U^T``; the Gauss
quadrature nodes ``theta_j`` with weights ``tau_j = U[0, j]^2`` approximate the spectral measure
``(1/n) sum_i delta(lambda_i)`` seen from ``q`` (Golub & Meurant 2010; Ubaru, Chen & Saad 2017;
Ghorbani, Krishnan & Xiao 2019; Papyan 2020). The density is the probe average smoothed by a
Gaussian of width ``sigma`` on a uniform grid, normalised to integrate to 1 over the grid. The
quadrature is exact for polynomial moments up to degree ``2 * n_steps - 1`` in expectation, so the
first moments match ``tr(A^p) / n``.

Outliers (:func:`find_outliers`, at both ends): probe nodes within ``sigma`` of each other are
merged into clusters whose estimated eigenvalue count is ``n * mean_probe(weight)``. From the top,
clusters counting fewer than ``BULK_COUNT`` eigenvalues are outliers (an isolated eigenvalue
counts about 1); the first cluster above that count marks the bulk, and its upper node is
``bulk_edge``; the same walk from the bottom gives ``outliers_below`` and ``bulk_edge_low``
(negative curvature). Each outlier cluster is listed once per eigenvalue the probes show it
holds (:func:`outlier_multiplicity`: ``d`` times only when the count exceeds ``d - 1`` by three
standard errors; a simple eigenvalue's count scatters around 1 with variance ~2 per probe, so
``round(count)`` listed it twice once in a few runs), and ``n_outliers`` is the length of the
two lists together.

Example::

    >>> import torch
    >>> from spectracli.hessian.linop import DenseOperator
    >>> a = DenseOperator(torch.diag(torch.linspace(0.0, 1.0, 300, dtype=torch.float64)))
    >>> d = slq_density(a, n_probes=4, n_steps=20)
    >>> round(sum(d.moments(1)), 2)  # the mean eigenvalue
    0.5
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from spectracli.hessian.linop import LinearOperator, apply, check_operator

BULK_COUNT = 3.0


@dataclass
class Density:
    """SLQ result: per-probe nodes/weights, the smoothed density on a grid, outlier summary."""

    grid: list[float]
    values: list[float]
    sigma: float
    nodes: list[list[float]]  # per probe, ascending
    weights: list[list[float]]  # per probe, summing to 1
    n_probes: int
    n_steps: int
    n_matvecs: int
    bulk_edge: float | None  # upper edge of the bulk
    n_outliers: int  # len(outliers) + len(outliers_below)
    outliers: list[float]  # above the bulk, descending, one per estimated eigenvalue
    bulk_edge_low: float | None = None  # lower edge of the bulk
    outliers_below: list[float] = field(default_factory=list)  # below the bulk, ascending

    def moments(self, p: int) -> list[float]:
        """Per-probe-averaged quadrature of ``x^p``: sum over the list is ``~ tr(A^p) / n``."""
        out = []
        for nodes, weights in zip(self.nodes, self.weights, strict=True):
            out.extend(w * x**p / self.n_probes for x, w in zip(nodes, weights, strict=True))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields (``density`` of the Hessian report, docs/hessian.md)."""
        return {
            "grid": self.grid,
            "values": self.values,
            "sigma": self.sigma,
            "nodes": self.nodes,
            "weights": self.weights,
            "n_probes": self.n_probes,
            "n_steps": self.n_steps,
            "n_matvecs": self.n_matvecs,
            "bulk_edge": self.bulk_edge,
            "n_outliers": self.n_outliers,
            "outliers": self.outliers,
            "bulk_edge_low": self.bulk_edge_low,
            "outliers_below": self.outliers_below,
        }


def lanczos_tridiagonal(
    op: LinearOperator, q: torch.Tensor, n_steps: int, on_matvec: Callable[[], None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_steps`` Lanczos steps from unit ``q`` with full reorthogonalisation.

    Golub & Welsch (1969) quadrature of the spectral measure of ``q``: nodes are the eigenvalues
    of the tridiagonal ``T``, weights the squared first components of its eigenvectors.

    Args:
        op: the symmetric operator.
        q: the probe ``(n,)`` float64 (normalised here).
        n_steps: Lanczos steps (at most ``n``; fewer on an invariant subspace, where the
            quadrature is exact).
        on_matvec: called after every product (progress).

    Returns:
        ``(nodes, weights)``: Ritz values ascending and their weights (summing to 1), float64
        on the CPU.
    """
    n = q.numel()
    steps = min(n_steps, n)
    basis = torch.zeros(steps, n, dtype=torch.float64, device=q.device)
    basis[0] = q / q.norm()
    alpha = torch.zeros(steps, dtype=torch.float64)
    beta = torch.zeros(max(steps - 1, 0), dtype=torch.float64)
    m = steps
    for j in range(steps):
        w = apply(op, basis[j])
        if on_matvec is not None:
            on_matvec()
        alpha[j] = float(basis[j] @ w)
        for _ in range(2):  # full reorthogonalisation, twice
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        if j + 1 == steps:
            break
        b = float(w.norm())
        if b <= 1e-12 * max(float(alpha[: j + 1].abs().max()), 1e-300):
            m = j + 1  # invariant subspace: the quadrature is exact with j + 1 nodes
            break
        beta[j] = b
        basis[j + 1] = w / b
    t = torch.diag(alpha[:m])
    if m > 1:
        t += torch.diag(beta[: m - 1], 1) + torch.diag(beta[: m - 1], -1)
    theta, u = torch.linalg.eigh(t)
    return theta, u[0, :] ** 2


@dataclass
class Outliers:
    """Outliers of an SLQ spectrum at both ends, one entry per estimated eigenvalue.

    ``above`` (descending) lie above ``bulk_edge``, the upper edge of the bulk; ``below``
    (ascending) below ``bulk_edge_low``. A cluster of nodes estimated to hold ``c`` eigenvalues
    is listed :func:`outlier_multiplicity` times at its centre, so
    ``count == len(above) + len(below)`` is the one number every report shows.
    """

    bulk_edge: float | None
    bulk_edge_low: float | None
    above: list[float]
    below: list[float]

    @property
    def count(self) -> int:
        """Outliers at both ends, one per estimated eigenvalue."""
        return len(self.above) + len(self.below)


def _clusters(
    nodes: list[torch.Tensor], weights: list[torch.Tensor], n: int, sigma: float
) -> list[tuple[float, float, float]]:
    """Probe nodes merged when within ``sigma`` of each other.

    Returns:
        Clusters, descending: ``(top, bottom, estimated eigenvalue count)`` with the count
        ``n * mean_probe(weight)``.
    """
    all_nodes = torch.cat(nodes)
    all_w = torch.cat(weights) / len(nodes)
    order = torch.argsort(all_nodes, descending=True)
    xs, ws = all_nodes[order].tolist(), (all_w[order] * n).tolist()
    clusters: list[tuple[float, float, float]] = []
    for x, c in zip(xs, ws, strict=True):
        if clusters and clusters[-1][1] - x <= sigma:
            top, _, cnt = clusters[-1]
            clusters[-1] = (top, x, cnt + c)
        else:
            clusters.append((x, x, c))
    return clusters


def outlier_multiplicity(count: float, n_probes: int) -> int:
    """How many eigenvalues an outlier cluster of estimated ``count`` is listed as.

    A ``d``-fold eigenvalue's per-probe count ``n * sum_i (q . u_i)^2`` (Rademacher ``q / sqrt
    n``) has mean ``d`` and variance about ``2 d`` (Hutchinson's estimator on the projector onto
    the eigenspace; Avron & Toledo 2011), so the probe mean has standard error
    ``sqrt(2 d / n_probes)``. The cluster is listed ``d`` times for the largest ``d >= 1`` whose
    next-smaller multiplicity ``d - 1`` the count exceeds by three standard errors (a simple
    eigenvalue is then listed twice about once in a thousand clusters with many probes; with 5
    probes, whose mean count is chi-square(5) / 5, about once in a hundred). A repeated
    eigenvalue seen by few probes may be listed fewer times than it holds.

    Args:
        count: the cluster's estimated eigenvalue count (``n`` x mean probe weight).
        n_probes: the probes averaged (>= 1).

    Returns:
        The multiplicity, at least 1.
    """
    d = 1
    while count > d + 3.0 * (2.0 * d / max(1, n_probes)) ** 0.5:
        d += 1
    return d


def _walk(clusters: list[tuple[float, float, float]],
          n_probes: int) -> tuple[int | None, list[float]]:
    """Walk the clusters in order; those before the first holding ``BULK_COUNT`` are outliers.

    Returns:
        The index of the first bulk cluster (None: no bulk) and the outliers, one entry per
        eigenvalue (:func:`outlier_multiplicity`) at its cluster's centre.
    """
    out: list[float] = []
    for i, (top, bottom, cnt) in enumerate(clusters):
        if cnt >= BULK_COUNT:
            return i, out
        out.extend([(top + bottom) / 2] * outlier_multiplicity(cnt, n_probes))
    return None, out


def find_outliers(
    nodes: list[torch.Tensor], weights: list[torch.Tensor], n: int, sigma: float
) -> Outliers:
    """Outliers above and below the bulk of an SLQ quadrature (module doc).

    Outliers are clusters of probe nodes within ``sigma`` holding fewer than ``BULK_COUNT``
    eigenvalues, walked in from each end to the first bulk cluster (the bulk-plus-outliers
    picture of Sagun et al. 2017 and Papyan 2019). Without any bulk cluster every cluster counts
    as above.

    Args:
        nodes: per probe, the quadrature nodes (Ritz values).
        weights: per probe, their weights (summing to 1).
        n: the operator's dimension (weights times ``n`` estimate eigenvalue counts).
        sigma: the merge distance (the density's smoothing width).

    Returns:
        The outliers at both ends and the bulk edges.
    """
    clusters = _clusters(nodes, weights, n, sigma)
    first, above = _walk(clusters, len(nodes))
    if first is None:
        return Outliers(None, None, above, [])
    from_bottom = [(b, t, c) for t, b, c in reversed(clusters)]
    last, below = _walk(from_bottom, len(nodes))
    edge_low = from_bottom[last][0] if last is not None else None
    return Outliers(clusters[first][0], edge_low, above, below)


def slq_density(
    op: LinearOperator,
    n_probes: int = 10,
    n_steps: int = 30,
    *,
    grid_size: int = 512,
    sigma_rel: float = 0.01,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Density:
    """SLQ density of ``op`` from ``n_probes * n_steps`` products (module doc).

    Args:
        op: the symmetric operator (:class:`~spectracli.hessian.linop.LinearOperator`).
        n_probes: Rademacher probes (>= 1); the moments' standard error falls as
            ``1 / sqrt(n_probes)``.
        n_steps: Lanczos steps per probe (>= 1, capped at ``n``): exact moments up to degree
            ``2 * n_steps - 1``.
        grid_size: points of the density grid, spanning the nodes +- 5 sigma.
        sigma_rel: Gaussian smoothing width relative to the node range; also the distance
            within which nodes merge into one cluster for the outliers.
        seed: seed of the probes.
        progress: ``progress(products done, products in all)``.

    Returns:
        :class:`Density` with the grid, the normalised density, per-probe nodes and weights,
        and the outliers at both ends (:func:`find_outliers`).

    Raises:
        ValueError: for ``n_probes`` or ``n_steps < 1``, ``grid_size < 2`` or ``sigma_rel <= 0``.
        TypeError: when ``op`` is not a LinearOperator.
        FloatingPointError: when a product is not finite.
    """
    op = check_operator(op)
    n, device = op.n, torch.device(op.device)
    if n_probes < 1 or n_steps < 1:
        raise ValueError(f"n_probes and n_steps must be >= 1, got {n_probes} and {n_steps}")
    if grid_size < 2 or not sigma_rel > 0:
        raise ValueError(f"grid_size must be >= 2 and sigma_rel > 0, got {grid_size}, {sigma_rel}")
    gen = torch.Generator().manual_seed(seed)
    done = 0
    total = n_probes * min(n_steps, n)

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    nodes, weights = [], []
    for _ in range(n_probes):
        q = torch.randint(0, 2, (n,), generator=gen).to(device, torch.float64) * 2.0 - 1.0
        theta, tau = lanczos_tridiagonal(op, q / n**0.5, n_steps, tick)
        nodes.append(theta)
        weights.append(tau / tau.sum())
    lo = min(float(t.min()) for t in nodes)
    hi = max(float(t.max()) for t in nodes)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    sigma = sigma_rel * span
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size, dtype=torch.float64)
    dens = torch.zeros(grid_size, dtype=torch.float64)
    norm = 1.0 / (n_probes * sigma * (2 * torch.pi) ** 0.5)
    for theta, tau in zip(nodes, weights, strict=True):
        diff = (grid[:, None] - theta[None, :]) / sigma
        dens += norm * (torch.exp(-0.5 * diff**2) * tau[None, :]).sum(dim=1)
    out = find_outliers(nodes, weights, n, sigma)
    return Density(
        grid=grid.tolist(),
        values=dens.tolist(),
        sigma=sigma,
        nodes=[t.tolist() for t in nodes],
        weights=[w.tolist() for w in weights],
        n_probes=n_probes,
        n_steps=min(n_steps, n),
        n_matvecs=done,
        bulk_edge=out.bulk_edge,
        n_outliers=out.count,
        outliers=out.above,
        bulk_edge_low=out.bulk_edge_low,
        outliers_below=out.below,
    )
