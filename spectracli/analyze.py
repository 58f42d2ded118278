"""checkpoint -> AnalysisReport: stream tensors, turn them into matrices, compute their spectra.

One tensor is loaded at a time (plus its float64 workspace); every tensor is either analysed or
listed in ``skipped`` with its reason. Progress goes to an optional callback, so the library never
prints.

Two array libraries, one math (spectracli.spectral.arrays): on the CPU the solves run in numpy
(numpy's LAPACK), on CUDA in torch, through the same code. A tensor a reader gives as torch
(pickles, fp8 safetensors, an in-memory model) is handed to numpy without a copy (bfloat16 and
fp8 widened exactly to float32), so a model gives the same report bit for bit whether it came
as a file or as an object. When the reader can give every analysed tensor as numpy itself
(safetensors float16/32/64 and bfloat16, .npz, GGUF, ONNX) and the device is known to be the
CPU without asking torch (``cpu``, or ``auto`` where no GPU driver is installed), torch is never
imported: about a second saved at start-up (tests/test_torch_free.py, docs/benchmarks.md).

Example::

    from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
    report = analyze_checkpoint("sample_models/digits_mlp.safetensors", AnalyzeConfig(fit="median"))
    print(report.to_dict()["summary"]["mean_alpha"])
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import inspect
import json
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectracli import __version__, distributed
from spectracli.analyze_config import AnalyzeConfig
from spectracli.device import host_device, resolve_device
from spectracli.dtypes import FLOAT_ITEMSIZE
from spectracli.errors import NoWeightMatricesError, SpectraError, SpectraTypeError
from spectracli.io import open_checkpoint
from spectracli.io.base import Checkpoint, TensorHandle
from spectracli.layers import MatrixPlan, as_stack, plan_layers
from spectracli.layers.plan import BASE_PREFIX
from spectracli.results import (
    AnalysisReport,
    EsdSample,
    FarmsResult,
    LayerResult,
    SkippedTensor,
)
from spectracli.spectral import (
    FarmsGrid,
    alpha_warning,
    farms_grid,
    farms_spectrum,
    fit_power_law,
    matrix_metrics,
    mp_fit,
    squared_singular_values,
)
from spectracli.spectral.arrays import STORAGE_PRECISION, float_dtype, namespace, numel, to_numpy
from spectracli.spectral.arrays import device as device_of
from spectracli.spectral.esd import all_finite
from spectracli.spectral.farms import (
    float32_alpha_bound,
    float32_alpha_tolerance,
    float32_unresolved,
    independent_windows,
    solve_cost,
    window_dtype,
)
from spectracli.spectral.metrics import precision_thresholds
from spectracli.spectral.powerlaw import PowerLawFit
from spectracli.threads import available_cores, blas_threads

if TYPE_CHECKING:
    import torch

Progress = Callable[..., None]
"""``progress(done, total, name)``: matrices solved and in all, and the matrix submitted or just
solved. A callback that takes a ``work`` keyword is also given ``work=(done, total)`` in
modelled flops (:func:`plan_cost`), for a time estimate that weighs a 32000 x 2048 embedding
above a 256 x 2048 projection."""


def _takes_work(progress: Progress) -> bool:
    """Whether ``progress`` accepts a ``work`` keyword (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(progress).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: the plain three arguments
        return False
    by_name = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any((p.name == "work" and p.kind in by_name) or p.kind is p.VAR_KEYWORD
               for p in params)


class _Reporter:
    """The progress callback of one analyze call.

    Reports matrices done and, to callbacks that take it, the modelled work done
    (``_takes_work``); a no-op without a callback.
    """

    def __init__(self, progress: Progress | None, total: int, total_work: float) -> None:
        self.progress, self.total, self.total_work = progress, total, total_work
        self.with_work = progress is not None and _takes_work(progress)
        self.done, self.work_done = 0, 0.0

    def __call__(self, name: str, done: int | None = None, work_done: float | None = None) -> None:
        """Report ``name`` with the counts so far (or the ``done``/``work_done`` given)."""
        if done is not None:
            self.done = done
        if work_done is not None:
            self.work_done = work_done
        if self.progress is None:
            return
        if self.with_work:
            self.progress(self.done, self.total, name, work=(self.work_done, self.total_work))
        else:
            self.progress(self.done, self.total, name)

    def solved(self, name: str, work: float) -> None:
        """One more matrix solved, of modelled cost ``work``."""
        self(name, self.done + 1, self.work_done + work)


def esd_sample(lam: np.ndarray) -> EsdSample:
    """All eigenvalues when few, else ``MAX_STORED`` evenly spaced quantiles (7 digits kept)."""
    lam = np.sort(lam)
    count = lam.size
    quantiles = count > EsdSample.MAX_STORED
    if quantiles:
        lam = np.quantile(lam, np.linspace(0.0, 1.0, EsdSample.MAX_STORED))
    return EsdSample([float(f"{v:.7g}") for v in lam], count, quantiles)


def analyze_matrices(
    name: str,
    mats: Any,
    plan: MatrixPlan,
    config: AnalyzeConfig,
    shape: Sequence[int],
    dtype: str,
) -> LayerResult:
    """Spectrum, metrics, fits (full and FARMS) of one layer's stack of (out, in) matrices."""
    result = LayerResult(
        name=name,
        kind=plan.kind,
        shape=list(shape),
        matrix_shape=list(plan.matrix_shape),
        n_matrices=plan.n_matrices,
        dtype=dtype,
        status="ok",
    )
    if not all_finite(mats):
        xp = namespace(mats)
        bad = numel(mats) - int(xp.sum(xp.astype(xp.isfinite(mats), xp.int64)))
        result.status = "nonfinite"
        result.warnings.append(f"{bad} NaN/Inf entries: layer not analysed")
        return result
    m, n = plan.matrix_shape
    work_dtype = config.dtype
    lam = squared_singular_values(mats, dtype=work_dtype)  # (slices, k), ascending
    metrics = matrix_metrics(lam, (m, n), stored_dtype=dtype)
    for key, value in metrics.to_dict().items():
        setattr(result, key, value)
    if metrics.sigma_max == 0:
        result.status = "zero"
        result.warnings.append("all-zero matrix: no spectrum to fit")
        result.condition_number = None
        return result
    scale = 1.0 / max(m, n) if config.normalize else 1.0
    pooled = np.sort(to_numpy(lam).reshape(-1) * scale)
    result.n_eigenvalues = int(pooled.size)
    result.lambda_max = float(pooled[-1])
    mp = mp_fit(pooled, m, n, normalized=config.normalize)
    result.mp_sigma2, result.mp_bulk_edge = mp.sigma2, mp.bulk_edge
    result.num_spikes = mp.num_spikes
    # Zero and distinct at the precision the weights were stored in (docs/metrics.md).
    root = scale**0.5
    zero, resolution = precision_thresholds(
        metrics.sigma_max, metrics.frobenius_norm, (m, n), plan.n_matrices, dtype
    )
    result.fit = fit_power_law(
        pooled, config.fit, config.min_tail,
        sigma_zero=zero * root, sigma_resolution=resolution * root,
        ci_level=config.ci_level, ci_resamples=config.ci_resamples,
    )
    if config.store_esd:
        result.esd = esd_sample(pooled)
    if config.farms:
        result.farms = _farms_result(mats, plan, config, metrics, dtype, pooled, result.fit)
    _add_warnings(result)
    return result


def _farms_fitter(
    config: AnalyzeConfig, metrics: Any, plan: MatrixPlan, dtype: str, grid: FarmsGrid
) -> Callable[[np.ndarray], PowerLawFit]:
    """The fit of a pooled window ESD on ``grid``, with the window's precision thresholds."""
    m, n = plan.matrix_shape
    root = (1.0 / max(grid.rows, grid.cols) if config.normalize else 1.0) ** 0.5
    zero, res = precision_thresholds(
        metrics.sigma_max, metrics.frobenius_norm, (m, n), plan.n_matrices, dtype,
        window=(grid.rows, grid.cols),
    )
    total = grid.n_windows * plan.n_matrices
    return functools.partial(
        fit_power_law, method=config.fit, min_tail=config.min_tail, n_groups=total,
        independent=independent_windows(grid, plan.n_matrices) / total,
        sigma_zero=zero * root,
        sigma_resolution=res * root, ci_level=config.ci_level, ci_resamples=config.ci_resamples,
    )


def _window_solve(
    plan: MatrixPlan, config: AnalyzeConfig, on_gpu: bool
) -> tuple[FarmsGrid, str | None]:
    """The FARMS grid of ``plan``'s matrices and the window solves' precision.

    Returns:
        (the grid; ``"float32"`` or ``"float64"``, or None when the one window is the whole
        matrix and the FARMS ESD is the plain one).
    """
    m, n = plan.matrix_shape
    grid = farms_grid(m, n, config.farms_window, config.farms_ratio, config.farms_steps,
                      config.farms_grid, config.farms_budget)
    if (grid.rows, grid.cols) == (m, n):
        return grid, None
    precision = "float32" if config.dtype == "float32" else config.farms_precision
    return grid, window_dtype(precision, grid.n_windows * plan.n_matrices, on_gpu,
                              min(grid.rows, grid.cols))


def _farms_result(
    mats: Any, plan: MatrixPlan, config: AnalyzeConfig, metrics: Any, dtype: str,
    pooled: np.ndarray, full_fit: PowerLawFit,
) -> FarmsResult:
    """FARMS of one layer: windows solved in the precision ``farms_precision`` picks, fitted.

    Under ``auto`` the first window, solved in both precisions, decides: float32 for every
    window when :func:`float32_alpha_bound` of its own fit is within
    :func:`float32_alpha_tolerance` (at the grid's independent share), float64 otherwise. The
    pooled fit is checked the same way; if it fails the windows are solved again in float64
    (docs/metrics.md, FARMS).

    Returns:
        The FarmsResult (fit, window shape and count, solve precision and alpha bound).
    """
    on_gpu = getattr(device_of(mats), "type", "cpu") == "cuda"
    grid, solve_dtype = _window_solve(plan, config, on_gpu)
    bound = None
    if solve_dtype is None:
        farms_np = pooled  # one window, the whole matrix: FARMS ESD = full ESD
        fit = full_fit if grid.n_windows * plan.n_matrices == 1 else None
        if fit is None:
            fit = _farms_fitter(config, metrics, plan, dtype, grid)(farms_np)
    else:
        workers = 1 if on_gpu else config.threads or available_cores()
        farms_np, fit, solve_dtype, bound = _solve_windows(
            mats, plan, config, _farms_fitter(config, metrics, plan, dtype, grid), grid,
            solve_dtype, workers,
        )
    return FarmsResult(
        fit=fit,
        window_rows=grid.rows,
        window_cols=grid.cols,
        n_windows=grid.n_windows * plan.n_matrices,
        grid=(len(grid.row_offsets), len(grid.col_offsets)),
        independent_windows=independent_windows(grid, plan.n_matrices),
        esd=esd_sample(farms_np) if config.store_esd else None,
        solve_dtype=solve_dtype,
        alpha_error_bound=bound if bound is None or math.isfinite(bound) else None,
    )


def _float32_windows(items: Sequence[tuple[Any, MatrixPlan]], config: AnalyzeConfig) -> bool:
    """Whether any item's FARMS windows may be solved in float32 on the CPU."""
    return config.farms and any(
        plan.farms and _window_solve(plan, config, False)[1] == "float32" for _, plan in items
    )


def _solve_windows(
    mats: Any, plan: MatrixPlan, config: AnalyzeConfig, fitter: Callable[..., PowerLawFit],
    grid: FarmsGrid, solve_dtype: str, workers: int,
) -> tuple[np.ndarray, PowerLawFit, str, float | None]:
    """The pooled window ESD, its fit, the solve precision used and the float32 alpha bound.

    Returns:
        (pooled lambda ascending, fit, ``"float32"``/``"float64"``, the bound or None).
    """
    checked = config.farms_precision == "auto" and config.dtype != "float32"
    checked = checked and solve_dtype == "float32"
    independent = independent_windows(grid, plan.n_matrices)
    total = grid.n_windows * plan.n_matrices

    def first_decides(lam: Any, error: float) -> bool:  # one window stands for the grid
        lam = to_numpy(lam)
        if float32_unresolved(lam, fitter.keywords["sigma_zero"], error):
            return False
        first = fitter(lam, n_groups=1, ci_resamples=0, independent=1.0)
        if first.alpha is None or first.xmin is None:
            return False
        return float32_alpha_bound(lam, first.xmin, first.alpha, error) <= (
            float32_alpha_tolerance(first.alpha, first.tail_size, independent))

    def solve(dtype_: str) -> tuple[np.ndarray, PowerLawFit, str, float | None]:
        spec = farms_spectrum(
            mats, config.farms_window, config.farms_ratio, config.farms_steps,
            config.normalize, dtype=dtype_, layout=config.farms_grid,
            budget=config.farms_budget, workers=workers,
            decide=first_decides if checked else None,
        )
        lam = to_numpy(spec.lam)
        fit = fitter(lam)
        if spec.dtype != "float32":
            return lam, fit, spec.dtype, None
        if fit.alpha is None or fit.xmin is None:
            return lam, fit, spec.dtype, math.inf
        return lam, fit, spec.dtype, float32_alpha_bound(lam, fit.xmin, fit.alpha, spec.error)

    lam, fit, used, bound = solve(solve_dtype)
    if checked and used == "float32" and not bound <= float32_alpha_tolerance(
        fit.alpha, fit.tail_size, independent / total
    ):  # the first window misjudged the pool: all again in float64
        lam, fit, used, bound = solve("float64")
    return lam, fit, used, bound


def _add_warnings(result: LayerResult) -> None:
    if result.rank_deficient:
        bits = STORAGE_PRECISION.get(str(result.dtype), (0.0, 32))[1]
        # 16- and 8-bit storage: the smallest singular values sit within the rounding noise of
        # the format (docs/metrics.md measures this: any safe tolerance flags such layers)
        result.warnings.append(
            "rank deficient: condition number is infinite" + (
                f" (numerical rank {result.numerical_rank}: the smallest singular values are "
                f"within {result.dtype} rounding noise)" if bits <= 16 else ""))
    for label, fit in (("alpha", result.fit), ("FARMS alpha", result.farms and result.farms.fit)):
        if fit is None:
            continue
        if fit.fit_status != "ok":
            result.warnings.append(f"{label} fit {fit.fit_status}: {fit.fit_reason}")
        elif note := alpha_warning(fit.alpha, label):
            result.warnings.append(note)
    if result.kind == "embedding":
        result.warnings.append(
            "embedding table: a lookup, not a linear map; alpha heuristics were made for linear "
            "layers"
        )


# Tensors above this size are analysed with no other tensor in flight.
BIG_TENSOR_BYTES = 256 * 2**20


def _stored_bytes(h: TensorHandle) -> int:
    itemsize = FLOAT_ITEMSIZE.get(h.dtype, 4)
    return h.numel * itemsize


def _add_provenance(layer: LayerResult, plan: MatrixPlan) -> None:
    """Which rule and which stored tensors produced a result (and the plan's caveats)."""
    layer.rule = plan.rule
    layer.sources = list(plan.sources) + [f"base:{s}" for s in plan.base_sources]
    layer.part = plan.part
    layer.conv_view = plan.conv_view
    layer.transposed = plan.transposed
    layer.group = plan.group
    layer.warnings[:0] = list(plan.notes)


def _adapter_config(path: Path | None) -> dict | None:
    """The PEFT ``adapter_config.json`` beside the weights (or in the directory), else None."""
    if path is None or not Path(path).exists():  # an in-memory source has no directory
        return None
    directory = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        with open(directory / "adapter_config.json", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _plan(
    handles: Sequence[TensorHandle],
    config: AnalyzeConfig,
    base: dict[str, TensorHandle] | None,
    model_config: dict | None = None,
    adapter_config: dict | None = None,
) -> tuple[list[MatrixPlan], list[SkippedTensor]]:
    """The layer model's plans (matrices to analyse) and the skipped tensors with their reasons."""
    # A tensor the reader lists but cannot produce (e.g. a GGUF quantisation the installed gguf
    # cannot dequantise) is skipped with the reader's reason.
    unreadable = [SkippedTensor(h.name, list(h.shape), str(h.meta["skip"]))
                  for h in handles if h.meta.get("skip")]
    handles = [h for h in handles if not h.meta.get("skip")]
    # A matrix-shaped tensor with a dimension of size 0 has no entries: a (64, 64, 0) kernel
    # would otherwise plan zero (64, 64) slices, and metrics of no matrix are undefined.
    empty = [h for h in handles if len(h.shape) >= 2 and 0 in h.shape]
    unreadable += [SkippedTensor(h.name, list(h.shape), f"empty tensor "
                                 f"{'x'.join(map(str, h.shape))}: a dimension of size 0")
                   for h in empty]
    handles = [h for h in handles if not (len(h.shape) >= 2 and 0 in h.shape)]
    layer_plan = plan_layers(
        handles,
        config=model_config,
        options=config.layer_options(),
        include=config.include,
        exclude=config.exclude,
        adapter_config=adapter_config,
        base={name: tuple(h.shape) for name, h in base.items()} if base is not None else None,
    )
    skipped = unreadable + [SkippedTensor(s.name, list(s.shape), s.reason, s.rule or None)
                            for s in layer_plan.skips]
    return layer_plan.plans, skipped


class _LoadGroup:
    """The stored tensors a run of plans shares: loaded once, on first use, dropped after the last.

    A fused tensor cut into parts (q, k, v; gates; experts) is read once for all its parts.
    """

    def __init__(
        self,
        plans: list[MatrixPlan],
        handles: dict[str, TensorHandle],
        base: dict[str, TensorHandle] | None,
        device: torch.device | None,
    ) -> None:
        self.plans = plans
        self.sources = plans[0].sources
        self.base_sources = plans[0].base_sources
        self._handles, self._base, self._device = handles, base, device
        self._lock = threading.Lock()
        self._tensors: dict[str, Any] | None = None
        self._base_tensors: dict[str, Any] | None = None
        self._left = len(plans)
        self.stored_bytes = sum(_stored_bytes(handles[s]) for s in self.sources)

    def _load(self, handle: TensorHandle) -> Any:
        if self._device is None:  # the CPU: numpy
            return handle.load_numpy() if handle.numpy_loader else host_array(handle.load())
        return handle.load().to(device=self._device)

    def tensors(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The group's tensors, loaded once for all its plans.

        Returns:
            ``(checkpoint tensors, base tensors for W - W_base or None)``, in their stored
            dtype: numpy arrays on the CPU (device None), else torch tensors on the device.
        """
        with self._lock:
            if self._tensors is None:
                # Kept in its stored dtype: the math upcasts block by block (spectral.esd.gram).
                loaded = {s: self._load(self._handles[s]) for s in self.sources}
                for s in self.base_sources:
                    assert self._base is not None
                    loaded[BASE_PREFIX + s] = self._load(self._base[s])
                self._tensors = loaded
                first = self.plans[0]
                if self._base is not None and first.subtract_base:
                    self._base_tensors = {
                        s: self._load(self._base[b])
                        for s, b in zip(self.sources, first.base_names, strict=True)
                    }
            return self._tensors, self._base_tensors

    def done(self) -> None:
        """One plan of the group is solved; the last one frees the tensors."""
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self._tensors = self._base_tensors = None


def _load_groups(
    plans: list[MatrixPlan],
    handles: dict[str, TensorHandle],
    base: dict[str, TensorHandle] | None,
    device: torch.device | None,
) -> list[tuple[_LoadGroup, MatrixPlan]]:
    """Plans in order, each with the load group of the consecutive plans sharing its sources."""
    out: list[tuple[_LoadGroup, MatrixPlan]] = []
    start = 0
    for i in range(1, len(plans) + 1):
        if i == len(plans) or (plans[i].sources, plans[i].base_sources) != (
            plans[start].sources, plans[start].base_sources
        ):
            group = _LoadGroup(plans[start:i], handles, base, device)
            out += [(group, p) for p in plans[start:i]]
            start = i
    return out


def host_array(tensor: Any) -> np.ndarray:
    """A CPU torch tensor as a numpy array sharing its memory.

    bfloat16 and float8, which numpy lacks, are widened to float32, exactly (every value of
    theirs is a float32).

    Returns:
        The numpy array (a copy only for the widened dtypes).
    """
    import torch

    tensor = tensor.detach()
    if tensor.dtype.is_floating_point and tensor.dtype not in (
        torch.float16, torch.float32, torch.float64
    ):
        tensor = tensor.to(torch.float32)
    return tensor.numpy(force=True)


def _result_aliases(plan: MatrixPlan, handles: dict[str, TensorHandle]) -> list[str]:
    """Tied names of the tensor a plan reads (a part keeps its suffix: ``alias[q]``)."""
    if len(plan.sources) != 1 or not plan.name.startswith(plan.sources[0]):
        return []
    suffix = plan.name[len(plan.sources[0]):]
    return [alias + suffix for alias in handles[plan.sources[0]].aliases]


def _skip_summary(skipped: Sequence[SkippedTensor], limit: int = 3) -> str:
    """The skip reasons, most frequent first, with their counts: ``"1-D tensor (...) (x3)"``."""
    ranked = Counter(s.reason for s in skipped).most_common()
    text = "; ".join(reason + (f" (x{n})" if n > 1 else "") for reason, n in ranked[:limit])
    more = sum(n for _, n in ranked[limit:])
    return text + (f"; {more} for other reasons" if more else "")


def _nothing_to_analyze(
    path: str | Path,
    skipped: Sequence[SkippedTensor],
    config: AnalyzeConfig,
    unfiltered: Callable[[], tuple[list[MatrixPlan], list[SkippedTensor]]],
) -> SpectraError:
    """The error for a plan with no matrix: a filter that matches none, or none at all.

    ``unfiltered()`` plans again without include/exclude (names and shapes only, nothing is
    loaded), to tell a filter that matches none of N matrices from a checkpoint with none.

    Returns:
        A ``SpectraError`` naming include/exclude and the matrices they missed, or a
        ``NoWeightMatricesError`` counting the skipped tensors by reason.
    """
    if config.include or config.exclude:
        plans, all_skipped = unfiltered()
        if plans:
            names = ", ".join(p.name for p in plans[:3]) + (", ..." if len(plans) > 3 else "")
            return SpectraError(
                f"no weight matrix of {path} is selected by include {list(config.include)} / "
                f"exclude {list(config.exclude)}: they match none of its {len(plans)} weight "
                f"matrices ({names})",
                params=("include", "exclude"),
            )
        skipped = all_skipped
    if not skipped:
        return NoWeightMatricesError(f"no weight matrices in {path}: it holds no tensors")
    small = any("min_size" in s.reason for s in skipped)
    count = f"{len(skipped)} tensors, all" if len(skipped) > 1 else "1 tensor,"
    return NoWeightMatricesError(
        f"no weight matrices in {path}: {count} skipped: {_skip_summary(skipped)}"
        + ("; a smaller min_size analyses the small ones" if small else ""),
        params=("min_size",) if small else (),
    )


def _check_base_match(
    path: str | Path,
    work: Sequence[MatrixPlan],
    skipped: Sequence[SkippedTensor],
    config: AnalyzeConfig,
) -> None:
    """Refuse a base of another architecture.

    Raises:
        SpectraError: the base matches fewer than half of the weight matrices by name and
            shape (most likely another architecture: the rest would be skipped).
    """
    if config.base is not None:
        unmatched = sum("base" in s.reason for s in skipped)
        total = len(work) + unmatched
        if len(work) * 2 < total:
            raise SpectraError(
                f"base {_shown(config.base)} matches only {len(work)} of the {total} weight "
                f"matrices of {path} by name and shape: is it the same architecture?",
                params=("base",),
            )


def _open_source(
    source: str | Path | Checkpoint, trust_pickle: bool, revision: str | None = None
) -> contextlib.AbstractContextManager[Checkpoint]:
    """An open checkpoint for a path or hub id (closed after use) or one given open (left open)."""
    if isinstance(source, Checkpoint):
        return contextlib.nullcontext(source)
    return open_checkpoint(source, trust_pickle=trust_pickle, revision=revision)


def _shown(source: str | Path | Checkpoint) -> str:
    """How the report names a source.

    Returns:
        The path or hub id as given (normalised: ``a/../b`` is ``b``, never made absolute), or
        an open checkpoint's path.
    """
    text = str(source.path if isinstance(source, Checkpoint) else source)
    return os.path.normpath(text) if text and "://" not in text else text


def plan_cost(plan: MatrixPlan, config: AnalyzeConfig) -> float:
    """Estimated solve cost of one plan, in Gram multiply-adds.

    Per matrix the plain ESD (:func:`~spectracli.spectral.farms.solve_cost`: Gram product plus
    eigensolve), plus each FARMS window of the grid the analysis lays (``config.farms_grid``
    and ``farms_budget``), plus the fits (a few hundred per eigenvalue and bootstrap resample).
    Only ratios between plans matter: :func:`shard_items` balances ranks with it and the
    progress callback's ``work`` counts it.

    Args:
        plan: the matrix plan (its ``matrix_shape`` and ``n_matrices``).
        config: the analysis settings (FARMS grid and bootstrap resamples).

    Returns:
        The modelled cost, > 0.
    """
    m, n = plan.matrix_shape
    k = min(m, n)
    cost = plan.n_matrices * solve_cost(m, n)
    fits = 1
    if config.farms and plan.farms:
        grid = farms_grid(m, n, config.farms_window, config.farms_ratio, config.farms_steps,
                          config.farms_grid, config.farms_budget)
        if (grid.rows, grid.cols) != (m, n):
            cost += plan.n_matrices * grid.n_windows * solve_cost(grid.rows, grid.cols)
            fits = 2
    return float(cost + 300.0 * fits * plan.n_matrices * k * (1 + config.ci_resamples))


def shard_items(
    items: Sequence[tuple[_LoadGroup, MatrixPlan]], config: AnalyzeConfig, world: int
) -> list[int]:
    """The rank that solves each item, whole load groups at a time.

    A stored tensor is read by one rank. Groups go largest estimated cost first, each to the
    least-loaded rank (greedy longest processing time, Graham 1969: within 4/3 of the best
    makespan). Deterministic: every rank computes the same.

    Returns:
        The rank of each item, in item order.
    """
    if world <= 1:
        return [0] * len(items)
    groups: dict[int, list[int]] = {}
    for index, (group, _) in enumerate(items):
        groups.setdefault(id(group), []).append(index)
    cost = {key: sum(plan_cost(items[i][1], config) for i in members)
            for key, members in groups.items()}
    load = [0.0] * world
    owner = [0] * len(items)
    for key in sorted(groups, key=lambda g: (-cost[g], groups[g][0])):
        target = min(range(world), key=lambda r: (load[r], r))
        load[target] += cost[key]
        for i in groups[key]:
            owner[i] = target
    return owner


class _Job:
    """The distributed side of one analyze call.

    Whole-job progress on rank 0 (a counter in the process group's store, which needs no
    collective) and one all_gather of every rank's layers or error. Every rank ends in exactly
    one :meth:`exchange`, whether it failed or not.
    """

    _calls = 0

    def __init__(self, progress: Progress | None) -> None:
        _Job._calls += 1  # every rank calls analyze in the same order: the same keys
        self.key = f"spectracli/analyze/{_Job._calls}"
        self.progress = progress if distributed.rank() == 0 else None
        self.reporter = _Reporter(None, 0, 0.0)  # the whole job's, once its size is known
        self.world = distributed.world_size()
        self.exchanged = False

    def solved(self, name: str, work: float) -> None:
        """One matrix of modelled cost ``work`` solved on this rank: the job's counters move."""
        done = distributed.store_add(self.key + "/done", 1)
        work_done = distributed.store_add(self.key + "/work", round(work))
        if done is not None:
            self.reporter(name, done, float(work_done or 0))

    def exchange(
        self, part: tuple[list[int], list[LayerResult], float] | None, error: str | None
    ) -> tuple[list[LayerResult], float]:
        """Every rank's layers in checkpoint order and the summed solve time, on every rank.

        Returns:
            ``(layers, solve seconds summed over the ranks)``.

        Raises:
            RankError: the first failed rank and its cause, on every rank (never a hang: the
                collective has the process group's timeout).
        """
        self.exchanged = True
        distributed.store_add(self.key + "/finished", 1)
        if self.progress is not None and error is None:
            deadline = time.monotonic() + distributed.timeout_s()
            while time.monotonic() < deadline:
                done = distributed.store_add(self.key + "/done", 0) or 0
                work_done = distributed.store_add(self.key + "/work", 0) or 0
                self.reporter("waiting for the other ranks", done, float(work_done))
                if (distributed.store_add(self.key + "/finished", 0) or 0) >= self.world:
                    break
                time.sleep(0.2)
        parts = distributed.all_gather_object((part, error))
        failed = [(r, cause) for r, (_, cause) in enumerate(parts) if cause is not None]
        if failed:
            raise distributed.RankError(*failed[0])
        merged: list[tuple[int, LayerResult]] = []
        for (indices, layers, _), _ in parts:
            merged += zip(indices, layers, strict=True)
        merged.sort(key=lambda pair: pair[0])
        return [layer for _, layer in merged], sum(p[2] for p, _ in parts)


def analyze_checkpoint(
    source: str | Path | Checkpoint,
    config: AnalyzeConfig | None = None,
    progress: Progress | None = None,
) -> AnalysisReport:
    """Analyse every weight matrix of a checkpoint.

    ``source`` is a path (file, sharded directory) or an open
    :class:`~spectracli.io.base.Checkpoint` (e.g. :func:`spectracli.io.memory.memory_checkpoint`
    of a model in memory). ``spectracli.analyze(obj, **options)`` is the friendlier front.

    With ``config.base`` set (a path or a Checkpoint), each layer is analysed as W - W_base,
    matched by name and shape.

    Under ``torchrun`` (or in an initialised process group of several ranks) the layers are
    sharded over the ranks (:func:`shard_items`), each rank reads only its tensors, and every
    rank returns the same report (layers in checkpoint order, each with the ``rank`` that solved
    it; ``settings.world_size``); ``progress`` is called on rank 0 for the whole job.

    Returns:
        The :class:`~spectracli.results.AnalysisReport`: one layer per analysed matrix (ESD
        metrics, power-law and FARMS fits; definitions in docs/metrics.md), the skipped tensors
        with their reasons, the settings and the timing.

    Raises:
        SpectraTypeError: a ``progress`` that is not callable (a ``TypeError``).
        SpectraError: a bad option, no matrix in common with ``base``, or ``include`` /
            ``exclude`` that select none of the weight matrices; under torchrun a
            :class:`~spectracli.distributed.RankError` naming the first rank that failed.
        CheckpointError: a checkpoint that cannot be read (``CheckpointNotFoundError``, also a
            ``FileNotFoundError``, when it does not exist), or ``NoWeightMatricesError`` when
            it holds no weight matrix (every tensor skipped: the message counts the reasons).
    """
    config = config or AnalyzeConfig()
    if progress is not None and not callable(progress):
        raise SpectraTypeError(
            "progress must be a callable progress(done, total, name) or None, got "
            f"{type(progress).__name__}", params=("progress",))
    distributed.init()  # no-op unless launched by torchrun
    if distributed.world_size() == 1:
        return _analyze(source, config, progress, None)
    job = _Job(progress)
    try:
        return _analyze(source, config, None, job)
    except Exception as exc:
        if job.exchanged:
            raise
        job.exchange(None, distributed.error_cause(exc))
        raise  # not reached: exchange raises the first failure on every rank


def solved_in_order(
    pool: ThreadPoolExecutor,
    items: Sequence[tuple[_LoadGroup, MatrixPlan]],
    solve: Callable[[tuple[_LoadGroup, MatrixPlan]], tuple[LayerResult, float]],
    workers: int,
    submitted: Callable[[str], None] | None = None,
) -> Iterator[tuple[LayerResult, float]]:
    """The analyze scheduler: ``solve``'s results in item order, at most ``workers`` in flight.

    A load group above ``BIG_TENSOR_BYTES`` is solved with no other group in flight (its parts
    still in parallel), so memory holds at most ``workers`` ordinary tensors or one big one.
    ``submitted(name)`` is called as each item is submitted.

    Yields:
        ``solve(item)`` for each item, in item order.
    """
    pending: deque[tuple[Future, _LoadGroup, bool]] = deque()
    for item in items:
        if submitted:
            submitted(item[1].name)
        group = item[0]
        big = group.stored_bytes > BIG_TENSOR_BYTES
        while pending and (
            len(pending) >= workers
            or (pending[-1][1] is not group and (big or pending[-1][2]))
        ):
            yield pending.popleft()[0].result()
        pending.append((pool.submit(solve, item), group, big))
    while pending:
        yield pending.popleft()[0].result()


def _analyze(
    source: str | Path | Checkpoint,
    config: AnalyzeConfig,
    progress: Progress | None,
    job: _Job | None,
) -> AnalysisReport:
    """analyze_checkpoint on this rank (``job``: the distributed side, None for one process).

    Returns:
        The report (under torchrun, every rank's layers in checkpoint order).

    Raises:
        SpectraError: invalid settings, or a base with no weight matrix in common, or
            include/exclude that select none of the weight matrices.
        NoWeightMatricesError: the checkpoint holds no weight matrix (every tensor skipped).
    """
    config.validate()
    world, my_rank = distributed.world_size(), distributed.rank()
    host, device = _where(config)
    on_gpu = device is not None and device.type == "cuda"
    workers = 1 if on_gpu else (config.threads or available_cores())
    started = time.perf_counter()
    solve_s = 0.0
    layers: list[LayerResult] = []
    with contextlib.ExitStack() as stack:
        base, base_source = _open_base(stack, config)
        ckpt = stack.enter_context(_open_source(source, config.trust_pickle, config.revision))
        handles = list(ckpt.handles())
        by_name = {h.name: h for h in handles}
        adapter = _adapter_config(ckpt.path if isinstance(ckpt.path, Path) else None)
        work, skipped = _plan(handles, config, base, ckpt.config, adapter)
        if base is not None and not work:
            raise SpectraError(
                f"{_shown(source)} and base {_shown(config.base)} have no weight matrix in "
                "common (matched by name and shape)"
            )
        if not work:
            unfiltered = replace(config, include=(), exclude=())
            error = _nothing_to_analyze(
                _shown(source), skipped, config,
                lambda: _plan(handles, unfiltered, base, ckpt.config, adapter))
            raise error
        _check_base_match(_shown(source), work, skipped, config)

        items = _load_groups(work, by_name, base, device)
        owner = shard_items(items, config, world)  # the rank that solves each item
        costs = [plan_cost(plan, config) for _, plan in items]
        reporter = _Reporter(progress if job is None else job.progress, len(items), sum(costs))
        mine = [i for i, r in enumerate(owner) if r == my_rank]
        if job is not None:
            job.reporter = reporter
            items, costs = [items[i] for i in mine], [costs[i] for i in mine]

        solve = functools.partial(_solve_item, config=config, by_name=by_name)

        # Matrices are solved by `workers` threads with one BLAS thread each (numpy and torch
        # release the GIL in their kernels): on small CPUs this beats multi-threaded BLAS, which
        # measured slower with 2 threads than with 1 (benchmarks/analyze_bench.py --methods). At
        # most `workers` load groups (a tensor, or the tensors one matrix is built from) are in
        # memory at once; a large one is solved alone (its parts in parallel); results keep
        # checkpoint order.
        # float32 window solves on the CPU use scipy's LAPACK, whose own BLAS must be loaded
        # before the limit is set
        scipy = ("scipy.linalg",) if not on_gpu and _float32_windows(items, config) else ()
        with blas_threads(None if on_gpu else 1, load=scipy), ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="spectracli"
        ) as pool:
            # one process: what is submitted names the bar; torchrun: the job's counters do
            solved, submitted = (reporter.solved, reporter) if job is None else (job.solved, None)
            results = solved_in_order(pool, items, solve, workers, submitted)
            for (layer, seconds), cost in zip(results, costs, strict=True):
                layer.rank = my_rank
                layers.append(layer)
                solve_s += seconds
                solved(layer.name, cost)
        if job is not None:  # every rank's layers (or its error) on every rank
            layers, solve_s = job.exchange((mine, layers, solve_s), None)
        reporter("", reporter.total, reporter.total_work)
        source = _source_info(source, ckpt, len(handles), base_source)
    return AnalysisReport(
        tool_version=__version__,
        created=_timestamp(),
        source=source,
        settings={**config.settings(host if device is None else str(device)),
                  "world_size": world},
        layers=layers,
        skipped=skipped,
        timing={
            "total_s": round(time.perf_counter() - started, 4),
            "solve_s": round(solve_s, 4),
        },
    )


def _where(config: AnalyzeConfig) -> tuple[str | None, torch.device | None]:
    """Where the math runs: the host CPU (numpy) or a torch device.

    Returns:
        ``(host, None)`` on the CPU, where the math runs in numpy (known without importing torch
        when :func:`~spectracli.device.host_device` says so), else ``(None, device)``.
    """
    host = host_device(config.device)
    device = None if host else resolve_device(config.device)
    if device is not None and device.type == "cpu":
        host, device = str(device), None
    return host, device


def _open_base(stack: contextlib.ExitStack, config: AnalyzeConfig) -> tuple[
        dict[str, TensorHandle] | None, dict[str, Any] | None]:
    """The base checkpoint of ``W - W_base``, opened on ``stack``, when ``config.base`` is set.

    Returns:
        ``(handles by name and alias, the report's base source)``, or ``(None, None)``.
    """
    if config.base is None:
        return None, None
    base_ckpt = stack.enter_context(_open_source(config.base, config.trust_pickle))
    base = {alias: h for h in base_ckpt.handles() for alias in (h.name, *h.aliases)}
    return base, {"path": _shown(config.base), "format": base_ckpt.format}


def _solve_item(item: tuple[_LoadGroup, MatrixPlan], config: AnalyzeConfig,
                by_name: dict[str, TensorHandle]) -> tuple[LayerResult, float]:
    """Build one plan's matrices (minus the base's) and analyse them.

    Returns:
        The layer result (provenance, aliases and quantisation type set) and the seconds its
        solve took.
    """
    group, plan = item
    try:
        tensors, base_tensors = group.tensors()
        weight = plan.build(tensors)
        if base_tensors is not None and plan.subtract_base:
            # a difference needs the working precision first
            xp = namespace(weight)
            dtype = float_dtype(xp, config.dtype)
            weight = xp.astype(weight, dtype) - xp.astype(plan.build(base_tensors), dtype)
        t0 = time.perf_counter()
        layer = analyze_matrices(
            plan.name, as_stack(weight, plan), plan,
            config if plan.farms else replace(config, farms=False),
            plan.shape, plan.dtype,
        )
    finally:
        group.done()
    _add_provenance(layer, plan)
    layer.aliases = _result_aliases(plan, by_name)
    quant = {by_name[s].meta.get("quant_type") for s in plan.sources if s in by_name}
    layer.quant_type = quant.pop() if len(quant) == 1 else None  # e.g. GGUF "Q4_K"
    return layer, time.perf_counter() - t0


def _source_info(source: str | Path | Checkpoint, ckpt: Checkpoint, n_tensors: int,
                 base_source: dict[str, Any] | None) -> dict[str, Any]:
    """The report's ``source``: path, format, size, tensors, base, hub resolution, stubs.

    Returns:
        The ``source`` dict of the report.
    """
    info: dict[str, Any] = {
        "path": _shown(source),
        "format": ckpt.format,
        "size_bytes": ckpt.size_bytes,
        "n_tensors": n_tensors,
        "base": base_source,
    }
    if ckpt.hub:  # a Hugging Face id: what it resolved to
        info["hub"] = dict(ckpt.hub)
    if ckpt.stubbed_globals:  # pickle globals read as inert placeholders, never run
        info["stubbed_globals"] = list(ckpt.stubbed_globals)
    return info


# `spectracli.analyze(model, **options)` calls spectracli.api.analyze; the module stays a module
# (why and how: spectracli/api.py).
from spectracli.api import make_callable  # noqa: E402

make_callable(__name__)
