"""CPU thread counts, scoped to a ``with`` block.

Library calls change process-wide thread settings only inside a ``with`` block and put them back
after, also when the body raises.

torch's intra-op thread count (``torch.set_num_threads``) belongs to the process: threads started
later begin with it, so a library call that set it and returned would change the speed of the
caller's own code (a training loop that calls :mod:`spectracli.monitor`, a notebook, a test
session). :func:`torch_threads` is the one place spectracli sets it (tests/test_threads.py scans
the package for any other). The console script's ``OMP_WAIT_POLICY=PASSIVE`` (``cli/app.main``)
is set at process start, before torch loads, and only when the user has not set it.

Why fewer threads at all: OpenMP threads spin while they wait, and on cores busy with other work
two threads measured 3.5-20x slower than one on the eigen solves and 10-40x on HVPs
(docs/design.md, docs/hessian.md).

Example::

    >>> import torch
    >>> from spectracli.threads import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence

from spectracli.errors import SpectraError


def _checked(n: int | None) -> int | None:
    """``n`` when it is None or at least 1.

    Returns:
        ``n``.

    Raises:
        SpectraError: ``n`` is below 1.
    """
    if n is not None and n < 1:
        raise SpectraError(f"threads must be at least 1, got {n}", params=("threads",))
    return n


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block, the previous count after.

    The count is read and restored in the calling thread; threads started inside the block
    (e.g. a ``ThreadPoolExecutor``'s workers) begin with ``n``.

    Args:
        n: threads inside the block; None leaves the count alone.

    Raises:
        SpectraError: ``n`` is below 1 (before anything is changed).
    """
    if _checked(n) is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def blas_threads(n: int | None, load: Sequence[str] = ()) -> Iterator[None]:
    """BLAS threads set to ``n`` inside the block and put back after.

    Both the BLAS libraries loaded when the block opens (numpy's OpenBLAS or MKL; through
    threadpoolctl) and, when torch is loaded, torch's intra-op count (:func:`torch_threads`).
    torch is not imported for it: a torch-free analysis stays torch-free. A library loaded later
    keeps its own count (setting it afterwards, from a worker thread, measured not to take
    effect): name in ``load`` the modules the block's work will import that bring their own BLAS
    (``scipy.linalg``: scipy's OpenBLAS ran 2 spinning threads per worker inside
    ``blas_threads(1)``); they are imported first, and only then.

    Args:
        n: threads inside the block; None leaves every count alone.
        load: modules to import before the limits are set.

    Raises:
        SpectraError: ``n`` is below 1 (before anything is changed).
    """
    if _checked(n) is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    for module in load:
        importlib.import_module(module)
    torch_loaded = "torch" in sys.modules
    with threadpool_limits(limits=n, user_api="blas"), torch_threads(n if torch_loaded else None):
        yield


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity on Linux, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def idle_threads(current: int) -> int:
    """``current`` threads cut to the idle cores.

    Args:
        current: the thread count to cut (torch's, usually).

    Returns:
        The available cores less the 1-minute load average, rounded, at least 1 and at most
        ``current`` (``current`` when the load average is unknown).
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return current
    return max(1, min(current, round(available_cores() - load)))
