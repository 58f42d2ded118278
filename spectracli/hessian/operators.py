"""Curvature operators of the mean loss over a whole dataset, as symmetric matvecs.

For parameters ``theta`` (all trainable parameters, flattened in ``named_parameters`` order,
tied ones once) and batches ``b`` of sizes ``n_b`` with ``N = sum_b n_b``, the loss is

    L(theta) = (1/N) sum_b n_b * loss_b(theta),     loss_b = batch mean of the loss,

so an uneven last batch is weighted exactly. Two operators on it:

- Hessian ``H v = (1/N) sum_b n_b * d^2 loss_b / d theta^2 . v`` (Pearlmutter 1994), by
  ``forward-over-reverse`` (``torch.func.jvp`` of ``torch.func.grad``) or ``reverse-over-reverse``
  (double backward with ``torch.autograd.grad``). Both give the same product; the default is the
  one measured faster (docs/hessian.md).
- Generalized Gauss-Newton ``G v = (1/N) sum_b n_b J_b^T H_out,b J_b v`` (Schraudolph 2002),
  with ``J_b`` the Jacobian of the outputs and ``H_out,b`` the Hessian of the batch loss in the
  outputs: a ``jvp``, an output-space HVP and a ``vjp``. Positive semi-definite for convex losses
  (cross-entropy, MSE); its nonzero spectrum is the empirical NTK's up to scale.

The model runs in eval mode through ``torch.func.functional_call`` (BatchNorm uses its running
statistics, dropout is off). Products take and return float64 vectors; the model is evaluated
in ``dtype`` (float32 or float64) and batch results are accumulated in float64.

Example::

    >>> import torch
    >>> from spectracli.hessian.losses import mse
    >>> model = torch.nn.Linear(3, 1, bias=False)
    >>> x = torch.eye(3); y = torch.zeros(3)
    >>> op = LossOperator(model, [(x, y)], mse, dtype=torch.float64)
    >>> op.matvec(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # X^T X / n = I / 3
    tensor([0.3333, 0.0000, 0.0000], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vjp

from spectracli.hessian.linop import matmul_by_columns
from spectracli.hessian.losses import LossFn

HVP_MODES = ("reverse-over-reverse", "forward-over-reverse")
OPERATORS = ("hessian", "ggn")

# Reverse-over-reverse keeps the first backward's graph of every batch (one backward per HVP
# instead of forward + two backwards: about 2x faster, same bits) when its saved tensors,
# measured on the first batch and scaled to the dataset, fit in this many bytes.
GRAPH_CACHE_BYTES = 2 * 2**30

# Measured on the 2-core CPU (MLP 784-256-256-10, 2048 samples, docs/hessian.md): double
# backward is the faster of the two there.
DEFAULT_HVP_MODE = "reverse-over-reverse"

Batch = tuple[torch.Tensor, torch.Tensor]


class LossOperator:
    """The Hessian or GGN of the dataset-mean loss of ``model``; ``matvec`` counts its calls.

    ``batches`` is a sequence of ``(x, y)`` tensors; they are moved to ``device`` once (floating
    inputs and targets cast to ``dtype``). The model itself is not modified.
    """

    def __init__(
        self,
        model: nn.Module,
        batches: Sequence[Batch],
        loss_fn: LossFn,
        *,
        operator: str = "hessian",
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        hvp_mode: str = DEFAULT_HVP_MODE,
        graph_cache_bytes: float = GRAPH_CACHE_BYTES,
    ) -> None:
        if operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
        if hvp_mode not in HVP_MODES:
            raise ValueError(f"hvp_mode must be one of {HVP_MODES}, got {hvp_mode!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if len(batches) == 0:
            raise ValueError("batches is empty: the Hessian of an empty dataset is undefined")
        model.eval()
        self.model = model
        self.loss_fn = loss_fn
        self.operator = operator
        self.dtype = dtype
        self.device = torch.device(device)
        self.hvp_mode = hvp_mode

        # named_parameters() lists tied parameters once; functional_call re-ties them.
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters")
        self.names = [k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.n = sum(self.numels)
        self.params = {k: p.detach().to(self.device, dtype) for k, p in named}
        frozen = {k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
        self.buffers = {
            k: b.detach().to(self.device, dtype if b.is_floating_point() else b.dtype)
            for k, b in list(model.named_buffers()) + list(frozen.items())
        }
        self.batches = [(self._cast(x), self._cast(y)) for x, y in batches]
        self.batch_sizes = [int(x.shape[0]) for x, _ in self.batches]
        self.n_samples = sum(self.batch_sizes)
        if self.n_samples == 0:
            raise ValueError("the dataset has no samples")
        self.matvecs = 0
        self.graph_cache_bytes = graph_cache_bytes
        self._graphs: list[tuple[torch.Tensor, ...]] | None = None
        self._leaves: list[torch.Tensor] | None = None
        self.graph_cached = False
        if operator == "hessian" and hvp_mode == "reverse-over-reverse":
            x0, y0 = self.batches[0]
            per_sample = self._graph_bytes(x0, y0) / max(1, self.batch_sizes[0])
            self.graph_cached = per_sample * self.n_samples <= graph_cache_bytes

    def _graph_bytes(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """Bytes of the tensors autograd saves for a double backward of one batch."""
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
                leaves = {k: p.detach().requires_grad_(True) for k, p in self.params.items()}
                loss = self.batch_loss(leaves, x, y)
                torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
        except Exception:  # noqa: BLE001 - the first-batch check reports user errors clearly
            return 2**62
        return total

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, self.dtype if t.is_floating_point() else t.dtype)

    # -- flat <-> dict ---------------------------------------------------------------------
    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        chunks = torch.split(v, self.numels)
        return {k: c.view(s) for k, c, s in zip(self.names, chunks, self.shapes, strict=True)}

    def flatten(self, d: dict[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
        parts = d.values() if isinstance(d, dict) else d
        return torch.cat([t.reshape(-1) for t in parts])

    def flat_params(self) -> torch.Tensor:
        return self.flatten(self.params)

    # -- model evaluation ------------------------------------------------------------------
    def outputs(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (params, self.buffers), (x,))

    def batch_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        return self.loss_fn(self.outputs(params, x), y)

    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """Dataset-mean loss and its gradient (float64, flat); not counted as a matvec."""
        # Plain autograd: one forward per batch gives both, and torch.func.grad's first call
        # would import torch._dynamo (1.7 s) before any product is needed.
        total = 0.0
        g = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        with torch.enable_grad():
            leaves = {k: p.detach().requires_grad_(True) for k, p in self.params.items()}
            for (x, y), nb in zip(self.batches, self.batch_sizes, strict=True):
                w = nb / self.n_samples
                loss = self.batch_loss(leaves, x, y)
                grads = torch.autograd.grad(loss, list(leaves.values()))
                total += w * float(loss.detach())
                g += w * self.flatten(grads).to(torch.float64)
        return total, g

    def loss(self) -> float:
        with torch.no_grad():
            return sum(
                nb / self.n_samples * float(self.batch_loss(self.params, x, y))
                for (x, y), nb in zip(self.batches, self.batch_sizes, strict=True)
            )

    # -- products --------------------------------------------------------------------------
    def _hvp_fwd_rev(self, v: dict, x: torch.Tensor, y: torch.Tensor):
        grad_fn = grad(self.batch_loss)
        return jvp(lambda p: grad_fn(p, x, y), (self.params,), (v,))[1]

    def _hvp_rev_rev(self, v: dict, x: torch.Tensor, y: torch.Tensor):
        with torch.enable_grad():
            leaves = {k: p.detach().requires_grad_(True) for k, p in self.params.items()}
            loss = self.batch_loss(leaves, x, y)
            inputs = list(leaves.values())
            g = torch.autograd.grad(loss, inputs, create_graph=True)
            return torch.autograd.grad(g, inputs, grad_outputs=list(v.values()))

    def _build_graphs(self) -> None:
        with torch.enable_grad():
            leaves = {k: p.detach().requires_grad_(True) for k, p in self.params.items()}
            self._leaves = list(leaves.values())
            self._graphs = [
                torch.autograd.grad(self.batch_loss(leaves, x, y), self._leaves, create_graph=True)
                for x, y in self.batches
            ]

    def _ggn(self, v: dict, x: torch.Tensor, y: torch.Tensor):
        def f(p):
            return self.outputs(p, x)

        z, jv = jvp(f, (self.params,), (v,))
        grad_out = grad(lambda out: self.loss_fn(out, y))
        h_out_jv = jvp(grad_out, (z.detach(),), (jv,))[1]
        _, vjp_fn = vjp(f, self.params)
        return vjp_fn(h_out_jv)[0]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` (or ``G v``) for a flat float64 vector ``v`` of length ``n``; float64 result."""
        if v.shape != (self.n,):
            raise ValueError(f"v must have shape ({self.n},), got {tuple(v.shape)}")
        vd = self.unflatten(v.to(self.device, self.dtype))
        if self.operator == "ggn":
            product = self._ggn
        elif self.hvp_mode == "forward-over-reverse":
            product = self._hvp_fwd_rev
        else:
            product = self._hvp_rev_rev
        out = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        if self.graph_cached:
            if self._graphs is None:
                self._build_graphs()
            assert self._graphs is not None and self._leaves is not None
            tangents = list(vd.values())
            for g, nb in zip(self._graphs, self.batch_sizes, strict=True):
                hv = torch.autograd.grad(g, self._leaves, grad_outputs=tangents, retain_graph=True)
                out += (nb / self.n_samples) * self.flatten(hv).to(torch.float64)
            self.matvecs += 1
            return out
        for (x, y), nb in zip(self.batches, self.batch_sizes, strict=True):
            out += (nb / self.n_samples) * self.flatten(product(vd, x, y)).to(torch.float64)
        self.matvecs += 1
        return out

    __call__ = matvec

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return matmul_by_columns(self, x)
