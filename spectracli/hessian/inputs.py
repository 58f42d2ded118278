"""Batches and outputs as people have them, brought to one contract: ``(args, kwargs, target)``.

A batch becomes a call ``model(*args, **kwargs)`` and a ``target`` for the loss:

- a tensor ``x``: ``model(x)``, no target (only ``loss="model"`` can use it);
- ``(x, y)``: ``model(x)``, target ``y``; ``(x, y, extra...)``: ``model(x, *extra)`` with as many
  extras as the forward takes positionally (the rest, e.g. sample indices, are not passed;
  ``settings.batch_layout`` says so);
- a mapping (``input_ids``, ``attention_mask``, ``labels``, ...): ``model(**batch)`` with the
  target ``labels`` (else ``label``, ``targets``, ``target``, ``y``) left out of the call, except
  for ``loss="model"`` where the model gets the labels to compute its own loss; keys the
  forward does not accept (when it has no ``**kwargs``) are dropped;
- anything else: ``batch_fn(batch) -> (args, kwargs, target)``.

An output becomes a tensor: itself; the ``logits`` (or ``loss`` for ``loss="model"``) entry of a
mapping or attribute of an object (Hugging Face ``ModelOutput``); the first non-scalar tensor of
a tuple (the first scalar for ``loss="model"``); or ``output_fn(output)``.

Example::

    >>> import torch
    >>> b = to_batch({"input_ids": torch.zeros(2, 3, dtype=torch.long),
    ...               "labels": torch.ones(2, 3, dtype=torch.long)}, layout=Layout())
    >>> sorted(b.kwargs), b.target.shape
    (['input_ids'], torch.Size([2, 3]))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import torch
from torch import nn

BatchFn = Callable[[Any], tuple[Sequence[Any], Mapping[str, Any], Any]]
OutputFn = Callable[[Any], torch.Tensor]

TARGET_KEYS = ("labels", "label", "targets", "target", "y")


@dataclass
class Batch:
    """One batch in the contract; ``weight`` is what the loss's batch mean is over."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    target: Any
    n_samples: int
    weight: float = 1.0


@dataclass
class Layout:
    """How raw batches map to calls: the forward's signature and the hooks.

    ``pass_labels``: dict batches keep their labels in the call (the model computes its loss).
    """

    n_positional: int | None = None  # positional parameters of forward (None: any number)
    keywords: frozenset[str] | None = None  # accepted keyword names (None: any)
    batch_fn: BatchFn | None = None
    output_fn: OutputFn | None = None
    pass_labels: bool = False
    notes: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, model: nn.Module, batch_fn: BatchFn | None = None,
           output_fn: OutputFn | None = None, pass_labels: bool = False) -> Layout:
        """The layout of ``model.forward``'s signature (any arity when it cannot be read)."""
        n_pos: int | None = 0
        keywords: set[str] | None = set()
        try:
            sig = inspect.signature(model.forward)
        except (TypeError, ValueError):
            sig = None
        if sig is None:
            n_pos, keywords = None, None
        else:
            for p in sig.parameters.values():
                if p.kind == p.VAR_POSITIONAL:
                    n_pos = None
                elif p.kind == p.VAR_KEYWORD:
                    keywords = None
                elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                    if n_pos is not None:
                        n_pos += 1
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and keywords is not None:
                    keywords.add(p.name)
        return cls(n_pos, frozenset(keywords) if keywords is not None else None, batch_fn,
                   output_fn, pass_labels)


def _first_dim(items: Iterable[Any]) -> int:
    for t in items:
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1


def to_batch(raw: Any, layout: Layout) -> Batch:
    """One raw batch -> :class:`Batch` (weight 1 until the loss counts it).

    Args:
        raw: a tensor ``x``, an ``(x, y, ...)`` tuple or list, or a dict of tensors (the target
            under one of :data:`TARGET_KEYS`); anything when ``layout.batch_fn`` is set.
        layout: the forward's signature and hooks; items the forward does not take are
            dropped and noted in ``layout.notes``.

    Returns:
        The batch: positional and keyword arguments of the forward, the target (None when the
        batch has none) and the number of samples (the first dimension).

    Raises:
        TypeError: for a batch of a kind not listed in the module doc, or a ``batch_fn`` that
            does not return ``(args, kwargs, target)``.
    """
    if layout.batch_fn is not None:
        got = layout.batch_fn(raw)
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            raise TypeError("batch_fn must return (args, kwargs, target), got "
                            f"{type(got).__name__}")
        args, kwargs, target = got
        if isinstance(args, torch.Tensor):
            args = (args,)
        args, kwargs = tuple(args), dict(kwargs or {})
    elif isinstance(raw, torch.Tensor):
        args, kwargs, target = (raw,), {}, None
    elif isinstance(raw, Mapping):
        key = next((k for k in TARGET_KEYS if k in raw), None)
        target = raw[key] if key is not None else None
        kwargs = {k: v for k, v in raw.items() if k != key or layout.pass_labels}
        if layout.keywords is not None:
            dropped = sorted(k for k in kwargs if k not in layout.keywords)
            if dropped:
                layout.notes.add(f"keys not taken by forward: {', '.join(dropped)}")
            kwargs = {k: v for k, v in kwargs.items() if k in layout.keywords}
        args = ()
    elif isinstance(raw, (tuple, list)) and raw:
        target = raw[1] if len(raw) > 1 else None
        extras = list(raw[2:])
        if layout.n_positional is not None and len(extras) > layout.n_positional - 1:
            keep = max(0, layout.n_positional - 1)
            layout.notes.add(f"{len(extras) - keep} extra batch item(s) not passed to forward")
            extras = extras[:keep]
        args, kwargs = (raw[0], *extras), {}
    else:
        raise TypeError(
            f"a batch must be a tensor, an (x, y, ...) tuple or a dict of tensors, got "
            f"{type(raw).__name__}: give batch_fn(batch) -> (args, kwargs, target)"
        )
    return Batch(args, kwargs, target, _first_dim([*args, *kwargs.values(), target]))


def select_output(out: Any, reads: str, output_fn: OutputFn | None = None) -> torch.Tensor:
    """The model's output -> the tensor the loss reads (``reads``: ``"logits"`` or ``"loss"``).

    Args:
        out: what the forward returned: a tensor, a mapping or output object with ``.logits`` /
            ``.loss``, or a tuple (the first tensor of the right kind: scalar for a loss).
        reads: ``"logits"`` or ``"loss"``.
        output_fn: the user's hook; when given, its tensor is taken as it is.

    Returns:
        The logits (any shape) or the scalar loss.

    Raises:
        TypeError: when no such tensor is found (the message names what the output holds).
    """
    if output_fn is not None:
        got = output_fn(out)
        if not isinstance(got, torch.Tensor):
            raise TypeError(f"output_fn must return a tensor, got {type(got).__name__}")
        return got
    if isinstance(out, torch.Tensor):
        if reads == "loss" and out.dim() != 0:
            raise TypeError(f"loss='model' needs the model's loss, but it returned a tensor of "
                            f"shape {tuple(out.shape)} (no .loss): pass labels or use another loss")
        return out
    if isinstance(out, Mapping) and reads in out and isinstance(out[reads], torch.Tensor):
        return out[reads]
    value = getattr(out, reads, None)
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(out, (tuple, list)):
        tensors = [t for t in out if isinstance(t, torch.Tensor)]
        want = [t for t in tensors if (t.dim() == 0) == (reads == "loss")]
        if want:
            return want[0]
    _raise_no_output(out, reads)


def _raise_no_output(out: Any, reads: str) -> NoReturn:
    """Refuse an output without the tensor the loss reads.

    Raises:
        TypeError: always, naming what the output holds.
    """
    if isinstance(out, Mapping):
        has = f"keys {', '.join(map(str, out))}"
    elif isinstance(out, (tuple, list)):
        has = f"a {type(out).__name__} of {len(out)}"
    else:
        has = type(out).__name__
    if reads == "loss":
        raise TypeError(f"loss='model' needs a .loss in the model's output, which has {has} "
                        "(give the batch labels, or use another loss)")
    raise TypeError(f"the model's output ({has}) has no logits tensor: give "
                    "output_fn(output) -> tensor")


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor in nested tuples, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def move_batch(batch: Batch, device: torch.device, dtype: torch.dtype) -> Batch:
    """Tensors to ``device``; floating ones cast to ``dtype`` (integers keep theirs)."""

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, dtype if t.is_floating_point() else t.dtype)

    return Batch(map_tensors(batch.args, cast), map_tensors(batch.kwargs, cast),
                 map_tensors(batch.target, cast), batch.n_samples, batch.weight)


def repeat_batch(batch: Batch) -> Batch | None:
    """The batch stacked twice along dim 0 (a mean loss is unchanged, a sum doubles).

    Returns:
        The doubled batch, or None when some item is not a tensor with the batch dimension
        first.
    """
    ok = True

    def twice(t: torch.Tensor) -> torch.Tensor:
        nonlocal ok
        if t.dim() == 0 or t.shape[0] != batch.n_samples:
            ok = False
            return t
        return torch.cat([t, t])

    def check(obj: Any) -> None:
        nonlocal ok
        if isinstance(obj, Mapping):
            for v in obj.values():
                check(v)
        elif isinstance(obj, (tuple, list)):
            for v in obj:
                check(v)
        elif obj is not None and not isinstance(obj, torch.Tensor):
            ok = False

    check([batch.args, batch.kwargs, batch.target])
    rep = Batch(map_tensors(batch.args, twice), map_tensors(batch.kwargs, twice),
                map_tensors(batch.target, twice), 2 * batch.n_samples, 2 * batch.weight)
    return rep if ok else None


def describe_inputs(batch: Batch) -> str:
    """``x 60x7`` / ``input_ids 4x16, attention_mask 4x16``: shapes for error messages."""
    parts = []
    for i, a in enumerate(batch.args):
        if isinstance(a, torch.Tensor):
            parts.append(f"{'x' if i == 0 else f'arg{i}'} of shape ({_shape(a)})")
    for k, v in batch.kwargs.items():
        if isinstance(v, torch.Tensor):
            parts.append(f"{k} of shape ({_shape(v)})")
    return ", ".join(parts) or "no tensors"


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def _slice(obj: Any, start: int, stop: int) -> Any:
    return map_tensors(obj, lambda t: t[start:stop] if t.dim() > 0 else t)


def _index(obj: Any, idx: torch.Tensor) -> Any:
    return map_tensors(obj, lambda t: t[idx] if t.dim() > 0 else t)


def _is_tensor_dataset(data: Any) -> bool:
    """Whether ``data`` is a whole dataset given as tensors.

    Returns:
        True for ``x``, ``(x, y, ...)`` or ``{name: tensor}`` with one first dimension.
    """
    if isinstance(data, torch.Tensor):
        return data.dim() > 0
    if isinstance(data, Mapping):
        items = list(data.values())
    elif isinstance(data, tuple) and 2 <= len(data) <= 8:
        items = list(data)
    else:
        return False
    if not items or not all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in items):
        return False
    return len({int(t.shape[0]) for t in items}) == 1


def collect_batches(data: Any, batch_size: int, max_samples: int | None = None,
                    seed: int = 0) -> list[Any]:
    """Any dataset -> a list of raw batches, read once (the Hessian is of a fixed sample).

    ``data``: tensors (``x``, ``(x, y, ...)``, ``{name: tensor}``) cut into ``batch_size``
    batches; a map-style ``Dataset`` (tuples or dicts per item) collated with torch's
    ``default_collate`` into ``batch_size`` batches; a ``DataLoader``, list or iterable of
    batches taken as they come. ``max_samples`` below the size: a seeded random subset (kept in
    order) of tensors and datasets; the first ``max_samples`` samples of given batches.

    Args:
        data: the dataset, of one of the kinds above.
        batch_size: samples per batch for tensors and datasets (given batches keep theirs).
        max_samples: the number of samples to keep (None: all).
        seed: seed of the random subset.

    Returns:
        The raw batches, in order (tensors sliced, dataset items collated).

    Raises:
        ValueError: for an empty dataset, ``batch_size < 1``, ``max_samples < 1``, tensors
            without a sample dimension or of different lengths, items that do not collate.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    from torch.utils.data import DataLoader, Dataset

    if _is_tensor_dataset(data):
        return _tensor_batches(data, batch_size, max_samples, seed)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor)
                                                        for t in data):
        shapes = ", ".join(str(tuple(t.shape)) for t in data)
        raise ValueError(f"data tensors need one sample dimension of one length, got {shapes}")
    map_style = isinstance(data, Dataset) or (
        not isinstance(data, (tuple, list, Mapping)) and hasattr(data, "__getitem__")
        and hasattr(data, "__len__"))
    if map_style and not isinstance(data, DataLoader) and hasattr(data, "__len__"):
        return _collate_dataset(data, batch_size, max_samples, seed)
    if isinstance(data, Mapping) or isinstance(data, torch.Tensor):
        raise ValueError("data tensors need one sample dimension of one length")
    batches = list(data)
    if not batches:
        raise ValueError("the dataset is empty (0 batches)")
    return batches if max_samples is None else _first_samples(batches, max_samples)


def _tensor_batches(data: Any, batch_size: int, max_samples: int | None,
                    seed: int) -> list[Any]:
    """Tensors cut into ``batch_size`` batches, after a seeded subset of ``max_samples``.

    Returns:
        Slices of ``data`` (same structure), in sample order.

    Raises:
        ValueError: the tensors have no samples.
    """
    first = data if isinstance(data, torch.Tensor) else next(iter(
        data.values() if isinstance(data, Mapping) else data))
    n = int(first.shape[0])
    if max_samples is not None and max_samples < n:
        gen = torch.Generator().manual_seed(seed)
        data = _index(data, torch.randperm(n, generator=gen)[:max_samples].sort().values)
        n = max_samples
    if n == 0:
        raise ValueError("the dataset is empty (0 samples)")
    return [_slice(data, i, i + batch_size) for i in range(0, n, batch_size)]


def _first_samples(batches: list[Any], max_samples: int) -> list[Any]:
    """The first ``max_samples`` samples of given batches (the last one cut when needed)."""
    kept, total = [], 0
    for raw in batches:
        size = _first_dim(_flat_items(raw))
        if total + size > max_samples:
            kept.append(_slice(raw, 0, max_samples - total))
            break
        kept.append(raw)
        total += size
        if total >= max_samples:
            break
    return kept


def _flat_items(raw: Any) -> list[Any]:
    if isinstance(raw, Mapping):
        return list(raw.values())
    if isinstance(raw, (tuple, list)):
        return list(raw)
    return [raw]


def _collate_dataset(data: Any, batch_size: int, max_samples: int | None,
                     seed: int) -> list[Any]:
    from torch.utils.data import default_collate

    n = len(data)
    idx = list(range(n))
    if max_samples is not None and max_samples < n:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(n, generator=gen)[:max_samples].sort().values.tolist()
    if not idx:
        raise ValueError("the dataset is empty (0 samples)")
    batches = []
    for start in range(0, len(idx), batch_size):
        items = [data[i] for i in idx[start:start + batch_size]]
        try:
            batches.append(default_collate(items))
        except (RuntimeError, TypeError) as exc:
            msg = " ".join(str(exc).split())
            raise ValueError(
                f"dataset items {start}-{start + len(items) - 1} do not stack into a batch "
                f"({msg}): give a DataLoader with a collate_fn that pads them"
            ) from None
    return batches
