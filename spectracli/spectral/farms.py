"""FARMS: fixed-aspect-ratio matrix subsampling (Hu et al., ICML 2025).

The ESD of an i.i.d. N x M matrix follows Marchenko-Pastur with Q = N / M, so a heavy-tail alpha
fitted on the full matrix depends on its shape. FARMS lays windows of one fixed aspect ratio
(square by default) on an evenly spaced grid over W, pools the eigenvalues of all windows into one
ESD (equal window sizes, so pooling = averaging the window ESDs) and fits it once.

Two layouts of the windows (``layout``), with the same window shape (r, c): rows
r = min(window, rows, cols / ratio), columns c = r * ratio:

- ``released`` (HUST-AI-HYZ/FARMS, exactly): per dimension ``steps`` offsets with
  step = max(1, (size - w) // (steps - 1)), clamped to the last valid offset. Repeated offsets (a
  window as long as the dimension) are dropped, so a square matrix with window = its size is one
  window: the full-matrix ESD. On a 2048-wide matrix with 2000-row windows this is 100 nearly
  identical windows, about 20x the cost of the plain ESD.
- ``bounded`` (the analysis default): only as many of those windows as a cost budget allows. The
  solve cost of an (r, c) matrix is modelled as r * c * k + E * k^3 (Gram product plus
  eigvalsh, k = min(r, c), E = ``EIGH_COST``, measured), and the windows together may cost at
  most ``budget`` times the plain ESD of the whole matrix (and are never more than ``released``
  lays). Starting from one window, a window is added along the dimension that is least covered
  (a dimension spanned to ``COVERED`` = 90 % needs no more) while the budget allows; each
  dimension's offsets are evenly spaced from the first valid one to the last, so the windows
  spread over the whole matrix. With 2000-row windows and the default budget 1 (FARMS then costs
  at most about twice the plain analysis), a square matrix of up to 2048 rows gets one window
  (released: 100 nearly identical ones), a 5632 x 2048 projection 1, a 32000 x 2048 embedding 5.
  Window size is kept as released on purpose: the tail of a sub-window's ESD depends on the
  window size (measured: half-size windows move a Pareto-2.5 matrix's FARMS alpha from 2.57 to
  3.18), much less on the number of windows.
  Agreement with ``released`` (the bounded alpha inside the released fit's alpha_ci, which
  counts the pooled tail at its independent share, :func:`independent_windows`): 12 of 12
  synthetic heavy-tailed matrices at budget 1 (tests/spectral/test_farms_mp.py), 27 of 28
  heavy-tailed and sample-model matrices at a quarter of LLM scale; the costs of both:
  ``python benchmarks/farms_grid_study.py``.

``farms_esd`` takes a numpy array or a torch tensor (spectracli.spectral.arrays): one code path,
solved by the array's own library on its own device.

Example::

    >>> g = farms_grid(1024, 256, window=128, ratio=1.0, steps=4)
    >>> (g.rows, g.cols, len(g.row_offsets), len(g.col_offsets))
    (128, 128, 4, 4)
    >>> b = farms_grid(32000, 2048, window=2000, layout="bounded")
    >>> (b.rows, b.cols, len(b.row_offsets), b.col_offsets)
    (2000, 2000, 5, (0,))
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectracli.options import FarmsGrid
from spectracli.spectral.arrays import device, dtype_name, float_dtype, namespace
from spectracli.spectral.esd import BLOCK_ELEMENTS

FARMS_LAYOUTS = FarmsGrid.values()
# eigvalsh of a k x k matrix costs about EIGH_COST times k^3 multiply-adds of a Gram product
# (float64, one thread: 2.3-3.5 for k = 256-1024, ``benchmarks/farms_grid_study.py --cost-model``).
EIGH_COST = 2.5
# A dimension whose windows span this share of it gets no more windows (2000 of 2048: one).
COVERED = 0.9
# Window solves in float32: a float32 eigvalsh of a k x k Gram matrix is off by at most
# p(k) eps32 lambda_max (the rounding of G to float32 plus the solver's backward error; the
# worst case takes p(k) = k). Measured on Gaussian and Pareto windows (k = 256..2000): 4-150
# eps32 lambda_max, 14-70x below k. So a float32 solve measures its error on one reference
# window solved in both precisions and bounds every eigenvalue by FLOAT32_SAFETY times that.
FARMS_PRECISIONS = ("auto", "float64", "float32")
EPS32 = float(np.finfo(np.float32).eps)
FLOAT32_SAFETY = 8.0
# ``auto``: float32 windows (the fit then checked, float32_alpha_bound) of at least
# FLOAT32_MIN_SIZE rows and columns on CUDA, and on the CPU of at least FLOAT32_MIN_SIZE_CPU
# from FLOAT32_MIN_WINDOWS windows on (the reference windows cost three float64 solves more;
# small windows gain nothing to speak of).
# The first window, solved in both precisions, decides before the others are solved
# (farms_spectrum's ``decide``): float32 for all when its fit's bound is within the tolerance.
FLOAT32_MIN_WINDOWS = 8
FLOAT32_MIN_SIZE = 256
# On the CPU float32 windows also need scipy (numpy's float32 eigvalsh is no faster than float64),
# whose import costs ~0.27 s, while a float32 k x k solve saves 1.6 ms at k = 384, 29 ms at 1024
# and ~200 ms at 2000 (one OpenBLAS thread, this project's 2-core box): from 1024 on it pays
# within a grid's windows (all-MiniLM-L6-v2's 10 windows of 384 would not: +0.2 s to its start).
FLOAT32_MIN_SIZE_CPU = 1024
# A float32 FARMS fit stands when its alpha bound is at most max(ALPHA_ATOL, ALPHA_SE_SHARE se),
# se the Hill standard error of the tail counted at its independent share
# (float32_alpha_tolerance).
ALPHA_ATOL = 0.01
ALPHA_SE_SHARE = 0.1


@dataclass(frozen=True)
class FarmsGrid:
    """The FARMS windows on one matrix: shape (rows, cols) and the offsets of their corners."""

    rows: int
    cols: int
    row_offsets: tuple[int, ...]
    col_offsets: tuple[int, ...]

    @property
    def n_windows(self) -> int:
        """The number of windows: one per (row offset, column offset) pair."""
        return len(self.row_offsets) * len(self.col_offsets)


def solve_cost(rows: int, cols: int) -> float:
    """Modelled cost of one ESD solve of a rows x cols matrix, in Gram multiply-adds."""
    k = min(rows, cols)
    return rows * cols * k + EIGH_COST * k**3


def _offsets(size: int, w: int, steps: int) -> tuple[int, ...]:
    last = size - w
    if steps <= 1 or last == 0:
        return (0,)
    step = max(1, last // (steps - 1))
    return tuple(sorted({min(i * step, last) for i in range(steps)}))


def _spread(size: int, w: int, count: int) -> tuple[int, ...]:
    """``count`` evenly spaced offsets of a length-``w`` window, first 0, last size - w."""
    last = size - w
    if count <= 1 or last == 0:
        return (0,)
    return tuple(sorted({round(i * last / (count - 1)) for i in range(count)}))


def _bounded_counts(
    shape: tuple[int, int], window: tuple[int, int], most: tuple[int, int], budget: float
) -> tuple[int, int]:
    """Windows per dimension: one more where coverage is least, while the budget allows."""
    allowed = max(1, int(budget * solve_cost(*shape) / solve_cost(*window)))
    counts = [1, 1]
    while counts[0] * counts[1] < allowed:
        cover = [counts[d] * window[d] / shape[d] for d in (0, 1)]
        growable = [d for d in (0, 1) if counts[d] < most[d] and cover[d] < COVERED]
        if not growable:
            break
        d = min(growable, key=lambda d: cover[d])
        counts[d] += 1
        if counts[0] * counts[1] > allowed:
            counts[d] -= 1
            break
    return counts[0], counts[1]


def farms_grid(
    rows: int,
    cols: int,
    window: int = 2000,
    ratio: float = 1.0,
    steps: int = 10,
    layout: str = "released",
    budget: float = 1.0,
) -> FarmsGrid:
    """The window shape and offsets FARMS uses on a rows x cols matrix.

    Args:
        rows: the matrix's row count.
        cols: the matrix's column count.
        window: the largest window row count (released FARMS: 2000 for LLMs, 100 for CNNs).
        ratio: the window aspect ratio cols / rows (1: square).
        steps: offsets per dimension of the ``released`` layout, the most ``bounded`` lays.
        layout: ``"released"`` or ``"bounded"`` (module docstring).
        budget: ``bounded`` only: the windows' modelled solve cost is at most this times the
            plain ESD's (:func:`solve_cost`); one window is always laid.

    Returns:
        The :class:`FarmsGrid`: window shape and the row and column offsets.

    Raises:
        ValueError: window < 1, ratio <= 0, steps < 1, budget <= 0 or an unknown layout.
    """
    if window < 1 or ratio <= 0 or steps < 1 or not budget > 0:
        raise ValueError(
            "FARMS needs window >= 1, ratio > 0, steps >= 1 and budget > 0; got "
            f"{window}, {ratio}, {steps}, {budget}"
        )
    if layout not in FARMS_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(FARMS_LAYOUTS)}; got {layout!r}")
    r = max(1, min(window, rows, int(cols / ratio)))
    c = max(1, min(cols, round(r * ratio)))
    row_offsets, col_offsets = _offsets(rows, r, steps), _offsets(cols, c, steps)
    if layout == "released":
        return FarmsGrid(r, c, row_offsets, col_offsets)
    n_rows, n_cols = _bounded_counts(
        (rows, cols), (r, c), (len(row_offsets), len(col_offsets)), budget
    )
    return FarmsGrid(r, c, _spread(rows, r, n_rows), _spread(cols, c, n_cols))


@dataclass(frozen=True)
class FarmsSpectrum:
    """The pooled window ESD of one FARMS solve and how it was computed.

    ``lam``: 1-d pooled lambda, ascending, float64, in the input's library and on its device.
    ``dtype``: the precision of the window eigensolves, ``"float64"`` or ``"float32"``.
    ``error``: for float32 solves, the bound used for |d lambda| of every pooled eigenvalue
    (same units as ``lam``, normalised when it is): ``FLOAT32_SAFETY`` x the error measured on a
    reference window solved in both precisions (at least eps32 lambda_max); 0 for float64.
    """

    lam: Any
    grid: FarmsGrid
    dtype: str
    error: float


def _column_gram(xp: Any, m: Any, rows: tuple[int, int], cols: tuple[int, int], acc: Any) -> Any:
    """X^T X of the block m[r0:r1, c0:c1] in ``acc``, converted a row block at a time."""
    (r0, r1), (c0, c1) = rows, cols
    step = max(1, BLOCK_ELEMENTS // max(1, c1 - c0))
    g = None
    for start in range(r0, r1, step):
        x = xp.astype(m[start : min(start + step, r1), c0:c1], acc)
        part = xp.matrix_transpose(x) @ x
        g = part if g is None else g + part
    return g


def window_grams(
    m: Any, grid: FarmsGrid, acc: Any = "float64"
) -> Iterator[tuple[int, int, Any]]:
    """The Gram matrix of every window of ``grid`` on the 2-d ``m``, built from shared strips.

    The Gram matrix of a window is the sum of those of its row strips, and its column block is a
    principal submatrix of the Gram matrix of any wider column range. So the windows of one
    column range (or of the whole column span, when that costs less: span^2 <= n_cols c^2) share
    one running Gram matrix: the first row window's is computed, each next one adds the strip
    that enters and subtracts the one that leaves (recomputed instead when they overlap by half
    or less), and each window's Gram is a view into it. Cost: about the rows x span^2 of one
    pass plus thin updates, instead of windows x r c^2. In ``acc`` (float64: exact for bf16 and
    fp16 storage, whose products and sums of a few thousand fit in 53 bits; eps64 otherwise).

    Args:
        m: (rows, cols) numpy array or torch tensor, any float storage dtype.
        grid: the windows (:func:`farms_grid`), with ``grid.rows >= grid.cols`` (transpose
            ``m`` and the grid otherwise: the Gram matrix is taken over the shorter side).
        acc: the dtype the Gram matrices are accumulated in.

    Yields:
        (row offset, column offset, (c, c) Gram matrix X^T X of that window), row offset by
        row offset; the matrix is a view, valid until the next one is taken.

    Raises:
        ValueError: ``grid.rows < grid.cols``.
    """
    if grid.rows < grid.cols:
        raise ValueError(
            f"window_grams needs grid.rows >= grid.cols, got {grid.rows} x {grid.cols}"
        )
    xp = namespace(m)
    acc = float_dtype(xp, acc)
    r, c = grid.rows, grid.cols
    cols = grid.col_offsets
    span = cols[-1] + c - cols[0]
    clusters = [cols] if span * span <= len(cols) * c * c else [(j,) for j in cols]
    for cluster in clusters:
        a, b = cluster[0], cluster[-1] + c
        run, prev = None, 0
        for i in grid.row_offsets:
            if run is None or 2 * (i - prev) >= r:
                run = _column_gram(xp, m, (i, i + r), (a, b), acc)
            else:
                run = run + _column_gram(xp, m, (prev + r, i + r), (a, b), acc)
                run = run - _column_gram(xp, m, (prev, i), (a, b), acc)
            prev = i
            for j in cluster:
                yield i, j, run[j - a : j - a + c, j - a : j - a + c]


def _eigvalsh_batch(xp: Any, batch: list[Any], scale: float = 1.0) -> Any:
    """Eigenvalues of a list of equal-shape symmetric matrices, one batched solve, float64.

    numpy.linalg solves float32 input in float64 (no faster), so float32 numpy matrices go to
    LAPACK's ssyevd through scipy.linalg.eigh, one at a time.

    Returns:
        The eigenvalues of all matrices, ascending per matrix, concatenated, float64, times
        ``scale`` (the factor the matrices were divided by).
    """
    lam = _eigvalsh_unscaled(xp, batch)
    return lam if scale == 1.0 else lam * scale


def _eigvalsh_unscaled(xp: Any, batch: list[Any]) -> Any:
    f64 = float_dtype(xp, "float64")
    if isinstance(batch[0], np.ndarray) and batch[0].dtype == np.float32:
        from scipy.linalg import eigh  # its OpenBLAS: loaded by analyze before limiting BLAS

        return np.concatenate([
            eigh(g, eigvals_only=True, driver="evd", overwrite_a=True, check_finite=False)
            for g in batch
        ]).astype(np.float64)
    lam = xp.linalg.eigvalsh(batch[0][None, ...] if len(batch) == 1 else xp.stack(batch))
    return xp.reshape(xp.astype(lam, f64), (-1,))


class _Solver:
    """Window eigvalsh calls in batches, in line or on a thread pool; results in ``pooled``.

    ``ratio_32``: the largest |lambda_32 - lambda_64| / (eps32 lambda_max) of the reference
    windows (at least 1).
    """

    def __init__(self, xp: Any, workers: int, batch: int, scale: float = 1.0) -> None:
        self.xp, self.workers, self.batch, self.scale = xp, workers, batch, scale
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self.pending: deque[Future] = deque()
        self.chunk: list[Any] = []
        self.pooled: list[Any] = []
        self.ratio_32 = 1.0

    def __enter__(self) -> _Solver:
        return self

    def add(self, g: Any) -> None:
        """Queue one Gram matrix (a copy the caller will not touch again)."""
        self.chunk.append(g)
        if len(self.chunk) >= self.batch:
            self._flush()

    def reference(self, g: Any, low_dtype: Any) -> None:
        """Solve ``g`` in float64 (pooled) and in ``low_dtype`` (compared), in line."""
        exact = _eigvalsh_batch(self.xp, [g])
        low = _eigvalsh_batch(self.xp, [self.xp.astype(g / self.scale, low_dtype)], self.scale)
        top = float(exact[-1])
        if top > 0:
            gap = float(self.xp.max(self.xp.abs(low - exact)))
            self.ratio_32 = max(self.ratio_32, gap / (EPS32 * top))
        self.pooled.append(exact)

    def _flush(self) -> None:
        part, self.chunk = self.chunk, []
        if self.pool is None:
            self.pooled.append(_eigvalsh_batch(self.xp, part, self.scale))
            return
        self.pending.append(self.pool.submit(_eigvalsh_batch, self.xp, part, self.scale))
        while len(self.pending) > 2 * self.workers:  # bounds the Gram copies in flight
            self.pooled.append(self.pending.popleft().result())

    def __exit__(self, *exc: object) -> None:
        try:
            if self.chunk and exc[0] is None:
                self._flush()
            while self.pending:
                future = self.pending.popleft()
                if exc[0] is None:
                    self.pooled.append(future.result())
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def farms_spectrum(
    w: Any,
    window: int = 2000,
    ratio: float = 1.0,
    steps: int = 10,
    normalize: bool = False,
    dtype: Any = "float64",
    layout: str = "released",
    budget: float = 1.0,
    *,
    workers: int = 1,
    batch: int | None = None,
    decide: Callable[[Any, float], bool] | None = None,
) -> FarmsSpectrum:
    """The pooled FARMS ESD of ``w`` (one matrix or a stack of slices), solved window by window.

    Window Gram matrices come from shared strips in float64 (:func:`window_grams`); each is
    solved by eigvalsh in ``dtype``. With ``dtype`` float32 three windows (the first, middle and
    last) are solved in both precisions and the largest measured difference sets
    :attr:`FarmsSpectrum.error`; ``decide``, given the first window's float64 eigenvalues and the
    error bound float32 would carry, keeps float32 for the rest (True) or solves them in float64
    (False: the spectrum is then float64 throughout, error 0), before any other window is solved.

    Args:
        w: (m, n) or (..., m, n) numpy array or torch tensor (any device), any float dtype.
        window: the largest window row count (:func:`farms_grid`).
        ratio: the window aspect ratio cols / rows.
        steps: offsets per dimension of the released grid.
        normalize: divide each window's eigenvalues by max(r, c).
        dtype: precision of the window eigensolves, ``"float64"`` or ``"float32"``.
        layout: ``"released"`` or ``"bounded"`` (:func:`farms_grid`).
        budget: the bounded grid's cost budget (:func:`farms_grid`).
        workers: threads solving windows in parallel (eigvalsh releases the GIL); 1: in line.
        batch: windows per eigvalsh call; ``None``: one on the CPU, as many as fit in
            ``BLOCK_ELEMENTS`` entries on CUDA (one batched solve per chunk).
        decide: with float32, called once with (the first window's eigenvalues, ascending, in
            the units of the result; the |d lambda| bound of a float32 solve in those units,
            from that window's lambda_max); False solves every window in float64. ``None``:
            float32 throughout. A prediction: the pooled fit is the one to check (windows
            elsewhere may reach a larger lambda_max; :attr:`FarmsSpectrum.error` uses the
            pooled one).

    Returns:
        The :class:`FarmsSpectrum` (pooled lambda ascending, grid, solve dtype, error bound).

    Raises:
        ValueError: a bad grid setting (:func:`farms_grid`), ``workers`` or ``batch`` < 1, or a
            solve dtype other than float32 / float64.
    """
    xp = namespace(w)
    solve = float_dtype(xp, dtype)
    name = dtype_name(dtype)
    if name not in ("float32", "float64") or workers < 1 or (batch is not None and batch < 1):
        raise ValueError(f"dtype must be float32 or float64, workers and batch >= 1; got "
                         f"{dtype!r}, {workers}, {batch}")
    mats = xp.reshape(w, (-1, w.shape[-2], w.shape[-1]))
    grid = farms_grid(mats.shape[-2], mats.shape[-1], window, ratio, steps, layout, budget)
    oriented = grid
    if grid.rows < grid.cols:  # the Gram matrix over the shorter side: work on the transpose
        mats = xp.matrix_transpose(mats)
        oriented = FarmsGrid(grid.cols, grid.rows, grid.col_offsets, grid.row_offsets)
    k = oriented.cols
    if batch is None:
        on_gpu = getattr(device(w), "type", "cpu") == "cuda"
        batch = max(1, BLOCK_ELEMENTS // (k * k)) if on_gpu else 1
    total = grid.n_windows * mats.shape[0]
    # float32: three windows spread over the grid are also solved in float64 (module docstring)
    references = {0, total // 2, total - 1} if name == "float32" else set()
    unit = 1.0 / max(grid.rows, grid.cols) if normalize else 1.0
    with _Solver(xp, workers, batch, _float32_scale(xp, mats, grid) if name == "float32"
                 else 1.0) as solver:
        count = 0
        for index in range(mats.shape[0]):
            for _, _, g in window_grams(mats[index], oriented):
                if count in references:
                    solver.reference(g, solve)
                else:
                    solver.add(xp.astype(g / solver.scale, solve, copy=True))
                if count == 0 and name == "float32" and decide is not None:
                    first = solver.pooled[0]
                    bound = _float32_error(k, solver.ratio_32, float(first[-1]))
                    if not decide(first * unit, bound * unit):  # the rest in float64
                        solve, name, references = float_dtype(xp, "float64"), "float64", set()
                        solver.scale = 1.0
                count += 1
    lam = xp.sort(xp.clip(xp.concat(solver.pooled), min=0.0)) * unit
    biggest = float(lam[-1]) if lam.shape[0] else 0.0
    error = _float32_error(k, solver.ratio_32, biggest) if name == "float32" else 0.0
    return FarmsSpectrum(lam, grid, name, error)


def _float32_scale(xp: Any, mats: Any, grid: FarmsGrid) -> float:
    """The power of two window Gram matrices are divided by before a float32 solve.

    Every Gram entry is at most r max|w|^2 (r rows of a window); divided by that, rounded to a
    power of two (exact in float64), the entries lie in [-1, 1]: weights of 1e20 or 1e-30 do not
    overflow or underflow float32 (measured before: LinAlgError at 1e20, all zero at 1e-30).

    Returns:
        The factor (1.0 for an all-zero input).
    """
    amax = max(float(xp.max(mats)), -float(xp.min(mats)))  # no |w| copy of the matrices
    if not amax > 0 or not math.isfinite(amax):
        return 1.0
    return 2.0 ** round(math.log2(amax) * 2 + math.log2(max(grid.rows, grid.cols)))


def _float32_error(k: int, ratio_32: float, top: float) -> float:
    """|d lambda| bound of a float32 k x k window solve: min(k, 8 ratio) eps32 lambda_max."""
    return min(k, FLOAT32_SAFETY * ratio_32) * EPS32 * top


def farms_esd(
    w: Any,
    window: int = 2000,
    ratio: float = 1.0,
    steps: int = 10,
    normalize: bool = False,
    dtype: Any = "float64",
    layout: str = "released",
    budget: float = 1.0,
) -> tuple[Any, FarmsGrid]:
    """Pooled ESD (ascending) of the FARMS windows of ``w``: :func:`farms_spectrum`'s lambda.

    Args:
        w: (m, n) or (..., m, n) numpy array or torch tensor, any float storage dtype.
        window: the largest window row count (:func:`farms_grid`).
        ratio: the window aspect ratio cols / rows.
        steps: offsets per dimension of the released grid.
        normalize: divide each window's eigenvalues by max(r, c).
        dtype: precision of the window solves (``"float64"`` or ``"float32"``).
        layout: ``"released"`` or ``"bounded"`` (:func:`farms_grid`).
        budget: the bounded grid's cost budget (:func:`farms_grid`).

    Returns:
        (1-d pooled lambda in ``w``'s library and on its device, ascending, float64; the grid).

    Raises:
        ValueError: as :func:`farms_spectrum`.
    """
    spec = farms_spectrum(w, window, ratio, steps, normalize, dtype, layout, budget)
    return spec.lam, spec.grid


def window_dtype(precision: str, n_windows: int, on_gpu: bool, size: int = 2000) -> str:
    """The precision of the window eigen solves that ``precision`` stands for.

    Args:
        precision: ``"auto"``, ``"float64"`` or ``"float32"`` (``FARMS_PRECISIONS``).
        n_windows: the windows of the layer (all slices).
        on_gpu: whether the solves run on CUDA.
        size: the window's smaller side k (its Gram matrix is k x k).

    Returns:
        ``"float32"`` or ``"float64"``: ``auto`` is float32 for windows of at least
        ``FLOAT32_MIN_SIZE`` on CUDA, and on the CPU for windows of at least
        ``FLOAT32_MIN_SIZE_CPU`` from ``FLOAT32_MIN_WINDOWS`` windows on (the caller then checks
        the fit), else float64.

    Raises:
        ValueError: an unknown ``precision``.
    """
    if precision not in FARMS_PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(FARMS_PRECISIONS)}; got {precision!r}"
        )
    if precision != "auto":
        return precision
    if on_gpu:
        return "float32" if size >= FLOAT32_MIN_SIZE else "float64"
    many = n_windows >= FLOAT32_MIN_WINDOWS
    return "float32" if many and size >= FLOAT32_MIN_SIZE_CPU else "float64"


def float32_alpha_bound(lam: Any, xmin: float, alpha: float, error: float) -> float:
    """How far ``alpha`` can be from the MLE of the exact eigenvalues, at the same tail.

    alpha = 1 + n / S, S = sum_j ln(lambda_j / xmin) over the n tail eigenvalues lambda_j >= xmin
    (Clauset et al. 2009, eq. 3.1). When every eigenvalue is within ``error`` of its exact value,
    S lies between sum ln((lambda_j - error) / (xmin + error)) and sum ln((lambda_j + error) /
    (xmin - error)), and alpha between the two values they give; the bound
    is the larger distance. To first order it is (alpha - 1)^2 error (sum 1 / lambda_j + n / xmin)
    / n: the smallest tail eigenvalues dominate, as lambda_max / xmin.

    Args:
        lam: 1-d eigenvalues (numpy, or anything ``numpy.asarray`` reads), any order.
        xmin: the fit's xmin (> 0).
        alpha: the fit's alpha.
        error: |d lambda| bound of every eigenvalue (:attr:`FarmsSpectrum.error`).

    Returns:
        The bound; ``inf`` when ``error`` reaches xmin or the tail has no spread left.
    """
    lam = np.asarray(lam, dtype=np.float64)
    tail = lam[lam > xmin]  # the xmin eigenvalue's own term is ln(xmin / xmin) = 0
    n = tail.size + 1
    if not xmin > error:
        return math.inf
    low = np.sum(np.log((tail - error) / (xmin + error)))  # tail > xmin > error
    high = np.sum(np.log((tail + error) / (xmin - error)))
    if not low > 0:
        return math.inf
    return float(max(abs(1.0 + n / low - alpha), abs(1.0 + n / high - alpha)))


def float32_unresolved(lam: Any, sigma_zero: float | None, error: float) -> int:
    """How many eigenvalues the fit keeps that a float32 solve cannot tell from zero.

    The fit leaves out eigenvalues at or below ``sigma_zero``^2 (zero at the stored precision)
    and chooses xmin among all the others. A float32 solve moves every eigenvalue by up to
    ``error``: those the fit keeps yet lie within ``error`` of zero come out as noise, some
    clipped to 0 and dropped, so the set the xmin scan runs over changes, and with it, where two
    tails fit almost equally well, the chosen tail (a rank-40 600 x 600 matrix plus 1e-4 noise:
    FARMS alpha 41.6 from 47 eigenvalues in float32, 7.5 from 560 in float64). float32 stands
    for float64 only where this count is 0.

    Args:
        lam: eigenvalues (numpy), float64 solve, any order.
        sigma_zero: the fit's zero level for singular values (None: 0).
        error: the float32 |d lambda| bound (:attr:`FarmsSpectrum.error`).

    Returns:
        The number of eigenvalues in (sigma_zero^2, error].

    Example:
        >>> float32_unresolved(np.array([0.0, 1e-9, 1e-3, 1.0]), 1e-6, 1e-4)  # 1e-9 only
        1
    """
    lam = np.asarray(lam, dtype=np.float64)
    floor = (sigma_zero or 0.0) ** 2
    return int(np.count_nonzero((lam > floor) & (lam <= error)))


def independent_windows(grid: FarmsGrid, n_matrices: int = 1) -> float:
    """How many windows' worth of distinct entries the windows of ``grid`` hold together.

    Per matrix, min(windows, R C / (r c)) with R and C the rows and columns the windows cover
    (the union of their offset ranges): overlapping windows repeat entries, and so repeat
    eigen-information (the released grid's 100 windows of 2000 x 2000 on a 2048 x 2048 matrix
    share 95 % of their rows and columns: 1.05 windows' worth), disjoint ones do not, and
    entries no window covers add nothing (the released grid on a 32000 x 2048 embedding covers
    20000 of its rows: 10.2).

    Args:
        grid: the windows (:func:`farms_grid`), r x c each.
        n_matrices: the matrices (slices) the layer pools, each with the same grid.

    Returns:
        The count, between min(1, windows) and the number of windows, per matrix times
        ``n_matrices``.

    Example:
        >>> round(independent_windows(farms_grid(32000, 2048, 2000)), 3)  # 20000 x 2045 covered
        10.225
    """
    covered = _covered(grid.row_offsets, grid.rows) * _covered(grid.col_offsets, grid.cols)
    per_matrix = min(float(grid.n_windows), covered / (grid.rows * grid.cols))
    return n_matrices * per_matrix


def _covered(offsets: tuple[int, ...], width: int) -> int:
    """The length of the union of the ranges [o, o + width) over ``offsets`` (ascending)."""
    total, end = 0, None
    for o in offsets:
        start = o if end is None else max(o, end)
        total += o + width - start
        end = o + width
    return total


def float32_alpha_tolerance(alpha: float, tail_size: int, independent: float = 1.0) -> float:
    """How far float32 window solves may move a FARMS alpha.

    max(ALPHA_ATOL, ALPHA_SE_SHARE x se), se = (alpha - 1) / sqrt(independent x tail_size): the
    Hill estimator's standard error (Clauset et al. 2009, eq. 3.2) of a tail of that many
    independent eigenvalues. A pooled FARMS tail counts each overlapping window's eigenvalues
    again; ``independent`` is the share that is not repeated (:func:`independent_windows` /
    windows pooled), so the tolerance is a tenth of the uncertainty the windows really carry,
    not of the pooled count's (which on the released grid of a 2048 x 2048 matrix is 10x too
    small, and would refuse float32 for a difference far below any other error of the fit).

    Args:
        alpha: the fit's alpha (> 1).
        tail_size: the eigenvalues in the fitted tail (>= 1).
        independent: the share of them that is independent (1: all; pooled windows:
            independent_windows / windows; one window standing for a grid: independent_windows).

    Returns:
        The tolerance, at least ``ALPHA_ATOL``.
    """
    effective = max(independent * tail_size, 1.0)
    return max(ALPHA_ATOL, ALPHA_SE_SHARE * (alpha - 1.0) / math.sqrt(effective))
