"""Pure spectral functions on tensors: ESDs, FARMS, power-law fits, norm metrics, MP bulk.

No file formats, no printing: tensors in, dataclasses out (see docs/metrics.md).
"""

from spectracli.spectral.esd import esd, squared_singular_values
from spectracli.spectral.farms import (
    FarmsGrid,
    FarmsSpectrum,
    farms_esd,
    farms_grid,
    farms_spectrum,
)
from spectracli.spectral.metrics import MatrixMetrics, matrix_metrics
from spectracli.spectral.mp import MPFit, mp_fit
from spectracli.spectral.powerlaw import alpha_warning, fit_power_law

__all__ = [
    "FarmsGrid",
    "FarmsSpectrum",
    "MPFit",
    "MatrixMetrics",
    "alpha_warning",
    "esd",
    "farms_esd",
    "farms_grid",
    "farms_spectrum",
    "fit_power_law",
    "matrix_metrics",
    "mp_fit",
    "squared_singular_values",
]
