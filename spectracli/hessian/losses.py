"""Loss functions of the Hessian: each maps ``(outputs, targets)`` to the **batch mean**.

The operators weight each batch mean by its size, so a custom loss must return the mean over
the samples of its batch (as torch's losses do by default), not the sum.

- ``cross_entropy``: ``torch.nn.functional.cross_entropy`` (class indices or probabilities).
- ``mse``: ``(1/B) sum_b 1/2 ||f(x_b) - y_b||^2``: half the squared error summed over the
  outputs, averaged over samples. The 1/2 makes linear least squares give ``H = X^T X / n``
  exactly and the output Hessian of the GGN the identity. (torch's ``mse_loss`` averages over
  outputs too and has no 1/2: it is ``2 / d_out`` times this.)

Example::

    >>> import torch
    >>> from spectracli.hessian.losses import mse
    >>> float(mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])))
    2.5
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BUILTIN_LOSSES = ("cross_entropy", "mse")


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits ``outputs`` (B, C, ...) against indices or probabilities."""
    return F.cross_entropy(outputs, targets)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_b 1/2 ||outputs_b - targets_b||^2``; 1-D targets match a single output column."""
    if targets.dim() == outputs.dim() - 1 and outputs.shape[-1] == 1:
        targets = targets.unsqueeze(-1)
    diff = outputs - targets.to(outputs.dtype)
    return 0.5 * diff.pow(2).reshape(diff.shape[0], -1).sum(dim=1).mean()


def builtin_loss(name: str) -> LossFn:
    if name == "cross_entropy":
        return cross_entropy
    if name == "mse":
        return mse
    raise ValueError(f"loss must be one of {', '.join(BUILTIN_LOSSES)}, got {name!r}")
