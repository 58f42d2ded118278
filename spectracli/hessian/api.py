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

from spectracli.errors import SpectraError
from spectracli.hessian.hutchpp import TraceEstimate, hutchpp
from spectracli.hessian.lanczos import default_max_basis, lanczos, n_wanted
from spectracli.hessian.loading import check_pair, make_batches
from spectracli.hessian.losses import BUILTIN_LOSSES, LossFn, builtin_loss
from spectracli.hessian.operators import DEFAULT_HVP_MODE, HVP_MODES, LossOperator
from spectracli.hessian.slq import Density, slq_density

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

    def resolved_tol(self) -> float:
        return self.tol if self.tol is not None else DEFAULT_TOL[self.dtype]

    def validate(self) -> None:
        checks = [
            (self.k >= 1, f"--top-k must be >= 1, got {self.k}"),
            (self.which in ("largest", "smallest", "both"),
             f"--which must be largest, smallest or both, got {self.which!r}"),
            (self.operator in ("hessian", "ggn"),
             f"--operator must be hessian or ggn, got {self.operator!r}"),
            (self.dtype in ("float32", "float64"),
             f"--dtype must be float32 or float64, got {self.dtype!r}"),
            (self.hvp_mode in HVP_MODES,
             f"--hvp-mode must be {' or '.join(HVP_MODES)}, got {self.hvp_mode!r}"),
            (self.tol is None or 0 < self.tol < 1, f"--tol must be in (0, 1), got {self.tol}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.trace_hvps >= 6, f"--trace-hvps must be >= 6, got {self.trace_hvps}"),
            (self.density_probes >= 1 and self.density_steps >= 2,
             "--density-probes must be >= 1 and --density-steps >= 2"),
            (self.max_hvps is None or self.max_hvps >= 1, "--max-hvps must be >= 1"),
            (self.lr is None or self.lr > 0, f"--lr must be > 0, got {self.lr}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise SpectraError(msg)


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

    def to_dict(self) -> dict[str, Any]:
        from spectracli import __version__
        from spectracli.results import SCHEMA_VERSION

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
                }
                if self.trace
                else None
            ),
            "density": self.density.to_dict() if self.density else None,
            "timing": self.timing,
        }


DataArg = tuple[torch.Tensor, torch.Tensor] | Sequence[tuple[torch.Tensor, torch.Tensor]] | Any


def as_batches(data: DataArg, batch_size: int, max_samples: int | None, seed: int):
    """``(x, y)`` tensors, a list of ``(x, y)`` batches or a DataLoader -> list of batches."""
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and isinstance(data[0], torch.Tensor)
        and isinstance(data[1], torch.Tensor)
    ):
        x, y = check_pair(data[0], data[1], "argument")
        return make_batches(x, y, batch_size, max_samples, seed)
    batches = list(data)
    if not batches:
        raise SpectraError("the dataset is empty (0 batches)")
    for b in batches:
        if not (isinstance(b, (tuple, list)) and len(b) == 2):
            raise SpectraError("data must yield (x, y) pairs of tensors")
    if max_samples is not None:
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        return make_batches(x, y, batch_size, max_samples, seed)
    return [(b[0], b[1]) for b in batches]


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def _first_layer(model: nn.Module) -> str:
    """What the first layer with a declared input size expects, for shape errors."""
    for name, module in model.named_modules():
        for attr in ("in_features", "in_channels", "num_embeddings"):
            if hasattr(module, attr):
                return f" (its first layer {name} has {attr}={getattr(module, attr)})"
    return ""


def _check_first_batch(op: LossOperator, loss_name: str, check_determinism: bool) -> None:
    """Shapes fit, labels in range, loss finite and deterministic: else one SpectraError."""
    x, y = op.batches[0]
    try:
        with torch.no_grad():
            out = op.outputs(op.params, x)
    except Exception as exc:  # noqa: BLE001 - any failure of user code on user data
        msg = " ".join(str(exc).split())
        raise SpectraError(
            f"data x of shape ({_shape(x)}) per batch does not fit the model"
            f"{_first_layer(op.model)}: {type(exc).__name__}: {msg}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise SpectraError(f"the model must return a tensor, got {type(out).__name__}")
    if loss_name == "cross_entropy" and not y.is_floating_point():
        if out.dim() < 2:
            raise SpectraError(
                f"cross_entropy needs outputs (batch, classes), got ({_shape(out)})"
            )
        n_cls = out.shape[1]
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_cls:
            raise SpectraError(
                f"labels out of range for cross_entropy: y spans [{lo}, {hi}] but the model "
                f"has {n_cls} outputs"
            )
    if loss_name == "mse":
        yy = y.unsqueeze(-1) if (y.dim() == out.dim() - 1 and out.shape[-1] == 1) else y
        if tuple(yy.shape) != tuple(out.shape):
            raise SpectraError(
                f"mse needs targets shaped like the outputs: y ({_shape(y)}) vs "
                f"outputs ({_shape(out)})"
            )
    try:
        with torch.no_grad():
            l1 = float(op.loss_fn(out, y))
            l2 = float(op.batch_loss(op.params, x, y))
    except Exception as exc:  # noqa: BLE001
        msg = " ".join(str(exc).split())
        raise SpectraError(
            f"the loss failed on outputs ({_shape(out)}) and targets ({_shape(y)}): "
            f"{type(exc).__name__}: {msg}"
        ) from None
    if not (math.isfinite(l1) and math.isfinite(l2)):
        raise SpectraError(f"the loss is not finite on the first batch ({l1})")
    if check_determinism:
        tol = 100 * torch.finfo(op.dtype).eps * max(1.0, abs(l1))
        if abs(l1 - l2) > tol:
            raise SpectraError(
                f"the loss is not deterministic: two evaluations of the same batch gave {l1!r} "
                f"and {l2!r} (random layers active in eval mode?); the Hessian would be random"
            )


def _resolve_loss(loss: str | LossFn) -> tuple[LossFn, str]:
    if isinstance(loss, str):
        if loss not in BUILTIN_LOSSES:
            raise SpectraError(f"loss must be one of {BUILTIN_LOSSES} or a callable, got {loss!r}")
        return builtin_loss(loss), loss
    return loss, getattr(loss, "__name__", "custom")


def build_operator(
    model: nn.Module, data: DataArg, loss: str | LossFn, config: HessianConfig
) -> tuple[LossOperator, str]:
    """Batches + loss -> a checked :class:`LossOperator` (model in eval mode)."""
    config.validate()
    loss_fn, loss_name = _resolve_loss(loss)
    batches = as_batches(data, config.batch_size, config.max_samples, config.seed)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    try:
        op = LossOperator(
            model, batches, loss_fn, operator=config.operator, dtype=dtype,
            device=config.device, hvp_mode=config.hvp_mode,
        )
    except ValueError as exc:
        raise SpectraError(str(exc)) from None
    _check_first_batch(op, loss_name, config.check_determinism)
    return op, loss_name


def analyze(
    model: nn.Module,
    data: DataArg,
    loss: str | LossFn = "cross_entropy",
    config: HessianConfig | None = None,
    *,
    progress: Progress | None = None,
    return_vectors: bool = False,
    source: dict[str, Any] | None = None,
    v0: torch.Tensor | None = None,
) -> HessianResult:
    """Top/bottom-k eigenpairs (Lanczos), optional trace (Hutch++) and density (SLQ) of the
    Hessian or GGN of the mean loss over all of ``data``.

    ``v0`` (length ``n_params``, parameter order of ``model.named_parameters()``), or a block of
    earlier Ritz vectors (``(n_params, b)``, or the ``(b, n_params)`` rows of a previous
    ``result.eigenvectors``), starts Lanczos instead of a seeded random vector: a warm start
    (``spectracli.track``)."""
    config = config or HessianConfig()
    t0 = time.perf_counter()
    op, loss_name = build_operator(model, data, loss, config)
    loss_value, g = op.loss_and_grad()
    if not math.isfinite(loss_value) or not torch.isfinite(g).all():
        raise SpectraError(
            f"the loss or its gradient over the dataset is not finite (loss {loss_value})"
        )
    t_setup = time.perf_counter() - t0

    tol = config.resolved_tol()
    basis = config.max_basis or default_max_basis(op.n, config.k, config.which)
    if basis < min(n_wanted(config.k, config.which) + 1, op.n):
        raise SpectraError(
            f"a basis of {basis} vectors (memory cap for {op.n} parameters) is too small for "
            f"{n_wanted(config.k, config.which)} wanted eigenpairs: lower --top-k or raise "
            "--max-basis"
        )

    def lanczos_progress(done: int, total: int, res: float) -> None:
        if progress is not None:
            progress("lanczos", done, total, res)

    t1 = time.perf_counter()
    try:
        eig = lanczos(
            op, config.k, which=config.which, tol=tol,
            max_matvecs=config.max_hvps, max_basis=basis, seed=config.seed,
            return_vectors=return_vectors, progress=lanczos_progress, v0=v0,
        )
    except FloatingPointError as exc:
        raise SpectraError(f"Hessian-vector products became non-finite ({exc})") from None
    t_lanczos = time.perf_counter() - t1
    counts = {"lanczos": eig.n_matvecs}

    trace_est = None
    t_trace = 0.0
    if config.trace:
        t2 = time.perf_counter()
        trace_est = hutchpp(
            op, config.trace_hvps, seed=config.seed + 1,
            progress=(lambda d, t: progress("trace", d, t, None)) if progress else None,
        )
        counts["trace"] = trace_est.n_matvecs
        t_trace = time.perf_counter() - t2

    dens = None
    t_density = 0.0
    if config.density:
        t3 = time.perf_counter()
        dens = slq_density(
            op, config.density_probes, config.density_steps,
            grid_size=config.density_grid, sigma_rel=config.density_sigma,
            seed=config.seed + 2,
            progress=(lambda d, t: progress("density", d, t, None)) if progress else None,
        )
        counts["density"] = dens.n_matvecs
        t_density = time.perf_counter() - t3

    values = eig.eigenvalues
    lam_max = values[0] if config.which in ("largest", "both") and values else None
    lam_min = values[-1] if config.which in ("smallest", "both") and values else None
    cond, cond_reason = eig.condition_number()
    eos = config.lr * lam_max / 2 if config.lr is not None and lam_max is not None else None

    settings = asdict(config)
    settings.update(
        tol=tol, max_basis=basis, loss=loss_name, model_mode="eval", n_restarts=eig.n_restarts,
        n_deflations=eig.n_deflations, deflation_hvps=eig.deflation_matvecs,
        graph_cached=op.graph_cached,
        n_batches=len(op.batches),
    )
    return HessianResult(
        settings=settings,
        operator=config.operator,
        eigenvalues=values,
        residuals=eig.residuals,
        converged=eig.converged,
        hvp_count=op.matvecs,
        hvp_counts=counts,
        n_params=op.n,
        n_samples=op.n_samples,
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
            "setup_s": t_setup, "lanczos_s": t_lanczos, "trace_s": t_trace,
            "density_s": t_density, "total_s": time.perf_counter() - t0,
        },
        source=source or {},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        eigenvectors=eig.eigenvectors,
    )


def eigenpairs(
    model: nn.Module,
    data: DataArg,
    loss: str | LossFn = "cross_entropy",
    k: int = 5,
    *,
    progress: Progress | None = None,
    return_vectors: bool = False,
    v0: torch.Tensor | None = None,
    **settings: Any,
) -> HessianResult:
    """Top-``k`` eigenpairs (``which=``, ``operator=``, ``dtype=``, ... as in HessianConfig);
    ``v0``: warm start from earlier Ritz vectors (see :func:`analyze`)."""
    config = HessianConfig(k=k, **settings)
    return analyze(model, data, loss, config, progress=progress, return_vectors=return_vectors,
                   v0=v0)
