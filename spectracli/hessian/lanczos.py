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

Multiplicities: a Krylov space grown from one vector holds one direction per eigenspace, so a
single run returns the top-k *distinct* eigenvalues (for ``a, a, a, b`` it returns ``a, b, c,
d``). After a run converges, its wanted pairs are *locked* and a new run starts from a fresh
random vector orthogonal to them (deflated restart; the locked vectors stay in every
orthogonalisation, and their coupling ``L^T A V`` enters the residuals, which stay the true
``||A u - theta u||``). A run that finds a converged pair beyond the current k-th value (by more
than both error bars) adds it to the locked set; only when a run finds nothing new are the pairs
flagged converged (``multiplicity_verified``). A checking run ends once its extreme pair lies,
with its error bar, inside the locked values and either has a relative residual <= ``VERIFY_TOL``
or has run long enough that a missed eigenvalue beyond them would have shown with probability
>= ``1 - KW_DELTA`` (Kuczynski & Wozniakowski 1992, for a random start). ``deflation_matvecs``
reports the products these runs cost.

Warm start: ``v0`` of shape ``(n,)``, or a block of previous Ritz vectors ``(n, b)`` (or the
``(b, n)`` rows of :attr:`LanczosResult.eigenvectors`) whose sum starts the first run (Li et
al., NeurIPS 2024: eigenvectors drift slowly during training).

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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from spectracli.hessian.linop import LinearOperator, apply, check_operator
from spectracli.options import Which

# progress(done_matvecs, max_matvecs, worst wanted residual)
LanczosProgress = Callable[[int, int, float], None]

WHICH = Which.values()  # defined once, in spectracli.options
ABS_FLOOR = 1e-3
# A deflated run may stop once its extreme pairs are within this relative residual and inside
# the locked range (see _nothing_new).
VERIFY_TOL = 1e-2
KW_DELTA = 1e-3
_CHUNK = 1 << 22  # elements per chunk when rotating the basis in place at a restart


@dataclass
class LanczosResult:
    """Ritz values sorted descending, their residuals (see module doc) and convergence flags.

    ``converged[i]`` is true when the residual meets ``tol`` and (with ``deflate``) a deflated
    restart found no further eigenvalue in the wanted range, so the values are the extreme ones
    counted with multiplicity (``multiplicity_verified``). ``eigenvectors``: ``(k, n)`` float64
    Ritz vectors (rows, same order) when asked for; pass them back as ``v0`` to warm-start.
    """

    eigenvalues: list[float]
    residuals: list[float]
    converged: list[bool]
    n_matvecs: int
    n_restarts: int
    max_basis: int
    which: str
    tol: float
    eigenvectors: torch.Tensor | None = field(default=None, repr=False)  # (k, n) float64
    multiplicity_verified: bool = False
    n_deflations: int = 0
    deflation_matvecs: int = 0

    @property
    def all_converged(self) -> bool:
        """Whether every returned pair met ``tol`` (and, with deflation, multiplicities)."""
        return all(self.converged)

    def condition_number(self) -> tuple[float | None, str | None]:
        """``lambda_max / lambda_min`` from converged extreme pairs, else ``(None, reason)``."""
        return condition_number(self.eigenvalues, self.converged, self.which)

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields (docs/hessian.md); the eigenvectors are not part of it."""
        return {
            "eigenvalues": self.eigenvalues,
            "residuals": self.residuals,
            "converged": self.converged,
            "n_matvecs": self.n_matvecs,
            "n_restarts": self.n_restarts,
            "max_basis": self.max_basis,
            "which": self.which,
            "tol": self.tol,
            "multiplicity_verified": self.multiplicity_verified,
            "n_deflations": self.n_deflations,
            "deflation_matvecs": self.deflation_matvecs,
        }


def condition_number(
    eigenvalues: list[float], converged: list[bool], which: str
) -> tuple[float | None, str | None]:
    """``lambda_max / lambda_min`` of descending ``eigenvalues`` and the reason when undefined.

    Defined only when both ends were computed (``which="both"``), both extreme pairs converged
    and ``lambda_min > 0``; otherwise ``(None, reason)`` with the reason in words.

    Args:
        eigenvalues: descending, as in :class:`LanczosResult` (top-k then bottom-k for both).
        converged: one flag per eigenvalue.
        which: the ends that were computed: ``largest``, ``smallest`` or ``both``.

    Returns:
        ``(eigenvalues[0] / eigenvalues[-1], None)``, or ``(None, reason)``.
    """
    if which != "both":
        return None, f"needs both ends of the spectrum: which=both, got {which}"
    if not eigenvalues:
        return None, "no eigenvalues"
    if not (converged[0] and converged[-1]):
        return None, "the extreme eigenpairs did not converge"
    lam_max, lam_min = eigenvalues[0], eigenvalues[-1]
    if lam_min <= 0:
        return None, f"lambda_min = {lam_min:.3g} <= 0: the operator is not positive definite"
    return lam_max / lam_min, None


def n_wanted(k: int, which: str) -> int:
    """Eigenpairs wanted in all: ``k``, or ``2 k`` for ``which="both"``."""
    return 2 * k if which == "both" else k


def default_max_basis(n: int, k: int, which: str, memory_bytes: float = 48 * 2**30) -> int:
    """Basis cap: room for fast convergence, bounded by memory and by ``n``.

    Room for fast convergence is ``2 * wanted + 10`` vectors (at least 40), but at most
    ``memory_bytes`` of float64 vectors (48 GiB: 6 vectors of a 10^9-parameter model, which
    leaves 32 GB of an 80 GB GPU for the model and its HVP), and never more than ``n``.

    Args:
        n: dimension of the operator (parameters).
        k: eigenpairs per wanted end.
        which: ``largest``, ``smallest`` or ``both``.
        memory_bytes: memory the float64 basis may take, in bytes.

    Returns:
        The number of basis vectors, at least 1.
    """
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
    """A unit Gaussian vector, float64, drawn on the CPU (one seed, one vector on any device)."""
    v = torch.randn(n, generator=gen, dtype=torch.float64).to(device)
    return v / v.norm()


def _combine_rows(buf: torch.Tensor, src: int, coeff: torch.Tensor, dst: int) -> None:
    """``buf[dst:dst + c] = coeff.T @ buf[src:src + r]`` in place, by column chunks.

    ``coeff`` is ``(r, c)`` and ``dst <= src``; chunks keep the extra memory bounded.
    """
    r, c = coeff.shape
    coeff = coeff.to(buf.device)
    step = max(1, _CHUNK // max(r, 1))
    for start in range(0, buf.shape[1], step):
        stop = min(buf.shape[1], start + step)
        buf[dst : dst + c, start:stop] = coeff.T @ buf[src : src + r, start:stop]


@dataclass
class _Run:
    """One thick-restart Lanczos run on the orthogonal complement of the locked vectors.

    ``buf[:n_locked]`` are the locked vectors ``L``, ``buf[n_locked:n_locked + j]`` the basis
    ``V``; ``proj[:j, :j] = V^T A V`` and ``cross[:, :j] = L^T A V``; ``beta`` is the norm of the
    last new direction.
    """

    buf: torch.Tensor
    n_locked: int
    k: int
    which: str
    proj: torch.Tensor
    cross: torch.Tensor
    j: int = 0
    beta: float = 0.0
    n_restarts: int = 0

    @property
    def basis(self) -> torch.Tensor:
        """The rows of ``buf`` after the locked vectors (the basis ``V`` and its free room)."""
        return self.buf[self.n_locked :]

    @property
    def dim(self) -> int:
        """Dimension of the complement of the locked vectors."""
        return self.buf.shape[1] - self.n_locked

    @property
    def want(self) -> int:
        """Pairs this run wants, at most the dimension of the complement."""
        return min(n_wanted(self.k, self.which), self.dim)


@dataclass
class _Ritz:
    """Ritz pairs of a run: values, vectors in the basis, residuals, the wanted indices.

    ``theta`` is ascending, ``s`` holds the vectors as columns in the basis, ``res`` and ``rel``
    the absolute and relative residuals.
    """

    theta: torch.Tensor
    s: torch.Tensor
    res: torch.Tensor
    rel: torch.Tensor
    wanted: torch.Tensor
    scale: float

    def worst(self) -> float:
        """The largest relative residual of the wanted pairs (inf when none is wanted yet)."""
        return float(self.rel[self.wanted].max()) if self.wanted.numel() else float("inf")


@dataclass
class _Locked:
    """Converged pairs kept so far: values, absolute residuals (rows of ``buf`` in order)."""

    values: list[float] = field(default_factory=list)
    res: list[float] = field(default_factory=list)


def _start_run(
    buf: torch.Tensor, n_locked: int, k: int, which: str, start: torch.Tensor
) -> _Run | None:
    """A run whose first basis vector is ``start`` made orthogonal to the locked vectors.

    Returns:
        The run with ``basis[0]`` set, or ``None`` when nothing of ``start`` is left (the
        locked vectors span the space).
    """
    room = buf.shape[0] - n_locked
    run = _Run(buf, n_locked, k, which,
               proj=torch.zeros(room, room, dtype=torch.float64),
               cross=torch.zeros(n_locked, room, dtype=torch.float64))
    v = start.clone()
    if n_locked:
        _orthogonalise(v, buf[:n_locked])
    norm = float(v.norm())
    if run.dim < 1 or norm <= 1e-8 * float(start.norm()):
        return None
    run.basis[0] = v / norm
    return run


def _expand(run: _Run, op: LinearOperator) -> torch.Tensor:
    """One product: ``A`` times the last basis vector, orthogonalised.

    The product is orthogonalised against the locked vectors and the basis (its coefficients
    fill ``cross`` and ``proj``); ``run.beta`` becomes its norm.

    Returns:
        The new direction, not yet normalised, ``(n,)`` float64.
    """
    j, lk = run.j, run.n_locked
    w = apply(op, run.basis[j])
    h = _orthogonalise(w, run.buf[: lk + j + 1]).cpu()
    run.cross[:, j] = h[:lk]
    run.proj[: j + 1, j] = h[lk:]
    run.proj[j, : j + 1] = h[lk:]
    run.beta = float(w.norm())
    run.j += 1
    return w


def _ritz(run: _Run, scale_floor: float) -> _Ritz:
    """Ritz pairs of ``proj`` and their true residuals.

    ``||A u - theta u||^2 = (beta s_last)^2 + ||L^T A u||^2``, relative to
    ``max(|theta|, ABS_FLOOR * scale)``.

    Returns:
        The Ritz pairs, values ascending, with the indices of the wanted ones.
    """
    j = run.j
    theta, s = torch.linalg.eigh(run.proj[:j, :j])
    res2 = (run.beta * s[-1, :]) ** 2
    if run.n_locked:
        res2 = res2 + (run.cross[:, :j] @ s).pow(2).sum(0)
    res = res2.sqrt()
    scale = max(float(theta.abs().max()), scale_floor)
    floor = max(ABS_FLOOR * scale, torch.finfo(torch.float64).tiny)
    rel = res / torch.clamp(theta.abs(), min=floor)
    return _Ritz(theta, s, res, rel, _wanted(theta, run.k, run.which), scale)


def _next_direction(run: _Run, w: torch.Tensor, scale: float, gen: torch.Generator) -> bool:
    """Normalise ``w`` in place as the next basis direction.

    On an invariant subspace (``beta`` ~ 0) the basis continues with a fresh random direction (its
    coupling is zero).

    Returns:
        False when no direction is left (the basis spans the space), else True.
    """
    if run.beta > 1e-13 * max(scale, 1e-300):
        w /= run.beta
        return True
    fresh = _random_unit(w.numel(), gen, w.device)
    _orthogonalise(fresh, run.buf[: run.n_locked + run.j])
    norm = float(fresh.norm())
    if norm == 0.0:
        return False
    w.copy_(fresh / norm)
    run.beta = 0.0
    return True


def _thick_restart(run: _Run, ritz: _Ritz, w: torch.Tensor) -> None:
    """Shrink a full basis to the wanted Ritz vectors, their neighbours and ``w``.

    ``w`` is the new direction; ``T`` becomes ``diag(theta_keep)`` with an arrow row (Wu &
    Simon 2000, thick-restart Lanczos).
    """
    room = run.buf.shape[0] - run.n_locked
    n_keep = min(room - 1, run.want + max(1, (room - run.want) // 2))
    keep = _keep_for_restart(ritz.theta, run.k, run.which, n_keep)
    rot = ritz.s[:, keep]
    _combine_rows(run.buf, run.n_locked, rot, run.n_locked)
    run.basis[n_keep] = w
    run.proj.zero_()
    run.proj[:n_keep, :n_keep] = torch.diag(ritz.theta[keep])
    coupling = run.beta * ritz.s[-1, keep]
    run.proj[:n_keep, n_keep] = coupling
    run.proj[n_keep, :n_keep] = coupling
    if run.n_locked:
        run.cross[:, :n_keep] = run.cross[:, : run.j] @ rot
        run.cross[:, n_keep:] = 0.0
    run.j = n_keep
    run.n_restarts += 1


@dataclass
class _Budget:
    """Products done and allowed, and the progress callback."""

    limit: int
    done: int = 0
    progress: LanczosProgress | None = None

    def tick(self, worst: float) -> None:
        """Count one product and report it with the worst wanted residual ``worst``."""
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.limit, worst)


def _solve(
    op: LinearOperator, run: _Run, tol: float, budget: _Budget, gen: torch.Generator,
    scale_floor: float = 0.0, settled: Callable[[_Ritz, _Run], bool] | None = None,
) -> tuple[_Ritz, bool]:
    """Expand, take Ritz pairs, restart when full, until the run settles or the budget ends.

    The run settles when the wanted pairs meet ``tol`` (or ``settled(ritz)``) or the complement
    is exhausted.

    Returns:
        The last Ritz pairs, and whether the run settled (False: stopped by the budget).
    """
    room = run.buf.shape[0] - run.n_locked
    while True:
        w = _expand(run, op)
        ritz = _ritz(run, scale_floor)
        worst = ritz.worst()
        budget.tick(worst)
        if ritz.wanted.numel() >= run.want and worst <= tol:
            return ritz, True
        if settled is not None and settled(ritz, run):
            return ritz, True
        if run.j >= run.dim:
            return ritz, True
        if budget.done >= budget.limit:
            return ritz, False
        if not _next_direction(run, w, ritz.scale, gen):
            return ritz, True
        if run.j < room:
            run.basis[run.j] = w
        else:
            _thick_restart(run, ritz, w)


def _select(values: list[float], k: int, which: str) -> list[int]:
    """Indices of the wanted values (the k extreme ones per end), in descending value order."""
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=True)
    if which == "largest":
        return order[:k]
    if which == "smallest":
        return order[-k:] if len(order) > k else order
    return order if len(order) <= 2 * k else order[:k] + order[-k:]


def _edges(locked: _Locked, k: int, which: str) -> tuple[float, float]:
    """The k-th locked value of each wanted end, widened by its error bar.

    Returns:
        ``(top, bottom)``: a value above ``top`` (or below ``bottom``) is new; +inf / -inf for
        an end not wanted, and ``(-inf, inf)`` while the locked set is not yet full.
    """
    vals = locked.values
    top, bottom = float("inf"), float("-inf")
    if len(vals) < n_wanted(k, which):
        return float("-inf"), float("inf")
    order = sorted(range(len(vals)), key=lambda i: vals[i])
    if which in ("largest", "both"):
        top = vals[order[-k]] + locked.res[order[-k]]
    if which in ("smallest", "both"):
        bottom = vals[order[k - 1]] - locked.res[order[k - 1]]
    return top, bottom


def _extends(locked: _Locked, value: float, err: float, k: int, which: str) -> bool:
    """Whether ``value`` (+- ``err``) lies beyond the k-th locked value of a wanted end.

    Returns:
        True when it lies beyond by more than both error bars (a new eigenvalue, or one more
        copy of a repeated one).
    """
    top, bottom = _edges(locked, k, which)
    return value - err > top or value + err < bottom


def _kw_failure(j: int, dim: int, eps: float) -> float:
    """A bound on the chance that ``j`` Lanczos steps missed the top by ``eps``.

    Kuczynski & Wozniakowski (1992), Thm 4.2(a) shifted to an indefinite spectrum: the
    probability that ``j`` Lanczos steps from a random start leave the top Ritz value more than
    ``eps * (lambda_max - lambda_min)`` below ``lambda_max``.

    Returns:
        ``min(1, 1.648 sqrt(dim) exp(-sqrt(eps) (2j - 1)))``; 1 when ``eps <= 0`` or ``j < 1``.
    """
    if eps <= 0 or j < 1:
        return 1.0
    return min(1.0, 1.648 * math.sqrt(dim) * math.exp(-math.sqrt(eps) * (2 * j - 1)))


def _nothing_new(locked: _Locked, k: int, which: str) -> Callable[[_Ritz, _Run], bool]:
    """Early end of a deflated run, when converging further would not change the answer.

    Each extreme Ritz pair of the complement lies, with its error bar, inside the locked k-th
    values, and either its residual is within ``VERIFY_TOL`` or a missed eigenvalue beyond the
    locked ones would have shown by now with probability ``1 - KW_DELTA`` (:func:`_kw_failure`,
    spread from the Ritz and locked values).

    Returns:
        ``settled(ritz, run)`` for :func:`_solve`.
    """
    top, bottom = _edges(locked, k, which)

    def settled(ritz: _Ritz, run: _Run) -> bool:
        if ritz.wanted.numel() == 0:
            return False
        hi = max([float(ritz.theta[-1] + ritz.res[-1])] + locked.values)
        lo = min([float(ritz.theta[0] - ritz.res[0])] + locked.values)
        spread = max(hi - lo, torch.finfo(torch.float64).tiny)
        for i in ritz.wanted.tolist():
            value, err = float(ritz.theta[i]), float(ritz.res[i])
            if value + err >= top or value - err <= bottom:
                return False
            gap = min(top - value, value - bottom)
            if float(ritz.rel[i]) > VERIFY_TOL and (
                _kw_failure(run.j, run.dim, gap / spread) > KW_DELTA
            ):
                return False
        return True

    return settled


def _lock(
    run: _Run, ritz: _Ritz, locked: _Locked, idx: list[int], k: int, which: str
) -> _Locked:
    """Merge the run's Ritz pairs ``idx`` into the locked set and keep the wanted ones.

    Returns:
        The new locked set, values descending; the rows of ``buf`` are rewritten in place to
        match.
    """
    n_old = run.n_locked
    values = locked.values + [float(ritz.theta[i]) for i in idx]
    res = locked.res + [float(ritz.res[i]) for i in idx]
    keep = _select(values, k, which)
    coeff = torch.zeros(n_old + run.j, len(keep), dtype=torch.float64)
    for col, i in enumerate(keep):
        if i < n_old:
            coeff[i, col] = 1.0
        else:
            coeff[n_old:, col] = ritz.s[:, idx[i - n_old]]
    _combine_rows(run.buf, 0, coeff, 0)
    return _Locked([values[i] for i in keep], [res[i] for i in keep])


@dataclass
class _Check:
    """Outcome of the deflated restarts.

    The locked pairs, whether a run found nothing new (``verified``), runs and thick restarts
    spent, and the largest |Ritz value| seen.
    """

    locked: _Locked
    verified: bool = False
    n_deflations: int = 0
    n_restarts: int = 0
    scale: float = 0.0


def _check_multiplicities(
    op: LinearOperator, buf: torch.Tensor, locked: _Locked, k: int, which: str, tol: float,
    budget: _Budget, gen: torch.Generator, scale: float,
) -> _Check:
    """Deflated restarts (module doc) until one finds nothing new or resources run out.

    Runs start from fresh random vectors orthogonal to the locked pairs, each locking what it
    finds beyond the k-th values, until one finds nothing new (verified), or the room or the
    budget runs out (not verified).

    Returns:
        The locked pairs and the outcome.
    """
    check = _Check(locked, scale=scale)
    m, n = buf.shape
    while True:
        n_locked = len(check.locked.values)
        # One pair per wanted end of the complement decides whether anything is missing.
        run = _start_run(buf, n_locked, 1, which, _random_unit(n, gen, buf.device))
        if run is None or m - n_locked < min(n_wanted(1, which) + 1, run.dim):
            check.verified = run is None
            return check
        check.n_deflations += 1
        ritz, settled = _solve(op, run, tol, budget, gen, scale_floor=check.scale,
                               settled=_nothing_new(check.locked, k, which))
        check.n_restarts += run.n_restarts
        check.scale = max(check.scale, ritz.scale)
        if not settled:
            return check
        new = [i for i in range(ritz.theta.numel()) if float(ritz.rel[i]) <= tol
               and _extends(check.locked, float(ritz.theta[i]), float(ritz.res[i]), k, which)]
        if not new:
            check.verified = True
            return check
        check.locked = _lock(run, ritz, check.locked, new, k, which)


def _start_vector(v0: torch.Tensor | None, n: int, gen: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """The first run's start: ``v0``, else a seeded Gaussian.

    ``v0`` is a vector, or a block of previous Ritz vectors (summed).

    Returns:
        A unit float64 vector ``(n,)`` on ``device``.

    Raises:
        ValueError: when ``v0`` is not a finite nonzero vector of length ``n`` or a block
            ``(n, b)`` / ``(b, n)`` of them.
    """
    if v0 is None:
        return _random_unit(n, gen, device)
    v = v0.detach().to(device, torch.float64)
    if v.dim() == 2 and v.shape[0] != n and v.shape[1] == n:
        v = v.T  # the (b, n) rows of LanczosResult.eigenvectors
    if v.dim() == 2 and v.shape[0] == n:
        v = v.sum(dim=1)
    v = v.reshape(-1).clone()
    if v.numel() != n or not torch.isfinite(v).all() or float(v.norm()) == 0.0:
        raise ValueError(
            f"v0 must be a finite nonzero vector of length {n} or a block (n, b) of them, got "
            f"shape {tuple(v0.shape)}"
        )
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
    deflate: bool = True,
    return_vectors: bool = False,
    progress: LanczosProgress | None = None,
) -> LanczosResult:
    """Top (``largest``), bottom (``smallest``) or both ``k`` eigenpairs of a symmetric operator.

    ``op`` is ``op.n``-dimensional; the basis and ``T`` are float64 on ``op.device``.

    Args:
        op: the operator (:class:`~spectracli.hessian.linop.LinearOperator`).
        k: eigenpairs per wanted end.
        which: ``largest``, ``smallest`` or ``both`` (``k`` at each end).
        tol: relative residual at which a pair is converged (module doc).
        max_matvecs: product budget, deflated restarts included (default
            ``max(300, 20 * wanted)``); pairs left unconverged are flagged.
        max_basis: basis vectors kept (default :func:`default_max_basis`); locked vectors
            share this memory, and the multiplicity check needs ``wanted + 2`` of them
            (``wanted + 3`` for ``both``), else it is reported unverified.
        v0: warm start: a vector ``(n,)`` or previous Ritz vectors ``(n, b)`` / ``(b, n)``;
            otherwise a seeded Gaussian vector.
        seed: seed of the random start and of the deflated restarts.
        deflate: verify multiplicities by deflated restarts (module doc); without it the
            values are the extreme *distinct* ones the Krylov space saw and
            ``multiplicity_verified`` is false.
        return_vectors: keep the Ritz vectors (``eigenvectors``, ``(k, n)`` float64).
        progress: ``progress(products done, budget, worst wanted residual)``.

    Returns:
        :class:`LanczosResult`, eigenvalues descending.

    Raises:
        TypeError: when ``op`` is not a LinearOperator.
        ValueError: for invalid ``which``, ``k``, ``tol``, ``max_basis`` or ``v0``.
        FloatingPointError: when a product is not finite.
    """
    op = check_operator(op)
    n, device = op.n, torch.device(op.device)
    which = Which.check(which, "which")  # SpectraError (a ValueError) in the options' words
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    want = min(n_wanted(k, which), n)
    k = (n + 1) // 2 if which == "both" and 2 * k > n else min(k, n)
    m = max_basis if max_basis is not None else default_max_basis(n, k, which)
    m = min(m, n)
    if m < min(want + 1, n):
        raise ValueError(
            f"max_basis {m} is too small for {want} wanted eigenpairs (need at least {want + 1})"
        )
    budget = _Budget(max_matvecs if max_matvecs is not None else max(300, 20 * want),
                     progress=progress)
    gen = torch.Generator().manual_seed(seed)
    buf = torch.zeros(m, n, dtype=torch.float64, device=device)
    run = _start_run(buf, 0, k, which, _start_vector(v0, n, gen, device))
    assert run is not None
    ritz, settled = _solve(op, run, tol, budget, gen)
    n_restarts = run.n_restarts
    first_matvecs = budget.done
    # A basis spanning the whole space holds every eigenvalue with its multiplicity.
    if run.j >= n or not (deflate and settled and ritz.worst() <= tol):
        return _result_from_run(run, ritz, k, which, tol, m, budget.done, n_restarts,
                                return_vectors)
    locked = _lock(run, ritz, _Locked(), ritz.wanted.tolist(), k, which)
    check = _check_multiplicities(op, buf, locked, k, which, tol, budget, gen, ritz.scale)
    locked, scale = check.locked, check.scale
    floor = ABS_FLOOR * scale
    rel = [r / max(abs(v), floor, torch.finfo(torch.float64).tiny)
           for v, r in zip(locked.values, locked.res, strict=True)]
    return LanczosResult(
        eigenvalues=list(locked.values),
        residuals=rel,
        converged=[check.verified and r <= tol for r in rel],
        n_matvecs=budget.done,
        n_restarts=n_restarts + check.n_restarts,
        max_basis=m,
        which=which,
        tol=tol,
        eigenvectors=buf[: len(locked.values)].clone() if return_vectors else None,
        multiplicity_verified=check.verified,
        n_deflations=check.n_deflations,
        deflation_matvecs=budget.done - first_matvecs,
    )


def _result_from_run(
    run: _Run, ritz: _Ritz, k: int, which: str, tol: float, m: int, n_matvecs: int,
    n_restarts: int, return_vectors: bool,
) -> LanczosResult:
    """The result of a single run (no deflated restarts: budget spent, or ``deflate=False``)."""
    order = ritz.wanted.flip(0)  # descending eigenvalues
    vectors = None
    if return_vectors:
        vectors = ritz.s[:, order].T.to(run.buf.device) @ run.basis[: run.j]
    exhausted = run.j >= run.buf.shape[1]
    return LanczosResult(
        eigenvalues=[float(ritz.theta[i]) for i in order],
        residuals=[float(ritz.rel[i]) for i in order],
        converged=[bool(ritz.rel[i] <= tol) for i in order],
        n_matvecs=n_matvecs,
        n_restarts=n_restarts,
        max_basis=m,
        which=which,
        tol=tol,
        eigenvectors=vectors,
        multiplicity_verified=exhausted,
    )
