"""How much memory a device has free, for caps that follow the machine instead of a constant.

Example::

    >>> available_bytes("cpu") > 0
    True
"""

from __future__ import annotations

import torch

FALLBACK_BYTES = 8 * 2**30


def available_bytes(device: str | torch.device = "cpu") -> int:
    """Free bytes on ``device``.

    Returns:
        CUDA's ``mem_get_info`` free bytes; on CPU ``MemAvailable`` of ``/proc/meminfo``
        (Linux), else 8 GiB (a conservative guess).
    """
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return FALLBACK_BYTES
