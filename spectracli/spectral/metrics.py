"""Norm-based metrics of a matrix, or a stack of equal-shape slices, from squared singular values.

All in terms of sigma (singular values) and lambda = sigma^2 (docs/metrics.md):

- ``sigma_max``: the spectral norm ||W||_2 (not its square); ``lambda_max`` = sigma_max^2.
- ``sigma_min``: smallest of the min(m, n) singular values; ``condition_number`` = sigma_max /
  sigma_min, ``inf`` with ``rank_deficient`` set when sigma_min <= sigma_max * max(m, n) * eps
  (numpy's matrix_rank tolerance); ``numerical_rank`` counts the singular values above it.
- ``frobenius_norm`` = sqrt(sum lambda); ``stable_rank`` = sum(lambda) / lambda_max.
- ``entropy`` = -sum p ln p / ln R with p = lambda / sum(lambda) over the R nonzero ones
  (1 for a flat spectrum, 0 for rank one).

For a stack of slices (a conv kernel's (out, in) matrices) the layer's figures are: sigma_max the
largest slice norm, sigma_min the smallest singular value of any slice, condition_number the worst
slice's, numerical_rank the smallest slice rank, frobenius_norm of the whole kernel, stable_rank and
entropy the means over slices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass
class MatrixMetrics:
    sigma_max: float
    sigma_min: float
    condition_number: float
    rank_deficient: bool
    lambda_max: float
    frobenius_norm: float
    stable_rank: float
    entropy: float
    numerical_rank: int

    def to_dict(self) -> dict:
        return asdict(self)


def matrix_metrics(lam: torch.Tensor, shape: tuple[int, int]) -> MatrixMetrics:
    """Metrics from ``lam`` of shape (slices, k) or (k,): ascending sigma^2 per matrix (m, n)."""
    lam = lam.detach().to("cpu", torch.float64).reshape(-1, lam.shape[-1]).clamp_min(0)
    sigma = lam.sqrt()
    s_max = sigma[:, -1]
    s_min = sigma[:, 0]
    eps = torch.finfo(torch.float64).eps
    tol = s_max * max(shape) * eps
    ranks = (sigma > tol[:, None]).sum(dim=1)
    deficient = (s_min <= tol) | (s_max == 0)
    with torch.no_grad():
        cond = torch.where(deficient, torch.full_like(s_max, math.inf), s_max / s_min)
    total = lam.sum(dim=1)
    lam_max = lam[:, -1]
    stable = torch.where(lam_max > 0, total / lam_max, torch.zeros_like(total))
    p = lam / total.clamp_min(torch.finfo(torch.float64).tiny)[:, None]
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    log_r = torch.log(ranks.to(torch.float64))
    ent = -plogp.sum(dim=1) / log_r.clamp_min(1e-300)
    ent = torch.where(ranks > 1, ent, torch.zeros_like(total))
    return MatrixMetrics(
        sigma_max=float(s_max.max()),
        sigma_min=float(s_min.min()),
        condition_number=float(cond.max()),
        rank_deficient=bool(deficient.any()),
        lambda_max=float(lam_max.max()),
        frobenius_norm=float(total.sum().sqrt()),
        stable_rank=float(stable.mean()),
        entropy=float(ent.mean()),
        numerical_rank=int(ranks.min()),
    )
