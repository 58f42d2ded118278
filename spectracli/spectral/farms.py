"""FARMS: fixed-aspect-ratio matrix subsampling (Hu et al., ICML 2025).

The ESD of an i.i.d. N x M matrix follows Marchenko-Pastur with Q = N / M, so a heavy-tail alpha
fitted on the full matrix depends on its shape. FARMS lays windows of one fixed aspect ratio
(square by default) on an evenly spaced grid over W, pools the eigenvalues of all windows into one
ESD (equal window sizes, so pooling = averaging the window ESDs) and fits it once.

Grid, as released (HUST-AI-HYZ/FARMS): window rows r = min(window, rows, cols / ratio), columns
c = r * ratio; per dimension ``steps`` offsets with step = max(1, (size - w) // (steps - 1)),
clamped to the last valid offset. Repeated offsets (a window as long as the dimension) are
dropped, so a square matrix with window = its size is one window: the full-matrix ESD.

Example::

    >>> import torch
    >>> g = farms_grid(1024, 256, window=128, ratio=1.0, steps=4)
    >>> (g.rows, g.cols, len(g.row_offsets), len(g.col_offsets))
    (128, 128, 4, 4)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spectracli.spectral.esd import BLOCK_ELEMENTS, squared_singular_values


@dataclass(frozen=True)
class FarmsGrid:
    rows: int
    cols: int
    row_offsets: tuple[int, ...]
    col_offsets: tuple[int, ...]

    @property
    def n_windows(self) -> int:
        return len(self.row_offsets) * len(self.col_offsets)


def _offsets(size: int, w: int, steps: int) -> tuple[int, ...]:
    last = size - w
    if steps <= 1 or last == 0:
        return (0,)
    step = max(1, last // (steps - 1))
    return tuple(sorted({min(i * step, last) for i in range(steps)}))


def farms_grid(
    rows: int, cols: int, window: int = 2000, ratio: float = 1.0, steps: int = 10
) -> FarmsGrid:
    """The window shape and offsets FARMS uses on a rows x cols matrix."""
    if window < 1 or ratio <= 0 or steps < 1:
        raise ValueError(
            f"FARMS needs window >= 1, ratio > 0, steps >= 1; got {window}, {ratio}, {steps}"
        )
    r = max(1, min(window, rows, int(cols / ratio)))
    c = max(1, min(cols, round(r * ratio)))
    return FarmsGrid(r, c, _offsets(rows, r, steps), _offsets(cols, c, steps))


def farms_esd(
    w: torch.Tensor,
    window: int = 2000,
    ratio: float = 1.0,
    steps: int = 10,
    normalize: bool = False,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, FarmsGrid]:
    """Pooled ESD (ascending) of the FARMS windows of ``w`` (one matrix or a stack of slices).

    With ``normalize`` each window's eigenvalues are divided by max(r, c). Windows are solved
    batched, in chunks of at most ``BLOCK_ELEMENTS`` entries (64 MB of float64).
    """
    mats = w.reshape(-1, w.shape[-2], w.shape[-1])
    grid = farms_grid(mats.shape[-2], mats.shape[-1], window, ratio, steps)
    per_chunk = max(1, BLOCK_ELEMENTS // (grid.rows * grid.cols))
    pooled = []
    offsets = [(i, j) for i in grid.row_offsets for j in grid.col_offsets]
    for m in mats:
        for start in range(0, len(offsets), per_chunk):
            part = offsets[start : start + per_chunk]
            chunk = torch.stack([m[i : i + grid.rows, j : j + grid.cols] for i, j in part])
            pooled.append(squared_singular_values(chunk, method="gram", dtype=dtype).reshape(-1))
    lam = torch.cat(pooled)
    if normalize:
        lam = lam / max(grid.rows, grid.cols)
    return torch.sort(lam).values, grid
