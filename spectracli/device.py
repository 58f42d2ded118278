"""``--device auto|cpu|cuda[:N]`` -> a torch device, for every command and library entry point."""

from __future__ import annotations

import torch

from spectracli import distributed
from spectracli.errors import SpectraError
from spectracli.options import check_device


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when torch sees a GPU; ``cuda`` without one is a usage error.
    Under torchrun, ``auto`` and ``cuda`` mean this rank's GPU, ``cuda:LOCAL_RANK``.

    Raises:
        SpectraError: an unknown name, or ``cuda`` when torch sees no GPU.
    """
    name = check_device(name)
    if name == "auto":
        return distributed.rank_device(
            torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpectraError(
            f"device {name!r} was asked for but torch sees no CUDA device", params=("device",)
        )
    return distributed.rank_device(torch.device(name))
