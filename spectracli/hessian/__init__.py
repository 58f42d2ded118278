"""Curvature of the loss: Hessian/GGN eigenpairs (Lanczos), trace (Hutch++), density (SLQ).

The library half of ``spectracli hessian``; see docs/hessian.md. Never imports cli/ or io/.
"""

from spectracli.hessian.api import HessianConfig, HessianResult, analyze, eigenpairs
from spectracli.hessian.hutchpp import TraceEstimate, hutchpp
from spectracli.hessian.lanczos import LanczosResult, lanczos
from spectracli.hessian.operators import LossOperator
from spectracli.hessian.slq import Density, slq_density

__all__ = [
    "Density",
    "HessianConfig",
    "HessianResult",
    "LanczosResult",
    "LossOperator",
    "TraceEstimate",
    "analyze",
    "eigenpairs",
    "hutchpp",
    "lanczos",
    "slq_density",
]
