"""The operator type the solvers see: a symmetric linear map on vectors of length ``n``.

As in ``scipy.sparse.linalg.LinearOperator``, an operator is anything with a matvec: the
Hessian, the GGN and a dense test matrix are all just operators to :func:`lanczos`,
:func:`hutchpp` and :func:`slq_density`, which never care where the product comes from.

The contract (:class:`LinearOperator`, checkable with ``isinstance``):

- ``n`` (int): the dimension; vectors have shape ``(n,)``.
- ``dtype`` (``torch.dtype``) and ``device`` (``torch.device``): what ``matvec`` takes. The
  solvers hand it vectors cast to ``dtype`` on ``device`` and accumulate the products in
  float64, so a float32 operator is used at its own precision and no lower.
- ``matvec(v)``: ``A v`` for ``v`` of shape ``(n,)``, same device; the result may be float64.
- ``A @ x`` for ``x`` of shape ``(n,)`` or ``(n, b)`` (``b`` products, column by column unless
  the operator has a faster block product).

Example::

    >>> import torch
    >>> a = DenseOperator(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    >>> a @ torch.tensor([1.0, 0.0], dtype=torch.float64)
    tensor([2., 1.], dtype=torch.float64)
    >>> isinstance(a, LinearOperator), a.n
    (True, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class LinearOperator(Protocol):
    """A symmetric linear operator on vectors of length ``n`` (see the module doc)."""

    n: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for ``v`` of shape ``(n,)``."""
        ...

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for ``x`` of shape ``(n,)`` or ``(n, b)``."""
        ...


def matmul_by_columns(op: LinearOperator, x: torch.Tensor) -> torch.Tensor:
    """``A x`` for ``x`` of shape ``(n,)`` or ``(n, b)`` by ``b`` calls of ``op.matvec``.

    Returns:
        ``A x``, of the shape of ``x``, in the dtype and on the device of ``op.matvec``.

    Raises:
        ValueError: when ``x`` is not ``(n,)`` or ``(n, b)``.
    """
    if x.dim() == 1 and x.shape[0] == op.n:
        return op.matvec(x)
    if x.dim() == 2 and x.shape[0] == op.n:
        if x.shape[1] == 0:
            return x.new_zeros(op.n, 0)
        return torch.stack([op.matvec(x[:, i]) for i in range(x.shape[1])], dim=1)
    raise ValueError(f"x must have shape ({op.n},) or ({op.n}, b), got {tuple(x.shape)}")


class FunctionOperator:
    """An operator from a plain function ``matvec`` on vectors of length ``n``.

    Args:
        matvec: ``v -> A v`` on tensors of shape ``(n,)``.
        n: the dimension.
        dtype: the dtype ``matvec`` takes (default float64).
        device: where its vectors live (default CPU).

    Raises:
        ValueError: when ``n < 1``.
        TypeError: when ``matvec`` is not callable.
    """

    def __init__(
        self,
        matvec: Matvec,
        n: int,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> None:
        if not callable(matvec):
            raise TypeError(f"matvec must be callable, got {type(matvec).__name__}")
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._matvec = matvec
        self.n = int(n)
        self.dtype = dtype
        self.device = torch.device(device)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` by the wrapped function."""
        return self._matvec(v)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return matmul_by_columns(self, x)

    def __repr__(self) -> str:
        return f"FunctionOperator(n={self.n}, dtype={self.dtype}, device={self.device})"


class DenseOperator:
    """A dense symmetric matrix as an operator (for tests and small problems).

    ``matvecs`` counts the products (a block ``A @ X`` of ``b`` columns counts ``b``).

    Args:
        matrix: a square ``(n, n)`` tensor; used as given (symmetry is the caller's promise).

    Raises:
        ValueError: when ``matrix`` is not square and 2-D.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
            raise ValueError(f"matrix must be square (n, n), got {tuple(matrix.shape)}")
        self.matrix = matrix
        self.n = int(matrix.shape[0])
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.matvecs = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for ``v`` of shape ``(n,)``.

        Returns:
            ``matrix @ v`` (counted in ``matvecs``).

        Raises:
            ValueError: ``v`` is not of shape ``(n,)``.
        """
        if v.shape != (self.n,):
            raise ValueError(f"v must have shape ({self.n},), got {tuple(v.shape)}")
        self.matvecs += 1
        return self.matrix @ v

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and x.shape[0] == self.n:
            self.matvecs += x.shape[1]
            return self.matrix @ x
        return matmul_by_columns(self, x)

    def __repr__(self) -> str:
        return f"DenseOperator(n={self.n}, dtype={self.dtype}, device={self.device})"


def as_operator(
    op: LinearOperator | Matvec,
    n: int | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> LinearOperator:
    """``op`` as a :class:`LinearOperator`.

    ``op`` itself when it is one, else a :class:`FunctionOperator` wrapping the function ``op``
    with dimension ``n``.

    Args:
        op: a :class:`LinearOperator`, or a function ``v -> A v`` on ``(n,)`` tensors.
        n: the dimension (needed for a function).
        dtype: the dtype the function takes.
        device: where the function's vectors live.

    Returns:
        The operator.

    Raises:
        TypeError: when ``op`` is neither an operator nor a callable, or is a callable without
            ``n``.
    """
    if isinstance(op, LinearOperator):
        return op
    if callable(op):
        if n is None:
            raise TypeError("a plain matvec function needs its dimension n (as_operator(f, n))")
        return FunctionOperator(op, n, dtype=dtype, device=device)
    raise TypeError(
        f"expected a LinearOperator (n, dtype, device, matvec) or a matvec function, got "
        f"{type(op).__name__}"
    )


def check_operator(op: object) -> LinearOperator:
    """``op`` when it conforms to :class:`LinearOperator`, else a TypeError naming the fix.

    Returns:
        ``op`` itself.

    Raises:
        TypeError: when ``op`` lacks ``n``, ``dtype``, ``device``, ``matvec`` or ``@``.
        ValueError: when ``op.n < 1``.
    """
    if not isinstance(op, LinearOperator):
        hint = " (wrap a function with as_operator(f, n))" if callable(op) else ""
        raise TypeError(
            f"op must be a LinearOperator with n, dtype, device, matvec and @, got "
            f"{type(op).__name__}{hint}"
        )
    if int(op.n) < 1:
        raise ValueError(f"op.n must be >= 1, got {op.n}")
    return op


def apply(op: LinearOperator, v: torch.Tensor) -> torch.Tensor:
    """``A v`` for a float64 ``v``, in float64 on ``v``'s device.

    ``v`` is cast to the operator's dtype and device and the product cast back (the solvers'
    one call site). The result never shares memory with ``v`` (the solvers update it in
    place).

    Returns:
        ``A v``, ``(n,)`` float64 on ``v``'s device.

    Raises:
        FloatingPointError: when the product is not finite.
    """
    out = op.matvec(v.to(op.device, op.dtype)).reshape(-1).to(v.device, torch.float64)
    if out.data_ptr() == v.data_ptr():
        out = out.clone()
    if not torch.isfinite(out).all():
        raise FloatingPointError("the operator returned a non-finite product")
    return out
