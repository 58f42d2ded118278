"""Result types of the spectra: a stored ESD sample and a FARMS result.

They belong to the math that makes them (the power-law fit's :class:`PowerLawFit` lives beside
its fit in :mod:`spectracli.spectral.powerlaw`); :mod:`spectracli.results` builds a layer's
result from them and re-exports them. Their ``to_dict()`` is their part of the JSON report
(:mod:`spectracli.schema`).

Example::

    >>> from spectracli.spectral.results import EsdSample
    >>> EsdSample(values=[0.5, 1.0, 4.0], count=3, quantiles=False).to_dict()
    {'values': [0.5, 1.0, 4.0], 'count': 3, 'quantiles': False}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spectracli.records import JsonFields
from spectracli.spectral.powerlaw import PowerLawFit


@dataclass
class EsdSample:
    """The eigenvalues of an ESD as stored in the report, for plots without recomputation.

    ``values`` are all eigenvalues (ascending) when there are at most ``MAX_STORED``; otherwise
    ``MAX_STORED`` evenly spaced quantiles of them (``quantiles`` true), which keeps the ECDF
    and the log-histogram shape.
    """

    values: list[float]
    count: int
    quantiles: bool

    MAX_STORED = 2000

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``values``, ``count``, ``quantiles``."""
        return {"values": self.values, "count": self.count, "quantiles": self.quantiles}


@dataclass
class FarmsResult(JsonFields):
    """FARMS: the pooled ESD of fixed-aspect-ratio windows, fitted once."""

    fit: PowerLawFit
    window_rows: int
    window_cols: int
    n_windows: int
    grid: tuple[int, int]  # offsets per dimension (rows, cols)
    esd: EsdSample | None = None
    # precision of the window eigen solves ("float64" | "float32"; None: no window was solved,
    # the FARMS ESD is the full ESD) and, for float32, the bound on |alpha - alpha(exact)|
    solve_dtype: str | None = None
    alpha_error_bound: float | None = None
    # the windows' worth of distinct entries (farms.independent_windows): the fit's alpha_se and
    # alpha_ci count the pooled tail at independent_windows / n_windows of its size
    independent_windows: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the fit's keys plus the window size, count, grid and pooled ESD."""
        out = self.fit.to_dict()
        out.update(
            window_rows=self.window_rows,
            window_cols=self.window_cols,
            n_windows=self.n_windows,
            grid=list(self.grid),
            solve_dtype=self.solve_dtype,
            alpha_error_bound=self.alpha_error_bound,
            independent_windows=self.independent_windows,
            esd=self.esd.to_dict() if self.esd else None,
        )
        return out
