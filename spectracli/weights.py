"""Which matrices a checkpoint tensor stands for, and which tensors are skipped and why.

- 2-D float tensors: a Linear weight (or an embedding table, recognised by name) as it is.
- 3-D/4-D/5-D float tensors whose trailing (spatial) dimensions are all at most
  ``MAX_KERNEL_SIZE``: Conv1d/2d/3d kernels (out, in, *k), read as prod(k) kernel-position slices
  of shape (out, in), analysed pooled: one ESD per layer.
- Everything else is skipped with a reason: non-float dtypes, scalars and 1-D tensors (biases,
  norm scales), other N-D tensors, matrices smaller than ``min_size`` on either side, and names
  filtered out by ``include``/``exclude`` globs.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

MAX_KERNEL_SIZE = 16
_EMBEDDING_NAME = re.compile(
    r"(^|[._])(embed|embeds|embedding|embeddings|embed_tokens|wte|wpe|tok_embeddings|"
    r"word_embeddings|position_embeddings|token_type_embeddings|shared)([._]|$)"
)


@dataclass(frozen=True)
class MatrixPlan:
    """How one tensor is analysed: ``kind``, and the (out, in) shape of each of its slices."""

    kind: str  # linear | embedding | conv1d | conv2d | conv3d
    matrix_shape: tuple[int, int]
    n_matrices: int


def name_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Glob filters on names: kept if it matches an include (or none is given) and no exclude."""
    if include and not any(fnmatch.fnmatchcase(name, pat) for pat in include):
        return False
    return not any(fnmatch.fnmatchcase(name, pat) for pat in exclude)


def plan_tensor(
    name: str, shape: Sequence[int], dtype: str, min_size: int
) -> MatrixPlan | str:
    """A :class:`MatrixPlan` for a tensor that is analysed, or the reason it is skipped."""
    shape = tuple(int(d) for d in shape)
    if dtype not in ("float64", "float32", "float16", "bfloat16"):
        return f"non-float dtype {dtype}"
    if len(shape) == 0:
        return "scalar"
    if len(shape) == 1:
        return "1-D tensor (bias, norm scale or buffer)"
    if len(shape) == 2:
        kind = "embedding" if _EMBEDDING_NAME.search(name.lower()) else "linear"
        plan = MatrixPlan(kind, (shape[0], shape[1]), 1)
    elif len(shape) <= 5 and all(k <= MAX_KERNEL_SIZE for k in shape[2:]):
        n = 1
        for k in shape[2:]:
            n *= k
        plan = MatrixPlan(f"conv{len(shape) - 2}d", (shape[0], shape[1]), n)
    else:
        return (
            f"{len(shape)}-D tensor that is not a conv kernel (trailing dimensions above "
            f"{MAX_KERNEL_SIZE})"
        )
    m, n = plan.matrix_shape
    if min(m, n) < min_size:
        return f"matrix {m}x{n} has fewer than --min-size {min_size} rows or columns"
    return plan


def as_matrices(tensor: torch.Tensor, plan: MatrixPlan) -> torch.Tensor:
    """The tensor as a stack (n_matrices, out, in) of its matrices (a view where possible)."""
    if tensor.dim() == 2:
        return tensor.unsqueeze(0)
    out_c, in_c = tensor.shape[0], tensor.shape[1]
    # (out, in, *k) -> (*k, out, in): one (out, in) matrix per kernel position.
    return tensor.reshape(out_c, in_c, -1).permute(2, 0, 1)
