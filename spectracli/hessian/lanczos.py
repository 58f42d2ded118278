"""Extreme eigenpairs of a symmetric operator by thick-restart Lanczos.

Lanczos (1950) builds an orthonormal basis ``V`` of the Krylov space of a symmetric ``A`` and
takes the Ritz pairs ``(theta, V s)`` of the projection ``T = V^T A V``. The residual of a Ritz
pair is ``||A V s - theta V s|| = beta * |s_last|`` (beta: norm of the new direction), so it costs
no extra product. Here every new vector is orthogonalised against the whole basis twice
(classical Gram-Schmidt, "twice is enough": Giraud et al. 2005), the basis and ``T`` are float64,
and a basis that reaches ``max_basis`` vectors is shrunk to the wanted Ritz vectors plus the
residual direction (thick restart, Wu & Simon 2000), which keeps the Lanczos relation exact and
the memory bounded at ``max_basis`` float64 vectors of length ``n``.

Convergence: a wanted pair is converged when ``||A u - theta u|| <= tol * max(|theta|, floor)``,
with ``floor = ABS_FLOOR * max |Ritz value|``; the reported residual is that ratio. Since some
eigenvalue lies within ``||r||`` of ``theta`` (and within ``||r||^2 / gap``; Kato-Temple), ``tol``
bounds the relative error of each converged eigenvalue. The floor lets eigenvalues near zero (the
Hessian bulk) converge to an absolute accuracy instead of an unreachable relative one.

The solver only sees a :class:`~spectracli.hessian.linop.LinearOperator`: the Hessian, the GGN
and a dense test matrix are all operators.

Example::

    >>> import torch
    >>> from spectracli.hessian.linop import DenseOperator
    >>> a = DenseOperator(torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64)))
    >>> res = lanczos(a, k=3, tol=1e-10)
    >>> [round(x, 8) for x in res.eigenvalues]
    [100.0, 99.0, 98.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from spectracli.hessian.linop import LinearOperator, apply, check_operator

# progress(done_matvecs, max_matvecs, worst wanted residual)
LanczosProgress = Callable[[int, int, float], None]

WHICH = ("largest", "smallest", "both")
ABS_FLOOR = 1e-3
_CHUNK = 1 << 22  # elements per chunk when rotating the basis in place at a restart


@dataclass
class LanczosResult:
    """Ritz values sorted descending, their residuals (see module doc) and convergence flags."""

    eigenvalues: list[float]
    residuals: list[float]
    converged: list[bool]
    n_matvecs: int
    n_restarts: int
    max_basis: int
    which: str
    tol: float
    eigenvectors: torch.Tensor | None = field(default=None, repr=False)  # (k, n) float64

    @property
    def all_converged(self) -> bool:
        return all(self.converged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "eigenvalues": self.eigenvalues,
            "residuals": self.residuals,
            "converged": self.converged,
            "n_matvecs": self.n_matvecs,
            "n_restarts": self.n_restarts,
            "max_basis": self.max_basis,
            "which": self.which,
            "tol": self.tol,
        }


def n_wanted(k: int, which: str) -> int:
    return 2 * k if which == "both" else k


def default_max_basis(n: int, k: int, which: str, memory_bytes: float = 48 * 2**30) -> int:
    """Basis cap: room for fast convergence (2 * wanted + 10, at least 40) but at most
    ``memory_bytes`` of float64 vectors (48 GiB: 6 vectors of a 10^9-parameter model, which
    leaves 32 GB of an 80 GB GPU for the model and its HVP), and never more than ``n``."""
    want = n_wanted(k, which)
    by_memory = int(memory_bytes // (8 * n))
    return max(1, min(n, max(2 * want + 10, 40), by_memory))


def _wanted(theta: torch.Tensor, k: int, which: str) -> torch.Tensor:
    """Indices into ascending ``theta`` of the wanted Ritz values."""
    m = theta.numel()
    if which == "largest":
        return torch.arange(max(0, m - k), m)
    if which == "smallest":
        return torch.arange(0, min(k, m))
    if 2 * k >= m:
        return torch.arange(m)
    return torch.cat([torch.arange(0, k), torch.arange(m - k, m)])


def _keep_for_restart(theta: torch.Tensor, k: int, which: str, n_keep: int) -> torch.Tensor:
    """Wanted indices plus their interior neighbours, ``n_keep`` in all (sorted ascending)."""
    m = theta.numel()
    if which == "largest":
        return torch.arange(m - n_keep, m)
    if which == "smallest":
        return torch.arange(0, n_keep)
    lo = n_keep // 2
    return torch.cat([torch.arange(0, lo), torch.arange(m - (n_keep - lo), m)])


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove the ``basis`` components of ``w`` in place (two passes); return the coefficients."""
    h = basis @ w
    w -= basis.T @ h
    h2 = basis @ w
    w -= basis.T @ h2
    return h + h2


def _random_unit(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    v = torch.randn(n, generator=gen, dtype=torch.float64).to(device)
    return v / v.norm()


def lanczos(
    op: LinearOperator,
    k: int = 5,
    *,
    which: str = "largest",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    max_basis: int | None = None,
    v0: torch.Tensor | None = None,
    seed: int = 0,
    return_vectors: bool = False,
    progress: LanczosProgress | None = None,
) -> LanczosResult:
    """Top (``largest``), bottom (``smallest``) or both ``k`` eigenpairs of the symmetric
    operator ``op`` (``op.n``-dimensional; basis and ``T`` in float64 on ``op.device``).

    Stops when every wanted pair meets ``tol``, when the Krylov space is invariant (all Ritz
    pairs exact), or after ``max_matvecs`` products (default ``max(300, 20 * wanted)``), in which
    case the unconverged pairs are flagged. ``v0`` warm-starts (e.g. the previous top
    eigenvector); otherwise a seeded Gaussian vector.
    """
    op = check_operator(op)
    n, device = op.n, torch.device(op.device)
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    want = min(n_wanted(k, which), n)
    if which == "both" and 2 * k > n:
        k = (n + 1) // 2
    else:
        k = min(k, n)
    m = max_basis if max_basis is not None else default_max_basis(n, k, which)
    m = min(m, n)
    if m < min(want + 1, n):
        raise ValueError(
            f"max_basis {m} is too small for {want} wanted eigenpairs (need at least {want + 1})"
        )
    max_matvecs = max_matvecs if max_matvecs is not None else max(300, 20 * want)
    gen = torch.Generator().manual_seed(seed)

    basis = torch.zeros(m, n, dtype=torch.float64, device=device)
    proj = torch.zeros(m, m, dtype=torch.float64)
    if v0 is None:
        basis[0] = _random_unit(n, gen, device)
    else:
        v = v0.detach().to(device, torch.float64).reshape(-1).clone()
        if v.numel() != n or not torch.isfinite(v).all() or float(v.norm()) == 0.0:
            raise ValueError(f"v0 must be a finite nonzero vector of length {n}")
        basis[0] = v / v.norm()

    j = 0  # basis[:j] have their column of proj; basis[j] is the next to multiply
    n_mv = 0
    n_restarts = 0
    theta = torch.zeros(0, dtype=torch.float64)
    s = torch.zeros(0, 0, dtype=torch.float64)
    beta = 0.0
    wanted = torch.zeros(0, dtype=torch.long)
    rel = torch.zeros(0, dtype=torch.float64)

    while True:
        w = apply(op, basis[j])
        n_mv += 1
        h = _orthogonalise(w, basis[: j + 1])
        proj[: j + 1, j] = h.cpu()
        proj[j, : j + 1] = h.cpu()
        beta = float(w.norm())
        j += 1

        theta, s = torch.linalg.eigh(proj[:j, :j])
        wanted = _wanted(theta, k, which)
        scale = float(theta.abs().max()) if j else 0.0
        res = beta * s[-1, :].abs()
        floor = max(ABS_FLOOR * scale, torch.finfo(torch.float64).tiny)
        denom = torch.clamp(theta.abs(), min=floor)
        rel = res / denom
        worst = float(rel[wanted].max()) if wanted.numel() else float("inf")
        if progress is not None:
            progress(n_mv, max_matvecs, worst)

        invariant = beta <= 1e-13 * max(scale, 1e-300)
        done = wanted.numel() >= want and worst <= tol
        if done or j >= n or n_mv >= max_matvecs:
            break
        if invariant:
            # The Krylov space is exhausted before enough pairs were found: continue the basis
            # with a fresh random direction (its coupling to the basis is zero).
            w = _random_unit(n, gen, device)
            _orthogonalise(w, basis[:j])
            beta_new = float(w.norm())
            if beta_new == 0.0:
                break
            w /= beta_new
            beta = 0.0
        else:
            w /= beta
        if j < m:
            basis[j] = w
            continue

        # Thick restart: rotate the basis onto the kept Ritz vectors (chunks: bounded memory),
        # append the residual direction; T becomes diag(theta_keep) with an arrow row.
        n_keep = min(m - 1, want + max(1, (m - want) // 2))
        keep = _keep_for_restart(theta, k, which, n_keep)
        rot = s[:, keep].to(device)  # (j, n_keep)
        for start in range(0, n, max(1, _CHUNK // m)):
            stop = min(n, start + max(1, _CHUNK // m))
            basis[:n_keep, start:stop] = rot.T @ basis[:j, start:stop]
        basis[n_keep] = w
        basis[n_keep + 1 :].zero_()
        proj.zero_()
        proj[:n_keep, :n_keep] = torch.diag(theta[keep])
        coupling = beta * s[-1, keep]
        proj[:n_keep, n_keep] = coupling
        proj[n_keep, :n_keep] = coupling
        j = n_keep
        n_restarts += 1

    order = wanted.flip(0)  # descending eigenvalues
    vectors = None
    if return_vectors:
        vectors = s[:, order].T.to(device) @ basis[:j]
    return LanczosResult(
        eigenvalues=[float(theta[i]) for i in order],
        residuals=[float(rel[i]) for i in order],
        converged=[bool(rel[i] <= tol) for i in order],
        n_matvecs=n_mv,
        n_restarts=n_restarts,
        max_basis=m,
        which=which,
        tol=tol,
        eigenvectors=vectors,
    )
