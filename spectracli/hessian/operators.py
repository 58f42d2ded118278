"""Curvature operators of the mean loss over a whole dataset: one class per kind.

For parameters ``theta`` (the selected parameters, flattened in ``named_parameters`` order, tied
ones once) and batches ``b`` whose loss ``loss_b`` is a mean over ``w_b`` things (samples, or
counted tokens: :mod:`spectracli.hessian.losses`), the loss is

    L(theta) = sum_b w_b * loss_b(theta) / W,     W = sum_b w_b,

so ``L`` is the dataset mean whatever the batch size. Two operators on it, both symmetric linear
maps with ``n``, ``dtype``, ``device``, ``matvec(v)`` and ``@`` (the protocol of
``hessian/linop.py``):

- :class:`HessianOperator`: ``H v = sum_b w_b d^2 loss_b / d theta^2 . v / W`` (Pearlmutter
  1994), by an HVP strategy: :class:`ReverseOverReverse` (double backward with
  ``torch.autograd.grad``; keeps each batch's first backward when it fits) or
  :class:`ForwardOverReverse` (``torch.func.jvp`` of ``torch.func.grad``).
- :class:`GGNOperator`: ``G v = sum_b w_b J_b^T H_out,b J_b v / W`` (Schraudolph 2002), ``J_b``
  the Jacobian of the outputs, ``H_out,b`` the Hessian of the batch loss in the outputs, all in
  reverse mode: ``J v`` by the double-vjp trick (the vjp ``u -> J^T u`` is linear in ``u``, so
  its vjp with ``v`` is ``J v``), an output-space double backward, one vjp. No forward-mode AD is
  needed, so losses and kernels without forward derivatives (Huber, fused attention) work.

The model is evaluated through ``torch.func.functional_call`` inside
:func:`~spectracli.hessian.state.curvature_mode` (eval mode, math attention, the caller's flags
restored after every call); it is never modified. Products take any vector of length ``n`` and
return float64; the model runs in ``dtype`` (float32 or float64) and batch results accumulate in
float64.

Example::

    >>> import torch
    >>> from spectracli.hessian.losses import mse
    >>> model = torch.nn.Linear(3, 1, bias=False)
    >>> x = torch.eye(3); y = torch.zeros(3)
    >>> op = HessianOperator(model, [(x, y)], mse, dtype=torch.float64)
    >>> op @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # X^T X / n = I / 3
    tensor([0.3333, 0.0000, 0.0000], dtype=torch.float64)
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from spectracli import distributed
from spectracli.errors import SpectraError
from spectracli.hessian.inputs import (
    Batch,
    BatchFn,
    Layout,
    OutputFn,
    describe_inputs,
    move_batch,
    select_output,
    to_batch,
)
from spectracli.hessian.losses import Loss, LossFn, ModelLoss, resolve_loss, token_cross_entropy
from spectracli.hessian.memory import available_bytes
from spectracli.hessian.state import curvature_mode, explain_autograd_failure
from spectracli.options import HvpMode, Operator

# Reverse-over-reverse keeps the first backward's graph of every batch (one backward per HVP
# instead of forward + two backwards: about 2x faster, same bits) when its saved tensors,
# measured on the first batch and scaled to the dataset, fit in this many bytes and in a
# quarter of the memory available on the device.
GRAPH_CACHE_BYTES = 2 * 2**30

# Measured on the 2-core CPU (MLP 784-256-256-10, 2048 samples, docs/hessian.md): double
# backward is the faster of the two there.
DEFAULT_HVP_MODE = "reverse-over-reverse"


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _first_layer(model: nn.Module) -> str:
    """What the first layer with a declared input size expects, for shape errors."""
    for name, module in model.named_modules():
        for attr in ("in_features", "in_channels", "num_embeddings"):
            if hasattr(module, attr):
                return f"; its first layer {name} has {attr}={getattr(module, attr)}"
    return ""


class CurvatureProblem:
    """Model + batches + loss, prepared once and shared by every operator built on it.

    Batches are moved to ``device`` (floating ones in ``dtype``) and their weights counted once;
    every operator built on the problem (e.g. one per block) shares them.

    Args:
        model: the network; not modified (see the module doc).
        batches: raw batches in any layout of :mod:`spectracli.hessian.inputs`.
        loss: a builtin name, a :class:`~spectracli.hessian.losses.Loss` or a callable.
        dtype: float32 or float64: the precision of the model evaluation.
        device: where batches and parameters live.
        batch_fn: hook that turns a raw batch into ``(args, kwargs, target)``.
        output_fn: hook that picks the model output the loss reads.

    Raises:
        SpectraError: empty data, a batch of an unknown kind (with its index), no parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        batches: Sequence[Any],
        loss: str | Loss | LossFn,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        batch_fn: BatchFn | None = None,
        output_fn: OutputFn | None = None,
    ) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if len(batches) == 0:
            raise SpectraError("the dataset is empty (0 batches)")
        self.model = model
        self.loss = resolve_loss(loss)
        self.dtype = dtype
        self.device = torch.device(device)
        self.output_fn = output_fn
        self.layout = Layout.of(model, batch_fn, output_fn, pass_labels=self.loss.reads == "loss")
        self.batches: list[Batch] = []
        # Under torchrun (or in a process group) each rank keeps its share of the batches; the
        # weighted sums below are all_reduced, so the operator is the one-process one.
        self.world_size = distributed.world_size()
        if self.world_size > 1 and len(batches) < self.world_size:
            raise SpectraError(
                f"{len(batches)} batches for {self.world_size} ranks: every rank needs one "
                "(lower batch_size or use fewer processes)")
        error: Exception | None = None
        for i in distributed.shard_indices(len(batches)):
            try:
                b = to_batch(batches[i], self.layout)
            except Exception as exc:  # noqa: BLE001 - user data or hook: one line with the index
                error = SpectraError(f"batch {i}: {_one_line(exc)}")
                break
            self.batches.append(move_batch(b, self.device, dtype))
        # a failure on one rank ends every rank here (not a wait for it in a later sum)
        self.n_samples = int(self._summed([sum(b.n_samples for b in self.batches)], error)[0])
        if self.n_samples == 0:
            raise SpectraError("the dataset has 0 samples")

        # named_parameters() lists tied parameters once; functional_call re-ties them.
        named = list(model.named_parameters())
        if not named:
            raise SpectraError("the model has no parameters")
        self.param_names = [k for k, _ in named]
        self.trainable = [k for k, p in named if p.requires_grad]
        self.frozen = [k for k, p in named if not p.requires_grad]
        self.numel = {k: p.numel() for k, p in named}
        self.all_params = {k: p.detach().to(self.device, dtype) for k, p in named}
        self.buffers = {
            k: b.detach().to(self.device, dtype if b.is_floating_point() else b.dtype)
            for k, b in model.named_buffers()
        }
        self.weighting = self.loss.weighting
        self._count()

    # -- batches and weights -----------------------------------------------------------------
    def _count(self) -> None:
        """Each batch's weight (what its mean is over); zero-weight batches are dropped."""
        error: Exception | None = None
        try:
            if isinstance(self.loss, ModelLoss):
                self._detect_label_shift()
            for b in self.batches:
                b.weight = self.loss.weight(b.target, None) if b.target is not None else float(
                    b.n_samples)
        except Exception as exc:  # noqa: BLE001 - raised as it is, or on every rank (RankError)
            error = exc
        given = len(self.batches)
        self.batches = [b for b in self.batches if getattr(b, "weight", 0) > 0]
        # over every rank: the counts and the total weight every batch's mean is divided by
        sums = self._summed([given, given - len(self.batches),
                             sum(b.weight for b in self.batches)], error)
        self.n_batches_given, self.n_empty_batches = int(sums[0]), int(sums[1])
        self.total_weight = float(sums[2])
        if self.n_batches_given == self.n_empty_batches or self.total_weight <= 0:
            raise SpectraError(
                "no batch has anything to average over (every target is padding, -100)")

    def _summed(self, values: list[float], error: Exception | None = None) -> list[float]:
        """``values`` summed over the ranks, in float64.

        Returns:
            The sums (``values`` themselves when one process).

        Raises:
            Exception: a rank's ``error`` on every rank (as it is when one process).
        """
        if self.world_size == 1:
            if error is not None:
                raise error
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return distributed.all_reduce_checked(t, error).tolist()

    def _detect_label_shift(self) -> None:
        """Does the model's own loss drop the first label of each row (causal LM)?

        Decided by recomputing the loss from the logits both ways on the first batch with labels;
        when that is impossible, by the class name (``...CausalLM``, ``...LMHeadModel``).
        """
        assert isinstance(self.loss, ModelLoss)
        first = next((b for b in self.batches if isinstance(b.target, torch.Tensor)), None)
        if first is None or self.loss.shift is not None:
            self.weighting = self.loss.describe(first is not None)
            return
        labels = first.target
        shift: bool | None = None
        try:
            with curvature_mode(self.model), torch.no_grad():
                out = self.call(self.all_params, first)
            model_loss = float(select_output(out, "loss", self.output_fn))
            logits = select_output(out, "logits")
            if labels.dim() >= 1 and tuple(logits.shape[:-1]) == tuple(labels.shape):
                plain = float(token_cross_entropy(logits, labels))
                shifted = float(token_cross_entropy(logits[..., :-1, :], labels[..., 1:]))
                # 1e-4: models may compute their loss in float32 whatever the dtype (Hugging
                # Face upcasts the logits); the closer candidate wins.
                tol = 1e-4 * max(1.0, abs(model_loss))
                d_shift, d_plain = abs(shifted - model_loss), abs(plain - model_loss)
                if min(d_shift, d_plain) <= tol and d_shift != d_plain:
                    shift = d_shift < d_plain
        except Exception:  # noqa: BLE001 - the first-batch check reports failures clearly
            shift = None
        if shift is None:
            shift = type(self.model).__name__.endswith(("CausalLM", "LMHeadModel"))
        self.loss.shift = shift
        self.weighting = self.loss.describe(True)

    # -- evaluation --------------------------------------------------------------------------
    def call(self, params: dict[str, torch.Tensor], batch: Batch,
             constants: dict[str, torch.Tensor] | None = None) -> Any:
        """``model(*args, **kwargs)`` with ``params`` (and ``constants``) swapped in."""
        dicts = (params, constants, self.buffers) if constants else (params, self.buffers)
        return functional_call(self.model, dicts, batch.args, batch.kwargs)

    def outputs(self, params: dict[str, torch.Tensor], batch: Batch,
                constants: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The tensor the loss reads (logits, or the model's own loss)."""
        return select_output(self.call(params, batch, constants), self.loss.reads, self.output_fn)

    def batch_loss(self, params: dict[str, torch.Tensor], batch: Batch,
                   constants: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The batch-mean loss at ``params`` (``constants``: parameters held fixed)."""
        out = self.outputs(params, batch, constants)
        if self.loss.reads == "loss":
            return out
        return self.loss(out, batch.target)

    def checked_loss(self, i: int, params: dict[str, torch.Tensor], batch: Batch,
                     constants: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """:meth:`batch_loss` with one-line errors naming batch ``i`` and what failed.

        Returns:
            The batch-mean loss (a scalar tensor).

        Raises:
            SpectraError: the forward raised, its output holds nothing the loss reads, the
                batch has no target, the targets do not fit the loss, or the loss raised or is
                not a scalar (batch ``i`` named).
        """
        try:
            raw = self.call(params, batch, constants)
        except Exception as exc:  # noqa: BLE001 - user code on user data: report, do not crash
            hint = _first_layer(self.model) if i == 0 else ""
            raise SpectraError(
                f"batch {i}: the model's forward raised {_one_line(exc)} (inputs "
                f"{describe_inputs(batch)}{hint})"
            ) from None
        try:
            out = select_output(raw, self.loss.reads, self.output_fn)
        except Exception as exc:  # noqa: BLE001
            raise SpectraError(f"batch {i}: {_one_line(exc)}") from None
        if self.loss.reads == "loss":
            if out.dim() != 0:
                raise SpectraError(f"batch {i}: the model's loss is not a scalar "
                                   f"(shape {tuple(out.shape)})")
            return out
        if batch.target is None:
            raise SpectraError(f"batch {i}: the batch has no target for the loss "
                               f"{self.loss.name} (give (x, y) or a dict with labels)")
        reason = self.loss.check(out, batch.target)
        if reason:
            raise SpectraError(f"batch {i}: {reason}")
        try:
            value = self.loss(out, batch.target)
        except Exception as exc:  # noqa: BLE001
            raise SpectraError(
                f"batch {i}: the loss {self.loss.name} failed on outputs of shape "
                f"{tuple(out.shape)}: {_one_line(exc)}"
            ) from None
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise SpectraError(f"batch {i}: the loss {self.loss.name} must return a scalar")
        return value

    def select(self, params: Sequence[str] | None) -> list[str]:
        """Parameter names matching the globs ``params`` (None: every trainable one).

        Returns:
            The names in model order.

        Raises:
            SpectraError: when nothing matches or a glob matches nothing.
        """
        if params is None:
            chosen = list(self.trainable)
            if not chosen:
                raise SpectraError("the model has no trainable parameters")
            return chosen
        patterns = [params] if isinstance(params, str) else list(params)
        unmatched = [g for g in patterns
                     if not any(fnmatch.fnmatchcase(k, g) for k in self.param_names)]
        if unmatched:
            raise SpectraError(
                f"params {', '.join(repr(g) for g in unmatched)} match no parameter (names "
                f"look like {', '.join(self.param_names[:3])})", params=("params",)
            )
        return [k for k in self.param_names if any(fnmatch.fnmatchcase(k, g) for g in patterns)]


class _CurvatureOperator:
    """Shared part: parameter selection, flat <-> dict, loss and gradient, the product loop."""

    kind = "curvature"

    def __init__(
        self,
        model: nn.Module | CurvatureProblem,
        batches: Sequence[Any] | None = None,
        loss: str | Loss | LossFn | None = None,
        *,
        params: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        batch_fn: BatchFn | None = None,
        output_fn: OutputFn | None = None,
    ) -> None:
        if isinstance(model, CurvatureProblem):
            problem = model
        else:
            if batches is None or loss is None:
                raise TypeError("batches and loss are needed unless a CurvatureProblem is given")
            problem = CurvatureProblem(model, batches, loss, dtype=dtype, device=device,
                                       batch_fn=batch_fn, output_fn=output_fn)
        self.problem = problem
        self.model = problem.model
        self.dtype = problem.dtype
        self.device = problem.device
        self.names = problem.select(params)
        self.shapes = [problem.all_params[k].shape for k in self.names]
        self.numels = [problem.numel[k] for k in self.names]
        self.n = sum(self.numels)
        self.params = {k: problem.all_params[k] for k in self.names}
        chosen = set(self.names)
        self.constants = {k: v for k, v in problem.all_params.items() if k not in chosen}
        self.matvecs = 0

    @property
    def batches(self) -> list[Batch]:
        return self.problem.batches

    # -- flat <-> dict ---------------------------------------------------------------------
    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector of length ``n`` -> ``{name: tensor}`` views in the parameters' shapes."""
        chunks = torch.split(v, self.numels)
        return {k: c.view(s) for k, c, s in zip(self.names, chunks, self.shapes, strict=True)}

    def flatten(self, d: dict[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
        """``{name: tensor}`` (or tensors in order) -> one flat vector."""
        parts = d.values() if isinstance(d, dict) else d
        return torch.cat([t.reshape(-1) for t in parts])

    def flat_params(self) -> torch.Tensor:
        return self.flatten(self.params)

    def _loss(self, params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        return self.problem.batch_loss(params, batch, self.constants)

    # -- loss and gradient -----------------------------------------------------------------
    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """Dataset-mean loss and its gradient (float64, flat); not counted as a matvec.

        Every batch is checked here (targets fit the loss, forward runs): errors name the batch.

        Returns:
            ``(loss, gradient)``: the loss weighted by batch weights (summed over ranks), and
            its gradient ``(n,)`` float64 over the selected parameters.
        """
        total = 0.0
        g = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        error = None
        try:
            total = self._local_loss_and_grad(g)
        except Exception as exc:  # noqa: BLE001 - raised as it is, or on every rank (RankError)
            error = exc
        both = torch.cat([g, torch.tensor([total], dtype=torch.float64, device=self.device)])
        both = distributed.all_reduce_checked(both, error)
        return float(both[-1]), both[:-1]

    def _local_loss_and_grad(self, g: torch.Tensor) -> float:
        """This rank's batches' weighted loss (returned) and gradient (added to ``g``)."""
        total = 0.0
        with curvature_mode(self.model), torch.enable_grad():
            leaves = {k: p.detach().requires_grad_(True) for k, p in self.params.items()}
            for i, b in enumerate(self.batches):
                w = b.weight / self.problem.total_weight
                loss = self.problem.checked_loss(i, leaves, b, self.constants)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise SpectraError(f"batch {i}: the loss is not finite ({value})")
                try:
                    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True,
                                                materialize_grads=True)
                except Exception as exc:  # noqa: BLE001
                    raise SpectraError(f"batch {i}: the backward pass failed: "
                                       f"{_one_line(exc)}") from None
                total += w * value
                g += w * self.flatten(grads).to(torch.float64)
        return total

    def loss(self) -> float:
        """Dataset-mean loss (float)."""
        with curvature_mode(self.model), torch.no_grad():
            part = sum(b.weight / self.problem.total_weight * float(self._loss(self.params, b))
                       for b in self.batches)
        return float(self.problem._summed([part])[0])

    # -- products --------------------------------------------------------------------------
    def _batch_product(self, vd: dict[str, torch.Tensor], i: int, b: Batch):
        raise NotImplementedError

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """The operator applied to ``v`` (shape ``(n,)``, any float dtype).

        Returns:
            ``A v``, ``(n,)`` float64: the batch products weighted by batch weight over the
            total (summed over ranks).

        Raises:
            ValueError: for a wrong shape.
            SpectraError: when a product fails (an op without a second derivative is named,
                with the batch index).
        """
        if v.shape != (self.n,):
            raise ValueError(f"v must have shape ({self.n},), got {tuple(v.shape)}")
        vd = self.unflatten(v.to(self.device, self.dtype))
        out = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        error = None
        try:
            self._local_products(vd, out)
        except Exception as exc:  # noqa: BLE001 - raised as it is, or on every rank (RankError)
            error = exc
        distributed.all_reduce_checked(out, error)  # the ranks' parts: the whole-data product
        self.matvecs += 1
        return out

    def _local_products(self, vd: dict[str, torch.Tensor], out: torch.Tensor) -> None:
        """This rank's batches' weighted products, added to ``out``."""
        with curvature_mode(self.model):
            for i, b in enumerate(self.batches):
                try:
                    hv = self._batch_product(vd, i, b)
                except SpectraError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one line naming the op and the fix
                    why = explain_autograd_failure(exc) or f"the product failed: {_one_line(exc)}"
                    raise SpectraError(f"batch {i}: {why}") from None
                out += (b.weight / self.problem.total_weight) * self.flatten(hv).to(torch.float64)

    __call__ = matvec

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for ``x`` of shape ``(n,)`` or ``(n, b)`` (column by column)."""
        if x.dim() == 1:
            return self.matvec(x)
        if x.dim() == 2 and x.shape[0] == self.n:
            return torch.stack([self.matvec(x[:, j]) for j in range(x.shape[1])], dim=1)
        raise ValueError(f"x must have shape ({self.n},) or ({self.n}, b), got {tuple(x.shape)}")


# -- HVP strategies --------------------------------------------------------------------------
class ReverseOverReverse:
    """HVP by double backward, with the first backward's graphs kept when they fit.

    The graph of every batch is kept when its saved tensors (measured on the first batch, scaled
    to the dataset) fit ``graph_cache_bytes`` and a quarter of the device's available memory.
    """

    name = HvpMode.REVERSE_OVER_REVERSE.value

    def __init__(self, graph_cache_bytes: float = GRAPH_CACHE_BYTES) -> None:
        self.graph_cache_bytes = graph_cache_bytes
        self.cached = False
        self._graphs: list[tuple[torch.Tensor, ...]] | None = None
        self._leaves: list[torch.Tensor] | None = None

    def bind(self, op: _CurvatureOperator) -> None:
        """Decide whether the graphs of ``op``'s batches are cached (``cached``)."""
        budget = min(self.graph_cache_bytes, available_bytes(op.device) / 4)
        b0 = op.batches[0]
        per_weight = self._graph_bytes(op, b0) / max(b0.weight, 1e-300)
        self.cached = budget > 0 and per_weight * op.problem.total_weight <= budget

    @staticmethod
    def _graph_bytes(op: _CurvatureOperator, b: Batch) -> float:
        """Bytes of the tensors autograd saves for a double backward of one batch."""
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                    torch.enable_grad(), curvature_mode(op.model):
                leaves = {k: p.detach().requires_grad_(True) for k, p in op.params.items()}
                loss = op._loss(leaves, b)
                torch.autograd.grad(loss, list(leaves.values()), create_graph=True,
                                    allow_unused=True)
        except Exception:  # noqa: BLE001 - the products report failures with the batch index
            return float(2**62)
        return float(total)

    def product(self, op: _CurvatureOperator, vd: dict[str, torch.Tensor], i: int,
                b: Batch) -> Sequence[torch.Tensor]:
        """The HVP of batch ``i`` (``b``) with the tangents ``vd``, one tensor per parameter."""
        tangents = list(vd.values())
        if self.cached:
            if self._graphs is None:
                self._build(op)
            assert self._graphs is not None and self._leaves is not None
            return torch.autograd.grad(self._graphs[i], self._leaves, grad_outputs=tangents,
                                       retain_graph=True, allow_unused=True,
                                       materialize_grads=True)
        with torch.enable_grad():
            leaves = {k: p.detach().requires_grad_(True) for k, p in op.params.items()}
            loss = op._loss(leaves, b)
            inputs = list(leaves.values())
            g = torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True,
                                    materialize_grads=True)
            return torch.autograd.grad(g, inputs, grad_outputs=tangents, allow_unused=True,
                                       materialize_grads=True)

    def _build(self, op: _CurvatureOperator) -> None:
        with torch.enable_grad():
            leaves = {k: p.detach().requires_grad_(True) for k, p in op.params.items()}
            self._leaves = list(leaves.values())
            self._graphs = [
                torch.autograd.grad(op._loss(leaves, b), self._leaves, create_graph=True,
                                    allow_unused=True, materialize_grads=True)
                for b in op.batches
            ]


class ForwardOverReverse:
    """HVP as ``torch.func.jvp`` of ``torch.func.grad`` (no graph kept between products).

    Checked when bound: one product on the first batch is compared with double backward, and
    a mismatch is refused (forward-mode rules are fewer and less exercised than backward ones;
    e.g. in torch 2.13 the vmapped ``torch.func.hessian`` of a ``nn.TransformerEncoderLayer``
    is 0.17 off in its LayerNorm-weight rows, while these unbatched products are right).
    """

    name = HvpMode.FORWARD_OVER_REVERSE.value
    cached = False

    def bind(self, op: _CurvatureOperator) -> None:
        """Check one product on the first batch against double backward.

        Raises:
            SpectraError: forward mode fails on the model, or its product disagrees with
                double backward (use hvp_mode reverse-over-reverse).
        """
        b = op.batches[0]
        gen = torch.Generator().manual_seed(12345)
        v = torch.randn(op.n, generator=gen, dtype=torch.float64).to(op.device, op.dtype)
        vd = op.unflatten(v)
        with curvature_mode(op.model):
            try:
                fwd = op.flatten(self.product(op, vd, 0, b)).double()
            except Exception as exc:  # noqa: BLE001 - one line naming the op and the fix
                why = explain_autograd_failure(exc) or _one_line(exc)
                raise SpectraError(f"forward-over-reverse HVPs fail on this model ({why}): "
                                   "use hvp_mode reverse-over-reverse") from None
            rev = op.flatten(ReverseOverReverse(0).product(op, vd, 0, b)).double()
        tol = 1e-3 if op.dtype == torch.float32 else 1e-8
        err = float((fwd - rev).norm() / max(float(rev.norm()), 1e-300))
        if err > tol:
            raise SpectraError(
                f"forward-over-reverse HVPs disagree with double backward on this model "
                f"(relative difference {err:.1e}: torch's forward-mode AD is wrong for some op "
                "here); use hvp_mode reverse-over-reverse"
            )

    def product(self, op: _CurvatureOperator, vd: dict[str, torch.Tensor], i: int,
                b: Batch) -> Any:
        """The HVP of batch ``b`` with the tangents ``vd``, one tensor per parameter."""
        grad_fn = grad(lambda p: op._loss(p, b))
        return jvp(grad_fn, (op.params,), (vd,))[1]


# One strategy per HvpMode member, built from the graph-cache budget (only reverse-over-reverse
# uses it): a new member without an entry raises instead of running as another strategy.
HVP_STRATEGIES: dict[HvpMode, Callable[[float], ReverseOverReverse | ForwardOverReverse]] = {
    HvpMode.REVERSE_OVER_REVERSE: ReverseOverReverse,
    HvpMode.FORWARD_OVER_REVERSE: lambda graph_cache_bytes: ForwardOverReverse(),
}
HVP_MODES = tuple(m.value for m in HVP_STRATEGIES)


class HessianOperator(_CurvatureOperator):
    """The Hessian of the dataset-mean loss w.r.t. the selected parameters.

    Args:
        model: the network, or a prepared :class:`CurvatureProblem` (then ``batches`` and
            ``loss`` are not given).
        batches: raw batches (see :mod:`spectracli.hessian.inputs`).
        loss: builtin name, :class:`~spectracli.hessian.losses.Loss` or callable (batch mean).
        params: globs of parameter names (default: every trainable parameter).
        hvp_mode: a strategy (:class:`ReverseOverReverse`, :class:`ForwardOverReverse`) or
            its name.
        graph_cache_bytes: for reverse-over-reverse by name: the graph-cache budget.
        dtype, device, batch_fn, output_fn: as in :class:`CurvatureProblem`.

    Raises:
        SpectraError: an unknown ``hvp_mode`` (the options' wording), bad data or parameter
            globs.
    """

    kind = Operator.HESSIAN.value

    def __init__(
        self,
        model: nn.Module | CurvatureProblem,
        batches: Sequence[Any] | None = None,
        loss: str | Loss | LossFn | None = None,
        *,
        hvp_mode: str | ReverseOverReverse | ForwardOverReverse = DEFAULT_HVP_MODE,
        graph_cache_bytes: float = GRAPH_CACHE_BYTES,
        **kwargs: Any,
    ) -> None:
        if isinstance(hvp_mode, str):
            mode = HvpMode.parse(hvp_mode, "hvp_mode")  # SpectraError, the options' words
            if mode not in HVP_STRATEGIES:
                raise SpectraError(f"hvp_mode {mode.value!r} has no HVP strategy",
                                   params=("hvp_mode",))
            strategy = HVP_STRATEGIES[mode](graph_cache_bytes)
        else:
            strategy = hvp_mode
        super().__init__(model, batches, loss, **kwargs)
        self.hvp = strategy
        self.hvp_mode = strategy.name
        strategy.bind(self)

    @property
    def graph_cached(self) -> bool:
        """Whether the double-backward graphs of the batches are kept between products."""
        return bool(self.hvp.cached)

    def _batch_product(self, vd: dict[str, torch.Tensor], i: int, b: Batch):
        return self.hvp.product(self, vd, i, b)


class GGNOperator(_CurvatureOperator):
    """The generalized Gauss-Newton ``J^T H_out J`` of the dataset-mean loss (reverse mode).

    Same arguments as :class:`HessianOperator` but no ``hvp_mode``.

    Raises:
        SpectraError: with ``loss='model'`` (the GGN needs the loss as a function of the
            outputs: use the loss the model computes, e.g. token_cross_entropy).
    """

    kind = Operator.GGN.value
    hvp_mode = "reverse (double vjp)"
    graph_cached = False

    def __init__(self, model: nn.Module | CurvatureProblem, batches: Sequence[Any] | None = None,
                 loss: str | Loss | LossFn | None = None, **kwargs: Any) -> None:
        super().__init__(model, batches, loss, **kwargs)
        if self.problem.loss.reads == "loss":
            raise SpectraError(
                "the GGN needs the loss as a function of the model's outputs, not the model's "
                "own loss: use loss token_cross_entropy (or cross_entropy, mse) with the logits"
            )

    def _batch_product(self, vd: dict[str, torch.Tensor], i: int, b: Batch):
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_(True) for p in self.params.values()]
            z = self.problem.outputs(dict(zip(self.names, leaves, strict=True)), b,
                                     self.constants)
            u = torch.zeros_like(z, requires_grad=True)
            jt_u = torch.autograd.grad(z, leaves, grad_outputs=u, create_graph=True,
                                       allow_unused=True, materialize_grads=True)
            pairs = [(t, v) for t, v in zip(jt_u, vd.values(), strict=True) if t.requires_grad]
            if pairs:
                jv = torch.autograd.grad([t for t, _ in pairs], u,
                                         grad_outputs=[v for _, v in pairs],
                                         allow_unused=True, materialize_grads=True)[0]
            else:
                jv = torch.zeros_like(z)
            zd = z.detach().requires_grad_(True)
            gz = torch.autograd.grad(self.problem.loss(zd, b.target), zd, create_graph=True)[0]
            hjv = torch.autograd.grad(gz, zd, grad_outputs=jv, allow_unused=True,
                                      materialize_grads=True)[0]
            return torch.autograd.grad(z, leaves, grad_outputs=hjv, allow_unused=True,
                                       materialize_grads=True)


OPERATORS: dict[Operator, type[_CurvatureOperator]] = {
    Operator.HESSIAN: HessianOperator,
    Operator.GGN: GGNOperator,
}
