"""The Hessian analysis as one library call: model + data + loss -> :class:`HessianResult`.

Example::

    >>> import torch
    >>> from spectracli.hessian import eigenpairs
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(4, 3)
    >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> res = eigenpairs(model, (x, y), "cross_entropy", k=2, dtype="float64")
    >>> len(res.eigenvalues), res.converged
    (2, [True, True])
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from spectracli import distributed
from spectracli.errors import SpectraError
from spectracli.hessian.hutchpp import TraceEstimate, hutchpp
from spectracli.hessian.inputs import BatchFn, OutputFn, collect_batches, repeat_batch
from spectracli.hessian.lanczos import LanczosResult, lanczos, n_wanted
from spectracli.hessian.losses import Loss, LossFn, resolve_loss
from spectracli.hessian.memory import available_bytes
from spectracli.hessian.operators import (
    DEFAULT_HVP_MODE,
    OPERATORS,
    CurvatureProblem,
    HessianOperator,
)
from spectracli.hessian.slq import Density, slq_density
from spectracli.hessian.state import curvature_mode
from spectracli.options import Blocks, Dtype, HvpMode, Operator, Which

# progress(stage, done, total, residual or None); stage: "lanczos" | "trace" | "density"
Progress = Callable[[str, int, int, "float | None"], None]

DEFAULT_TOL = {"float64": 1e-6, "float32": 1e-4}


@dataclass
class HessianConfig:
    """Every setting that changes a number (all of it goes into ``settings`` of the report)."""

    k: int = 5
    which: str = "largest"
    operator: str = "hessian"
    tol: float | None = None  # None: DEFAULT_TOL[dtype]
    max_hvps: int | None = None
    max_basis: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    hvp_mode: str = DEFAULT_HVP_MODE
    batch_size: int = 512
    max_samples: int | None = None
    seed: int = 0
    trace: bool = False
    trace_hvps: int = 60
    density: bool = False
    density_probes: int = 5
    density_steps: int = 24
    density_grid: int = 512
    density_sigma: float = 0.01
    lr: float | None = None
    check_determinism: bool = True
    params: list[str] | None = None  # globs of parameter names (None: every trainable one)
    blocks: str | None = None  # None | "module" | "parameter": block-diagonal per group

    def resolved_tol(self) -> float:
        """``tol``, or the default of the working dtype (1e-6 float64, 1e-4 float32)."""
        return self.tol if self.tol is not None else DEFAULT_TOL[self.dtype]

    def validate(self) -> None:
        """Check every setting; choices are stored as their plain string values.

        Raises:
            SpectraError: the first invalid setting, naming its field (a ``ValueError``).
        """
        # Choices (spectracli/options.py) are checked and stored as their plain values.
        for attr, choice in (("which", Which), ("operator", Operator), ("dtype", Dtype),
                             ("hvp_mode", HvpMode)):
            setattr(self, attr, choice.check(getattr(self, attr), attr))
        if self.blocks is not None:
            self.blocks = Blocks.check(self.blocks, "blocks")
        checks = [
            (self.k >= 1, f"k must be >= 1, got {self.k}", ("k",)),
            (self.tol is None or 0 < self.tol < 1, f"tol must be in (0, 1), got {self.tol}",
             ("tol",)),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}",
             ("batch_size",)),
            (self.trace_hvps >= 6, f"trace_hvps must be >= 6, got {self.trace_hvps}",
             ("trace_hvps",)),
            (self.density_probes >= 1 and self.density_steps >= 2,
             "density_probes must be >= 1 and density_steps >= 2",
             ("density_probes", "density_steps")),
            (self.max_hvps is None or self.max_hvps >= 1, "max_hvps must be >= 1", ("max_hvps",)),
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}", ("lr",)),
            (self.max_samples is None or self.max_samples >= 1,
             f"max_samples must be >= 1, got {self.max_samples}", ("max_samples",)),
        ]
        for ok, msg, params in checks:
            if not ok:
                raise SpectraError(msg, params=params)


@dataclass
class BlockResult:
    """One diagonal block of the Hessian (a module's or a parameter tensor's parameters)."""

    name: str
    n_params: int
    eigenvalues: list[float]
    residuals: list[float]
    converged: list[bool]
    trace: float
    trace_stderr: float
    hvp_count: int

    def to_dict(self) -> dict[str, Any]:
        """The block's fields as JSON (``blocks`` of the Hessian report)."""
        return asdict(self)


@dataclass
class HessianResult:
    """The Hessian report; ``to_dict()`` is the JSON (fields in docs/hessian.md)."""

    settings: dict[str, Any]
    operator: str
    eigenvalues: list[float]
    residuals: list[float]
    converged: list[bool]
    hvp_count: int
    n_params: int
    n_samples: int
    loss: float
    grad_norm: float
    lambda_max: float | None
    lambda_min: float | None
    condition_number: float | None
    edge_of_stability: float | None
    trace: TraceEstimate | None
    density: Density | None
    timing: dict[str, float]
    hvp_counts: dict[str, int] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    tool_version: str = ""
    created: str = ""
    eigenvectors: torch.Tensor | None = field(default=None, repr=False)
    condition_number_reason: str | None = None
    multiplicity_verified: bool = False
    # parameters the Hessian is of (names, shapes: eigenvectors split by them), and the rest
    param_names: list[str] = field(default_factory=list, repr=False)
    param_shapes: list[tuple[int, ...]] = field(default_factory=list, repr=False)
    n_frozen: int = 0
    frozen_params: list[str] = field(default_factory=list)
    n_tokens: float | None = None
    loss_weighting: str = "samples"
    blocks: list[BlockResult] | None = None

    def eigenvectors_by_name(self) -> dict[str, torch.Tensor]:
        """The Ritz vectors split by parameter (needs ``return_vectors``).

        Returns:
            ``{parameter name: (k, *shape)}`` float64 tensors; row ``i`` of each is the part of
            eigenvector ``i`` (the order of ``eigenvalues``).

        Raises:
            ValueError: when the run kept no eigenvectors.
        """
        if self.eigenvectors is None:
            raise ValueError("no eigenvectors were kept: run with return_vectors=True")
        sizes = [math.prod(s) for s in self.param_shapes]
        parts = torch.split(self.eigenvectors, sizes, dim=1)
        k = self.eigenvectors.shape[0]
        return {name: part.reshape(k, *shape).contiguous() for name, part, shape
                in zip(self.param_names, parts, self.param_shapes, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON report (fields in docs/hessian.md); eigenvectors are not in it."""
        from spectracli import __version__
        from spectracli.schema import SCHEMA_VERSION

        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "hessian",
            "tool_version": self.tool_version or __version__,
            "created": self.created,
            "source": self.source,
            "settings": self.settings,
            "operator": self.operator,
            "eigenvalues": self.eigenvalues,
            "residuals": self.residuals,
            "converged": self.converged,
            "lambda_max": self.lambda_max,
            "lambda_min": self.lambda_min,
            "hvp_count": self.hvp_count,
            "hvp_counts": self.hvp_counts,
            "n_params": self.n_params,
            "n_samples": self.n_samples,
            "n_tokens": self.n_tokens,
            "loss_weighting": self.loss_weighting,
            "n_frozen": self.n_frozen,
            "frozen_params": self.frozen_params,
            "loss": self.loss,
            "grad_norm": self.grad_norm,
            "condition_number": self.condition_number,
            "condition_number_reason": self.condition_number_reason,
            "multiplicity_verified": self.multiplicity_verified,
            "edge_of_stability": self.edge_of_stability,
            "trace": (
                {
                    "estimate": self.trace.estimate,
                    "stderr": self.trace.stderr,
                    "n_matvecs": self.trace.n_matvecs,
                    "exact": self.trace.exact,
                }
                if self.trace
                else None
            ),
            "density": self.density.to_dict() if self.density else None,
            "timing": self.timing,
            "blocks": [b.to_dict() for b in self.blocks] if self.blocks is not None else None,
        }



DataArg = Any


def as_batches(data: DataArg, batch_size: int, max_samples: int | None, seed: int) -> list[Any]:
    """Any dataset (see :func:`spectracli.hessian.inputs.collect_batches`) -> raw batches.

    Returns:
        The batches as given or cut from ``data`` (at most ``max_samples`` samples in all).

    Raises:
        SpectraError: ``data`` is of no supported kind or has no samples (a ``ValueError``).
    """
    try:
        return collect_batches(data, batch_size, max_samples, seed)
    except ValueError as exc:
        raise SpectraError(str(exc)) from None


# Basis vectors allowed to any problem (fast convergence) up to this many bytes in all; beyond,
# the cap follows k: 2 * wanted + 10.
SMALL_BASIS_BYTES = 256 * 2**20
# Within SMALL_BASIS_BYTES, the basis may hold this many vectors for the largest end, and as
# many as the default HVP budget (300: lanczos' max(300, 20 w)) for an end that includes the
# smallest, whose eigenvalues crowd near zero (a GGN's null space, the Hessian bulk) relative to
# the spread: there thick restarts lose the slowly converging directions. Measured on the digits
# MLP (50,826 parameters, GGN, --which smallest -k 2, 128 samples, float64): a 40-vector basis
# restarted 104 times and had not converged after 2,000 HVPs; a 400-vector one converged, with
# the multiplicity checked, in 540 (docs/hessian.md).
SMALL_BASIS_VECTORS = {"largest": 40, "smallest": 300, "both": 300}


def basis_cap(n: int, k: int, which: str, memory_bytes: float) -> int:
    """Lanczos basis cap (float64 vectors of length ``n``) from k, n and free memory.

    The cap is::

        m = min(n, max(2 w + 10, min(s, SMALL_BASIS_BYTES // (8 n))), memory_bytes // (4 * 8 n))

    with ``w`` wanted pairs (``k``, ``2k`` for ``both``) and ``s`` = 40 for the largest end,
    300 when the smallest is wanted (:data:`SMALL_BASIS_VECTORS`): that many vectors while they
    take at most 256 MiB (no restart in practice), otherwise ``2w + 10`` (thick restarts keep
    ``w`` Ritz vectors and half the rest, so convergence stays close), and never more than a
    quarter of the free memory. At least ``w + 1`` where memory allows (else the run is refused).

    Args:
        n: parameters (the vector length).
        k: eigenpairs per wanted end.
        which: ``largest``, ``smallest`` or ``both``.
        memory_bytes: free memory of the device, in bytes.

    Returns:
        The number of basis vectors ``m``, at least 1.
    """
    want = n_wanted(k, which)
    small = min(SMALL_BASIS_VECTORS.get(which, 40), int(SMALL_BASIS_BYTES // (8 * n)))
    by_memory = int(memory_bytes // (4 * 8 * n))
    return max(1, min(n, max(2 * want + 10, small), by_memory))


def _check_first_batch(problem: CurvatureProblem, check_determinism: bool) -> None:
    """First batch: the loss runs and is finite, deterministic, and a mean (not a sum).

    Raises:
        SpectraError: the loss of batch 0 is not finite, differs between two evaluations
            (random layers), or doubles on the batch repeated twice (a sum, not a mean).
    """
    b0 = problem.batches[0]
    params = problem.all_params
    with curvature_mode(problem.model), torch.no_grad():
        l1 = float(problem.checked_loss(0, params, b0))
        l2 = float(problem.batch_loss(params, b0))
        if not (math.isfinite(l1) and math.isfinite(l2)):
            raise SpectraError(f"batch 0: the loss is not finite ({l1})")
        if check_determinism:
            tol = 100 * torch.finfo(problem.dtype).eps * max(1.0, abs(l1))
            if abs(l1 - l2) > tol:
                raise SpectraError(
                    f"the loss is not deterministic: two evaluations of the same batch gave "
                    f"{l1!r} and {l2!r} (random layers active in eval mode?); the Hessian would "
                    "be random"
                )
        twice = repeat_batch(b0)
        if twice is None:
            return
        try:
            l_rep = float(problem.batch_loss(params, twice))
        except Exception:  # noqa: BLE001 - a model that cannot take a doubled batch: no check
            return
    tol = 1e-3 if problem.dtype == torch.float32 else 1e-8
    if abs(l_rep - l1) > tol * max(abs(l1), 1e-12) and abs(l1) > 1e-12:
        ratio = l_rep / l1
        raise SpectraError(
            f"the loss is not a mean over the batch: batch 0 repeated twice gives {l_rep:.6g} "
            f"instead of {l1:.6g} (ratio {ratio:.3g}; 2 means a sum, reduction='sum'?): the "
            "Hessian would scale with the batch size; return the batch mean"
        )


def _wrap_value_error(fn: Callable[[], Any]) -> Any:
    """``fn()``, with a ``ValueError``/``TypeError`` raised as a one-line SpectraError.

    Returns:
        What ``fn`` returns.

    Raises:
        SpectraError: the message of the ``ValueError``/``TypeError`` that ``fn`` raised.
    """
    try:
        return fn()
    except (ValueError, TypeError) as exc:
        raise SpectraError(str(exc)) from None


def build_problem(
    model: nn.Module,
    data: DataArg,
    loss: str | Loss | LossFn,
    config: HessianConfig,
    *,
    batch_fn: BatchFn | None = None,
    output_fn: OutputFn | None = None,
) -> CurvatureProblem:
    """Data + loss -> a checked :class:`CurvatureProblem` (first batch checked).

    Args:
        model: the network.
        data: any dataset :func:`as_batches` takes.
        loss: a loss name, a :class:`~spectracli.hessian.losses.Loss` or a callable.
        config: the settings (validated here).
        batch_fn: hook that turns a raw batch into ``(inputs, targets)``.
        output_fn: hook that picks the model output the loss reads.

    Returns:
        The problem, on ``config.device`` in ``config.dtype``; under torchrun every rank has
        checked its first batch.

    Raises:
        SpectraError: invalid settings, loss, data or first batch (a ``ValueError``); the GGN
            asked with the model's own loss.
    """
    config.validate()
    loss_spec = _wrap_value_error(lambda: resolve_loss(loss))
    if config.operator == "ggn" and loss_spec.reads == "loss":
        raise SpectraError(
            "the GGN needs the loss as a function of the model's outputs, not the model's own "
            "loss: use token_cross_entropy (or cross_entropy, mse) with the logits"
        )
    batches = as_batches(data, config.batch_size, config.max_samples, config.seed)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    problem = _wrap_value_error(lambda: CurvatureProblem(
        model, batches, loss_spec, dtype=dtype, device=config.device, batch_fn=batch_fn,
        output_fn=output_fn))
    error = None
    try:
        _check_first_batch(problem, config.check_determinism)
    except Exception as exc:  # noqa: BLE001 - raised as it is, or on every rank (RankError)
        error = exc
    distributed.all_reduce_checked(torch.zeros(1, device=problem.device), error)
    return problem


def build_operator(
    model: nn.Module, data: DataArg, loss: str | Loss | LossFn, config: HessianConfig,
    **hooks: Any,
) -> tuple[HessianOperator, str]:
    """Batches + loss -> a checked operator of kind ``config.operator`` and the loss name.

    Returns:
        ``(operator, loss name)``; the operator covers ``config.params`` (all trainable
        parameters when None).
    """
    problem = build_problem(model, data, loss, config, **hooks)
    return _operator(problem, config, config.params), problem.loss.name


def _operator(problem: CurvatureProblem, config: HessianConfig, params: Sequence[str] | None):
    """The operator of kind ``config.operator`` over ``params`` (SpectraError if invalid)."""
    cls = OPERATORS[config.operator]
    kwargs: dict[str, Any] = {"params": params}
    if cls is HessianOperator:
        kwargs["hvp_mode"] = config.hvp_mode
    return _wrap_value_error(lambda: cls(problem, **kwargs))


def _groups(names: list[str], by: str) -> list[tuple[str, list[str]]]:
    """Parameter names grouped per owning module (``a.b.weight`` -> ``a.b``) or per tensor.

    Returns:
        ``[(group name, parameter names)]`` in model order; module-less parameters group as
        ``(root)``.
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        key = name if by == "parameter" else (name.rpartition(".")[0] or "(root)")
        groups.setdefault(key, []).append(name)
    return list(groups.items())


def _exact_or_hutchpp(op: Any, budget: int, seed: int) -> tuple[float, float, int]:
    """Trace of a block: exact by ``n`` unit products when ``n <= budget``, else Hutch++.

    :func:`~spectracli.hessian.hutchpp.hutchpp` makes that choice, for blocks and whole models
    alike.

    Returns:
        ``(trace, standard error, products)``; the error is 0 for the exact trace.
    """
    est = hutchpp(op, budget, seed=seed)
    return est.estimate, est.stderr, est.n_matvecs


def _block_results(problem: CurvatureProblem, names: list[str], config: HessianConfig,
                   tol: float, memory: float,
                   progress: Progress | None) -> tuple[list[BlockResult], int]:
    """Eigenvalues and trace of each diagonal block (``config.blocks``: per module or tensor).

    Returns:
        The blocks in model order, and the products they took in all.
    """
    out, total = [], 0
    groups = _groups(names, config.blocks or "module")
    for gi, (name, members) in enumerate(groups):
        op = _operator(problem, config, members)
        k = min(config.k, op.n)
        eig = lanczos(op, k, which=config.which, tol=tol, max_matvecs=config.max_hvps,
                      max_basis=basis_cap(op.n, k, config.which, memory), seed=config.seed)
        trace, stderr, _ = _exact_or_hutchpp(op, config.trace_hvps, config.seed + 1)
        out.append(BlockResult(name, op.n, eig.eigenvalues, eig.residuals, eig.converged,
                               trace, stderr, op.matvecs))
        total += op.matvecs
        if progress is not None:
            progress("blocks", gi + 1, len(groups), None)
    return out, total


def analyze(
    model: nn.Module,
    data: DataArg,
    loss: str | Loss | LossFn = "cross_entropy",
    config: HessianConfig | None = None,
    *,
    progress: Progress | None = None,
    return_vectors: bool = False,
    source: dict[str, Any] | None = None,
    batch_fn: BatchFn | None = None,
    output_fn: OutputFn | None = None,
    v0: torch.Tensor | None = None,
) -> HessianResult:
    """Eigenpairs, trace, density and blocks of the Hessian or GGN of the mean loss.

    Top/bottom-k eigenpairs by Lanczos, optional trace (Hutch++, Meyer et al. 2021), density
    (stochastic Lanczos quadrature, Ghorbani et al. 2019) and per-block eigenvalues and traces,
    of the Hessian or GGN of the mean loss over all of ``data`` (batches weighted by size).

    Args:
        model: the network (left as it was: training flags and ``requires_grad`` restored).
        data: tensors ``(x, y, ...)`` / ``{name: tensor}``, a Dataset (tuples or dicts), a
            DataLoader or a list of batches (see :mod:`spectracli.hessian.inputs`).
        loss: ``cross_entropy``, ``token_cross_entropy``, ``mse``, ``model`` (the model's own
            ``.loss``), a :class:`~spectracli.hessian.losses.Loss` or a callable (batch mean).
        config: every setting (:class:`HessianConfig`).
        progress: ``progress(stage, done, total, residual)``.
        return_vectors: keep the Ritz vectors (``result.eigenvectors``, ``(k, n)`` float64).
        source: what the inputs were (goes to the report).
        batch_fn: hook that turns a raw batch into ``(inputs, targets)``.
        output_fn: hook that picks the model output the loss reads (``.logits``...).
        v0: a start vector of length ``n`` (parameter order of ``model.named_parameters()``,
            selected parameters only), or a block of earlier Ritz vectors (``(n, b)``, or the
            ``(b, n)`` rows of a previous ``result.eigenvectors``): a warm start instead of a
            seeded random vector (``spectracli.track``).

    Returns:
        :class:`HessianResult`: eigenvalues descending with their relative residuals; the
        eigenvalues are in loss units per (parameter unit)^2.

    Raises:
        SpectraError: bad data, loss, parameters or settings (one line, the batch index when a
            batch is at fault); a product without a second derivative (the op named).
    """
    config = config or HessianConfig()
    t0 = time.perf_counter()
    problem = build_problem(model, data, loss, config, batch_fn=batch_fn, output_fn=output_fn)
    op = _operator(problem, config, config.params)
    loss_value, g = op.loss_and_grad()
    if not math.isfinite(loss_value) or not torch.isfinite(g).all():
        raise SpectraError(
            f"the loss or its gradient over the dataset is not finite (loss {loss_value})"
        )
    t_setup = time.perf_counter() - t0

    tol = config.resolved_tol()
    memory = available_bytes(op.device)
    basis = config.max_basis or basis_cap(op.n, config.k, config.which, memory)
    if basis < min(n_wanted(config.k, config.which) + 1, op.n):
        raise SpectraError(
            f"a basis of {basis} vectors (memory cap for {op.n} parameters) is too small for "
            f"{n_wanted(config.k, config.which)} wanted eigenpairs: lower k or raise max_basis",
            params=("k", "max_basis"),
        )

    t1 = time.perf_counter()
    eig = _eigenpairs(op, config, tol, basis, return_vectors, v0, progress)
    t_lanczos = time.perf_counter() - t1
    counts = {"lanczos": eig.n_matvecs}

    t2 = time.perf_counter()
    trace_est = _trace(op, config, progress) if config.trace else None
    if trace_est is not None:
        counts["trace"] = trace_est.n_matvecs
    t3 = time.perf_counter()
    dens = _density(op, config, progress) if config.density else None
    if dens is not None:
        counts["density"] = dens.n_matvecs
    t4 = time.perf_counter()
    blocks = None
    if config.blocks:
        blocks, counts["blocks"] = _block_results(problem, op.names, config, tol, memory,
                                                  progress)
    t5 = time.perf_counter()

    values = eig.eigenvalues
    lam_max = values[0] if config.which in ("largest", "both") and values else None
    lam_min = values[-1] if config.which in ("smallest", "both") and values else None
    cond, cond_reason = eig.condition_number()
    eos = config.lr * lam_max / 2 if config.lr is not None and lam_max is not None else None

    chosen = set(op.names)
    frozen = [k for k in problem.param_names if k not in chosen]
    settings = asdict(config)
    settings.update(
        tol=tol, max_basis=basis, loss=problem.loss.name, model_mode="eval",
        n_restarts=eig.n_restarts, n_deflations=eig.n_deflations,
        deflation_hvps=eig.deflation_matvecs, graph_cached=op.graph_cached, hvp_mode=op.hvp_mode,
        n_batches=problem.n_batches_given - problem.n_empty_batches,
        n_empty_batches=problem.n_empty_batches, world_size=problem.world_size,
        batch_layout="; ".join(sorted(problem.layout.notes)) or "as given",
    )
    if config.operator == "ggn":
        settings["hvp_mode"] = op.hvp_mode
    token_loss = problem.weighting.startswith(("tokens", "labels"))
    return HessianResult(
        settings=settings,
        operator=config.operator,
        eigenvalues=values,
        residuals=eig.residuals,
        converged=eig.converged,
        hvp_count=sum(counts.values()),
        hvp_counts=counts,
        n_params=op.n,
        n_samples=problem.n_samples,
        loss=loss_value,
        grad_norm=float(g.norm()),
        lambda_max=lam_max,
        lambda_min=lam_min,
        condition_number=cond,
        condition_number_reason=cond_reason,
        multiplicity_verified=eig.multiplicity_verified,
        edge_of_stability=eos,
        trace=trace_est,
        density=dens,
        timing={
            "setup_s": t_setup, "lanczos_s": t_lanczos,
            "trace_s": t3 - t2 if config.trace else 0.0,
            "density_s": t4 - t3 if config.density else 0.0,
            "blocks_s": t5 - t4 if config.blocks else 0.0,
            "total_s": time.perf_counter() - t0,
        },
        source=source or {},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        eigenvectors=eig.eigenvectors,
        param_names=list(op.names),
        param_shapes=[tuple(s) for s in op.shapes],
        n_frozen=sum(problem.numel[k] for k in frozen),
        frozen_params=frozen,
        n_tokens=problem.total_weight if token_loss else None,
        loss_weighting=problem.weighting,
        blocks=blocks,
    )


def _eigenpairs(
    op: Any, config: HessianConfig, tol: float, basis: int, return_vectors: bool,
    v0: torch.Tensor | None, progress: Progress | None,
) -> LanczosResult:
    """The Lanczos stage of :func:`analyze` (progress stage ``lanczos``).

    Returns:
        The Lanczos result, eigenvalues descending.

    Raises:
        SpectraError: a product was not finite, or a setting (``v0``, ``max_basis``) invalid.
    """

    def lanczos_progress(done: int, total: int, res: float) -> None:
        if progress is not None:
            progress("lanczos", done, total, res)

    try:
        return lanczos(
            op, config.k, which=config.which, tol=tol,
            max_matvecs=config.max_hvps, max_basis=basis, seed=config.seed,
            return_vectors=return_vectors, progress=lanczos_progress, v0=v0,
        )
    except FloatingPointError as exc:
        raise SpectraError(f"Hessian-vector products became non-finite ({exc})") from None
    except ValueError as exc:
        raise SpectraError(str(exc)) from None


def _trace(op: Any, config: HessianConfig, progress: Progress | None) -> TraceEstimate:
    """The Hutch++ stage of :func:`analyze`: ``config.trace_hvps`` products, seed + 1."""
    return hutchpp(
        op, config.trace_hvps, seed=config.seed + 1,
        progress=(lambda d, t: progress("trace", d, t, None)) if progress else None,
    )


def _density(op: Any, config: HessianConfig, progress: Progress | None) -> Density:
    """The SLQ stage of :func:`analyze`: ``density_probes`` runs of ``density_steps``, seed + 2."""
    return slq_density(
        op, config.density_probes, config.density_steps,
        grid_size=config.density_grid, sigma_rel=config.density_sigma,
        seed=config.seed + 2,
        progress=(lambda d, t: progress("density", d, t, None)) if progress else None,
    )


def eigenpairs(
    model: nn.Module,
    data: DataArg,
    loss: str | Loss | LossFn = "cross_entropy",
    k: int = 5,
    *,
    progress: Progress | None = None,
    return_vectors: bool = False,
    batch_fn: BatchFn | None = None,
    output_fn: OutputFn | None = None,
    v0: torch.Tensor | None = None,
    **settings: Any,
) -> HessianResult:
    """Top-``k`` eigenpairs, settings as keywords; see :func:`analyze` for the rest.

    ``settings`` are fields of :class:`HessianConfig` (``which=``, ``operator=``, ``dtype=``,
    ``params=``, ``blocks=``...).

    Returns:
        The :class:`HessianResult` of :func:`analyze`.

    Raises:
        SpectraError: as :func:`analyze`.
        TypeError: an unknown setting.
    """
    config = HessianConfig(k=k, **settings)
    return analyze(model, data, loss, config, progress=progress, return_vectors=return_vectors,
                   batch_fn=batch_fn, output_fn=output_fn, v0=v0)
