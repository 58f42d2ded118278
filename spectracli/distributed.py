"""A thin helper over ``torch.distributed``: the only module that knows how many processes run.

Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``) :func:`init` joins the process group, with a timeout so that a rank that dies or
stalls ends the job instead of hanging it. A Python caller that has already initialised a process
group is used as it is. Without either, everything here is the one-process identity: rank 0 of 1,
``gather_object`` returns ``[obj]``, ``all_reduce`` returns its input.

Backends: ``gloo`` on CPU; with CUDA, ``cpu:gloo,cuda:nccl`` (object collectives over gloo, tensor
collectives on the GPU over NCCL, per the ``torch.distributed.init_process_group`` docs), each rank
on ``cuda:LOCAL_RANK``. ``SPECTRACLI_DIST_BACKEND`` overrides the choice and
``SPECTRACLI_DIST_TIMEOUT`` (seconds, default 1800) sets the collective timeout. The NCCL path
follows the torch docs and has not been run on GPUs by the project's tests (gloo on CPU has).

Example::

    from spectracli import distributed
    distributed.init()                      # no-op outside torchrun
    parts = distributed.gather_object(my_part)   # list on rank 0, None elsewhere
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from typing import TYPE_CHECKING, Any

from spectracli.errors import SpectraError

if TYPE_CHECKING:
    import torch

DEFAULT_TIMEOUT_S = 1800.0


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def is_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is up in this process.

    Returns:
        True when a group is up; False without importing torch when torch is not loaded (no
        group can be up then).
    """
    if "torch" not in sys.modules:
        return False
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def launched() -> bool:
    """Whether a launcher (``torchrun``) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ


def is_distributed() -> bool:
    """More than one process: an initialised group of size > 1, or a launch by torchrun."""
    return world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    if is_initialized():
        return _dist().get_rank()
    return int(os.environ.get("RANK", "0") or 0) if launched() else 0


def world_size() -> int:
    """The number of processes (1 when not distributed)."""
    if is_initialized():
        return _dist().get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1") or 1) if launched() else 1


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``), which picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def timeout_s() -> float:
    """The collective timeout in seconds (``SPECTRACLI_DIST_TIMEOUT``, default 1800)."""
    try:
        return float(os.environ.get("SPECTRACLI_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def default_backend() -> str:
    """``SPECTRACLI_DIST_BACKEND`` if set, else ``cpu:gloo,cuda:nccl`` with CUDA, else gloo."""
    chosen = os.environ.get("SPECTRACLI_DIST_BACKEND")
    if chosen:
        return chosen
    import torch

    if torch.cuda.is_available() and _dist().is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def init() -> bool:
    """Join the process group when launched by torchrun and not joined yet.

    Returns:
        True when this process is one of several (a group is up), else False.
    """
    if is_initialized():
        return _dist().get_world_size() > 1
    if not launched():
        return False
    import torch

    backend = default_backend()
    if "nccl" in backend and torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    _dist().init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout_s()))
    global _joined
    _joined = True
    return True


_joined = False  # whether init() (not the caller) joined the group: then shutdown() leaves it


def shutdown() -> None:
    """Leave the process group that :func:`init` joined, after a barrier.

    The barrier matters: a rank that leaves while another still talks to it makes gloo abort
    that one. A group the caller set up itself stays.
    """
    global _joined
    if _joined and is_initialized():
        dist = _dist()
        dist.barrier()
        dist.destroy_process_group()
    _joined = False


def rank_device(device: torch.device) -> torch.device:
    """A bare ``cuda`` device made this rank's GPU (``cuda:LOCAL_RANK``) when distributed."""
    if device.type == "cuda" and device.index is None and is_distributed():
        import torch

        return torch.device("cuda", local_rank() % max(1, torch.cuda.device_count()))
    return device


def gather_object(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (picklable) as a list in rank order on rank 0; None elsewhere."""
    if not is_distributed():
        return [obj]
    dist = _dist()
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable) as a list in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    dist = _dist()
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src)
    return box[0]


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``tensor`` (same shape, dtype and device on every rank), in place.

    Sums are formed in rank order by the backend; every rank gets the same bits.

    Returns:
        ``tensor`` itself, now holding the sum (unchanged when not distributed).
    """
    if not is_distributed():
        return tensor
    _dist().all_reduce(tensor)
    return tensor


def all_reduce_checked(tensor: torch.Tensor, error: BaseException | None) -> torch.Tensor:
    """:func:`all_reduce` of this rank's partial sum, carrying a failure flag with it.

    A rank whose part failed so ends the job on every rank (none waits for it) with one cause.

    Args:
        tensor: this rank's part (any shape); summed in place when no rank failed.
        error: this rank's exception while forming its part, or None.

    Returns:
        ``tensor`` summed over the ranks (itself when not distributed).

    Raises:
        RankError: on every rank, the first failed rank and its cause.
        BaseException: ``error`` itself, as it is, when not distributed.
    """
    if not is_distributed():
        if error is not None:
            raise error
        return tensor
    import torch

    flag = torch.tensor([0.0 if error is None else 1.0], dtype=tensor.dtype, device=tensor.device)
    part = torch.zeros_like(tensor) if error is not None else tensor
    buf = all_reduce(torch.cat([part.reshape(-1), flag]))
    if float(buf[-1]) > 0:
        causes = all_gather_object(None if error is None else error_cause(error))
        raise RankError(*next((r, c) for r, c in enumerate(causes) if c is not None))
    tensor.copy_(buf[:-1].view_as(tensor))
    return tensor


def shard_indices(n: int) -> list[int]:
    """This rank's share of ``n`` items (round robin: item i goes to rank i % world size).

    Returns:
        The item indices, ascending; all of them when not distributed.
    """
    return list(range(rank(), n, world_size()))


def store_add(key: str, amount: int) -> int | None:
    """Add to a counter in the process group's key-value store.

    Not a collective: any rank may call it at any time.

    Returns:
        The counter's new value; None when there is no store (not distributed).
    """
    if not is_initialized():
        return None
    store = _dist().distributed_c10d._get_default_store()
    return int(store.add(key, amount))


def error_cause(exc: BaseException) -> str:
    """One line for a rank's exception: the message of a library error, else ``Type: message``."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, SpectraError) else f"{type(exc).__name__}: {text}"


class RankError(SpectraError):
    """One rank failed; ``rank`` and ``cause`` say which and why (raised on every rank)."""

    def __init__(self, rank: int, cause: str) -> None:
        super().__init__(f"rank {rank}: {cause}")
        self.rank, self.cause = rank, cause
