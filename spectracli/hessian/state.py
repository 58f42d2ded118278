"""Run a model for curvature products without changing it.

Eval mode and twice-differentiable attention inside, the caller's state restored on every exit
path.

- Training flags: every module's ``training`` is saved, the model is put in ``eval()`` (BatchNorm
  uses running statistics, dropout is off), and the flags are restored afterwards, even when the
  body raises. ``requires_grad`` of the parameters is saved and restored too (the operators
  never set it, but user hooks might).
- Attention: CPU flash and memory-efficient SDPA kernels have no double backward, so products run
  under ``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``; ``nn.TransformerEncoder``'s fused
  eval fast path (``torch._transformer_encoder_layer_fwd``) has no derivative at all, so it is
  turned off with ``torch.backends.mha.set_fastpath_enabled(False)`` and switched back after.

Example::

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Dropout(0.5)).train()
    >>> with curvature_mode(m):
    ...     m.training
    False
    >>> m.training
    True
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Math SDPA backend and no transformer fast path inside; the previous settings after."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


@contextlib.contextmanager
def curvature_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode with math attention inside, its state restored on exit.

    Training flags and ``requires_grad`` are restored also when the body raises; the context
    yields nothing.
    """
    flags = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        with math_attention():
            yield
    finally:
        for m, flag in flags:
            m.training = flag
        for p, flag in grads:
            if p.requires_grad != flag:
                p.requires_grad_(flag)


_NO_DERIVATIVE = re.compile(r"derivative for (?:aten::)?([\w.]+) is not implemented")


def explain_autograd_failure(exc: BaseException) -> str | None:
    """One line naming an op without a (double) derivative and the fix, or None."""
    text = " ".join(str(exc).split())
    m = _NO_DERIVATIVE.search(text)
    if m is None and "forward AD" not in text and "not implemented for" not in text:
        return None
    op = m.group(1) if m else text[:160]
    return (f"the model uses {op}, which has no second derivative in torch: curvature needs "
            "twice-differentiable ops (attention already runs on the math SDPA backend); replace "
            "the op (e.g. a custom fused kernel) by a differentiable one, or use the GGN "
            "(operator 'ggn') if the op is in the loss")
