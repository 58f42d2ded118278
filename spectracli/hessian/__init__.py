"""Curvature of the loss: Hessian/GGN eigenpairs (Lanczos), trace (Hutch++), density (SLQ).

The library half of ``spectracli hessian``; see docs/hessian.md. Never imports cli/ or io/.
"""

from spectracli.hessian.api import (
    BlockResult,
    HessianConfig,
    HessianResult,
    analyze,
    eigenpairs,
)
from spectracli.hessian.hutchpp import TraceEstimate, hutchpp
from spectracli.hessian.lanczos import LanczosResult, lanczos
from spectracli.hessian.linop import DenseOperator, FunctionOperator, LinearOperator, as_operator
from spectracli.hessian.losses import Loss, token_cross_entropy
from spectracli.hessian.operators import (
    CurvatureProblem,
    ForwardOverReverse,
    GGNOperator,
    HessianOperator,
    ReverseOverReverse,
)
from spectracli.hessian.slq import Density, slq_density

__all__ = [
    "BlockResult",
    "CurvatureProblem",
    "Density",
    "DenseOperator",
    "FunctionOperator",
    "ForwardOverReverse",
    "GGNOperator",
    "HessianConfig",
    "HessianOperator",
    "HessianResult",
    "LanczosResult",
    "LinearOperator",
    "Loss",
    "ReverseOverReverse",
    "TraceEstimate",
    "analyze",
    "as_operator",
    "eigenpairs",
    "hutchpp",
    "lanczos",
    "slq_density",
    "token_cross_entropy",
]

# `spectracli.hessian(model, data, loss, **options)` calls spectracli.api.hessian; the package
# stays a package (why and how: spectracli/api.py).
from spectracli.api import make_callable  # noqa: E402

make_callable(__name__)
