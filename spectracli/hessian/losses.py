"""Losses of the Hessian: each maps ``(outputs, targets)`` to a **mean** and says what it is over.

The dataset loss is ``L = sum_b w_b loss_b / sum_b w_b`` where ``loss_b`` is the batch's mean and
``w_b`` the number of things that mean is over (:meth:`Loss.weight`): samples for a per-sample
loss, counted tokens for a token loss. That makes ``L`` the mean over the whole dataset whatever
the batch size, and a batch with nothing to count (all padding) contributes nothing.

- ``cross_entropy``: ``torch.nn.functional.cross_entropy`` (logits ``(B, C, ...)``, classes on
  dim 1 as in torch; class indices or probabilities). Weight: targets ``!= -100`` (indices) or
  ``B`` (probabilities).
- ``token_cross_entropy``: logits ``(..., V)`` against indices ``(...)``, the mean over targets
  ``!= ignore_index`` (default -100), as language models are trained. Weight: those targets.
- ``mse``: ``(1/B) sum_b 1/2 ||f(x_b) - y_b||^2``: half the squared error summed over the
  outputs, averaged over samples. The 1/2 makes linear least squares give ``H = X^T X / n``
  exactly and the output Hessian of the GGN the identity. (torch's ``mse_loss`` averages over
  outputs too and has no 1/2: it is ``2 / d_out`` times this.) Weight: ``B``.
- ``model``: the model's own ``.loss`` (Hugging Face style). Weight: labels ``!= -100`` when the
  batch has ``labels`` (those after the first position of each row when the model shifts them
  for next-token prediction: detected on the first batch), else ``B``.
- any callable ``fn(outputs, targets)`` returning the batch mean: weight ``B``. Give it a
  ``weight(targets, outputs) -> float`` attribute (or wrap it in :class:`Loss`) otherwise.

Example::

    >>> import torch
    >>> from spectracli.hessian.losses import mse, token_cross_entropy
    >>> float(mse(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])))
    2.5
    >>> logits, t = torch.zeros(2, 3, 4), torch.tensor([[1, 2, -100], [-100, -100, -100]])
    >>> round(float(token_cross_entropy(logits, t)), 6), token_cross_entropy.weight(t, logits)
    (1.386294, 2.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from spectracli.options import BuiltinLoss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

IGNORE_INDEX = -100


def _batch_size(targets: Any, outputs: Any) -> float:
    for t in (targets, outputs):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return float(t.shape[0])
    return 1.0


class Loss:
    """A loss ``fn(outputs, targets) -> batch mean`` with the count that mean is over.

    Args:
        fn: the batch-mean loss.
        name: its name in the report.
        weighting: what the mean is over, in words (the report's ``loss_weighting``).
        weight: ``(targets, outputs) -> float``; default the batch size.
        reads: ``"logits"`` (the loss reads the model's outputs) or ``"loss"`` (it is the
            model's own loss: ``fn`` is not called).
    """

    def __init__(
        self,
        fn: LossFn,
        name: str,
        weighting: str = "samples",
        weight: Callable[[Any, Any], float] | None = None,
        reads: str = "logits",
    ) -> None:
        self.fn = fn
        self.name = name
        self.weighting = weighting
        self._weight = weight or _batch_size
        self.reads = reads

    def __call__(self, outputs: torch.Tensor, targets: Any) -> torch.Tensor:
        """The batch mean of the loss (a scalar tensor)."""
        return self.fn(outputs, targets)

    def weight(self, targets: Any, outputs: Any = None) -> float:
        """How many things the batch mean is over (0: the batch contributes nothing)."""
        return float(self._weight(targets, outputs))

    def check(self, outputs: torch.Tensor, targets: Any) -> str | None:
        """A one-line reason why ``outputs`` and ``targets`` do not fit this loss, or None."""
        return None

    def __repr__(self) -> str:
        return f"Loss({self.name!r}, weighting={self.weighting!r})"


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def _count_targets(targets: Any, outputs: Any = None) -> float:
    if isinstance(targets, torch.Tensor) and not targets.is_floating_point():
        return float((targets != IGNORE_INDEX).sum())
    return _batch_size(targets, outputs)


def _ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets)


class _CrossEntropy(Loss):
    def __init__(self) -> None:
        super().__init__(_ce, "cross_entropy", "samples (targets != -100 for class indices)",
                         _count_targets)

    def check(self, outputs: torch.Tensor, targets: Any) -> str | None:
        if not isinstance(targets, torch.Tensor) or targets.is_floating_point():
            return None
        if outputs.dim() < 2:
            return f"cross_entropy needs outputs (batch, classes), got ({_shape(outputs)})"
        if outputs.dim() >= 3 and tuple(targets.shape) == tuple(outputs.shape[:-1]):
            return (f"cross_entropy takes classes on dim 1 (torch's convention) but outputs "
                    f"({_shape(outputs)}) and targets ({_shape(targets)}) look like per-token "
                    "logits (..., V): use the loss token_cross_entropy")
        n_cls = outputs.shape[1]
        counted = targets[targets != IGNORE_INDEX]
        if counted.numel():
            lo, hi = int(counted.min()), int(counted.max())
            if lo < 0 or hi >= n_cls:
                return (f"labels out of range for cross_entropy: y spans [{lo}, {hi}] but the "
                        f"model has {n_cls} outputs")
        return None


def _token_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = outputs.reshape(-1, outputs.shape[-1])
    flat = targets.reshape(-1)
    counted = (flat != IGNORE_INDEX).sum()
    # Sum / max(count, 1): an all-padding batch is exactly 0 (and weighted 0), not NaN.
    total = F.cross_entropy(logits, flat, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / counted.clamp(min=1)


class _TokenCrossEntropy(Loss):
    def __init__(self) -> None:
        super().__init__(_token_ce, "token_cross_entropy", "tokens (targets != -100)",
                         _count_targets)

    def check(self, outputs: torch.Tensor, targets: Any) -> str | None:
        if not isinstance(targets, torch.Tensor) or targets.is_floating_point():
            return "token_cross_entropy needs integer token targets"
        if tuple(targets.shape) != tuple(outputs.shape[:-1]):
            return (f"token_cross_entropy needs logits (..., V) and targets (...): got logits "
                    f"({_shape(outputs)}) and targets ({_shape(targets)})")
        counted = targets[targets != IGNORE_INDEX]
        if counted.numel():
            lo, hi = int(counted.min()), int(counted.max())
            if lo < 0 or hi >= outputs.shape[-1]:
                return (f"labels out of range for token_cross_entropy: targets span [{lo}, {hi}] "
                        f"but the vocabulary has {outputs.shape[-1]} entries")
        return None


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.dim() == outputs.dim() - 1 and outputs.shape[-1] == 1:
        targets = targets.unsqueeze(-1)
    diff = outputs - targets.to(outputs.dtype)
    return 0.5 * diff.pow(2).reshape(diff.shape[0], -1).sum(dim=1).mean()


class _MSE(Loss):
    def __init__(self) -> None:
        super().__init__(_mse, "mse", "samples")

    def check(self, outputs: torch.Tensor, targets: Any) -> str | None:
        if not isinstance(targets, torch.Tensor):
            return "mse needs tensor targets"
        yy = targets
        if targets.dim() == outputs.dim() - 1 and outputs.shape[-1] == 1:
            yy = targets.unsqueeze(-1)
        if tuple(yy.shape) != tuple(outputs.shape):
            return (f"mse needs targets shaped like the outputs: y ({_shape(targets)}) vs "
                    f"outputs ({_shape(outputs)})")
        return None


class ModelLoss(Loss):
    """The model's own ``.loss``, weighted by the labels it counts.

    ``shift`` (set on the first batch) says whether the model drops the first label of each row
    (causal LM: token t predicts label t+1).
    """

    def __init__(self, shift: bool | None = None) -> None:
        super().__init__(lambda out, t: out, "model", "samples", reads="loss")
        self.shift = shift

    def weight(self, targets: Any, outputs: Any = None) -> float:
        """Labels that are not -100 (after the shift), else the batch size."""
        if isinstance(targets, torch.Tensor) and not targets.is_floating_point():
            labels = targets[..., 1:] if self.shift and targets.dim() >= 2 else targets
            return float((labels != IGNORE_INDEX).sum())
        return _batch_size(targets, outputs)

    def describe(self, has_labels: bool) -> str:
        """What the batch mean is over, in words (``loss_weighting`` of the report)."""
        if not has_labels:
            return "samples (the batch has no labels)"
        if self.shift:
            return "labels[..., 1:] != -100 (the model shifts labels for next-token prediction)"
        return "labels != -100"


cross_entropy = _CrossEntropy()
token_cross_entropy = _TokenCrossEntropy()
mse = _MSE()

# The names are defined once, by spectracli.options.BuiltinLoss (shared with typer and configs).
BUILTIN_LOSSES = BuiltinLoss.values()
_BUILTIN: dict[str, Callable[[], Loss]] = {
    BuiltinLoss.CROSS_ENTROPY: _CrossEntropy,
    BuiltinLoss.TOKEN_CROSS_ENTROPY: _TokenCrossEntropy,
    BuiltinLoss.MSE: _MSE,
    BuiltinLoss.MODEL: ModelLoss,
}


def builtin_loss(name: str) -> Loss:
    """A fresh instance of the builtin loss ``name`` (one of ``BUILTIN_LOSSES``).

    Returns:
        The :class:`Loss` (fresh: ``model`` keeps per-run state).

    Raises:
        ValueError: for an unknown name.
    """
    make = _BUILTIN.get(name) if isinstance(name, str) else None
    if make is not None:
        return make()
    raise ValueError(f"loss must be one of {', '.join(BUILTIN_LOSSES)}, got {name!r}")


def resolve_loss(loss: str | Loss | LossFn) -> Loss:
    """The one loss resolver: a builtin name, a :class:`Loss`, or a callable (batch mean).

    A plain callable is weighted by the batch size unless it has a ``weight(targets, outputs)``
    attribute.

    Returns:
        The :class:`Loss`.

    Raises:
        ValueError: for an unknown name.
        TypeError: for something neither a name nor callable.
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        return builtin_loss(loss)
    if not callable(loss):
        raise TypeError(f"loss must be a name or a callable, got {type(loss).__name__}")
    weight = getattr(loss, "weight", None)
    return Loss(loss, getattr(loss, "__name__", "custom"),
                "custom weight" if callable(weight) else "samples",
                weight if callable(weight) else None)
