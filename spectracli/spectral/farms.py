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
  spread over the whole matrix. With 2000-row windows and the default budget 2, a square matrix
  of up to 2048 rows gets one window (released: 100 nearly identical ones), a 5632 x 2048
  projection 3, a 32000 x 2048 embedding 10. Window size is kept as released on purpose: the
  tail of a sub-window's ESD depends on the window size (measured: half-size windows move a
  Pareto-2.5 matrix's FARMS alpha from 2.57 to 3.18), much less on the number of windows.
  Agreement with ``released`` (budget 1: 10 of 12 synthetic heavy-tailed matrices inside the
  released fit's alpha_ci, budget 2: 11, budget 4: 12) and the costs of both:
  ``python benchmarks/farms_grid_study.py``.

``farms_esd`` takes a numpy array or a torch tensor (spectracli.spectral.arrays): one code path,
solved by the array's own library on its own device.

Example::

    >>> g = farms_grid(1024, 256, window=128, ratio=1.0, steps=4)
    >>> (g.rows, g.cols, len(g.row_offsets), len(g.col_offsets))
    (128, 128, 4, 4)
    >>> b = farms_grid(32000, 2048, window=2000, layout="bounded")
    >>> (b.rows, b.cols, len(b.row_offsets), b.col_offsets)
    (2000, 2000, 10, (0,))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spectracli.spectral.arrays import namespace
from spectracli.spectral.esd import BLOCK_ELEMENTS, squared_singular_values

FARMS_LAYOUTS = ("bounded", "released")
# eigvalsh of a k x k matrix costs about EIGH_COST times k^3 multiply-adds of a Gram product
# (float64, one thread: 2.3-3.5 for k = 256-1024, ``benchmarks/farms_grid_study.py --cost-model``).
EIGH_COST = 2.5
# A dimension whose windows span this share of it gets no more windows (2000 of 2048: one).
COVERED = 0.9


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
    budget: float = 2.0,
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


def farms_esd(
    w: Any,
    window: int = 2000,
    ratio: float = 1.0,
    steps: int = 10,
    normalize: bool = False,
    dtype: Any = "float64",
    layout: str = "released",
    budget: float = 2.0,
) -> tuple[Any, FarmsGrid]:
    """Pooled ESD (ascending) of the FARMS windows of ``w`` (one matrix or a stack of slices).

    Args:
        w: (m, n) or (..., m, n) numpy array or torch tensor, any float storage dtype.
        window: the largest window row count (:func:`farms_grid`).
        ratio: the window aspect ratio cols / rows.
        steps: offsets per dimension of the released grid.
        normalize: divide each window's eigenvalues by max(r, c).
        dtype: working dtype of the window solves (``"float64"`` or ``"float32"``).
        layout: ``"released"`` or ``"bounded"`` (:func:`farms_grid`).
        budget: the bounded grid's cost budget (:func:`farms_grid`).

    Returns:
        (1-d pooled lambda in ``w``'s library and on its device, ascending; the grid).

    Windows are solved batched, in chunks of at most ``BLOCK_ELEMENTS`` entries (64 MB of
    float64).
    """
    xp = namespace(w)
    mats = xp.reshape(w, (-1, w.shape[-2], w.shape[-1]))
    grid = farms_grid(mats.shape[-2], mats.shape[-1], window, ratio, steps, layout, budget)
    per_chunk = max(1, BLOCK_ELEMENTS // (grid.rows * grid.cols))
    pooled = []
    offsets = [(i, j) for i in grid.row_offsets for j in grid.col_offsets]
    for index in range(mats.shape[0]):
        m = mats[index]
        for start in range(0, len(offsets), per_chunk):
            part = offsets[start : start + per_chunk]
            chunk = xp.stack([m[i : i + grid.rows, j : j + grid.cols] for i, j in part])
            lam = squared_singular_values(chunk, method="gram", dtype=dtype)
            pooled.append(xp.reshape(lam, (-1,)))
    lam = xp.concat(pooled)
    if normalize:
        lam = lam / max(grid.rows, grid.cols)
    return xp.sort(lam), grid
