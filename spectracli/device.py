"""``--device auto|cpu|cuda[:N]`` -> a torch device, for every command and library entry point."""

from __future__ import annotations

import torch

from spectracli.errors import SpectraError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when torch sees a GPU; ``cuda`` without one is a usage error.

    Raises:
        SpectraError: an unknown name, or ``cuda`` when torch sees no GPU.
    """
    name = name.lower()
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise SpectraError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpectraError(
            f"device {name!r} was asked for but torch sees no CUDA device", params=("device",)
        )
    return torch.device(name)
