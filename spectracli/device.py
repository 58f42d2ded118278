"""``--device auto|cpu|cuda[:N]`` -> a torch device, for every command and library entry point.

:func:`host_device` answers the cheaper question the torch-free analysis asks first: does the
name surely mean the host CPU? ``cpu`` does; ``auto`` does where no GPU driver is installed
(decided from the driver's device files, without importing torch, which takes about a second).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from spectracli import distributed
from spectracli.errors import SpectraError
from spectracli.options import check_device

if TYPE_CHECKING:
    import torch

# Files a CUDA (NVIDIA) or ROCm (AMD, torch's "cuda" too) driver creates on Linux.
GPU_DRIVER_FILES = ("/proc/driver/nvidia/gpus", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when torch sees a GPU; ``cuda`` without one is a usage error.

    Under torchrun, ``auto`` and ``cuda`` mean this rank's GPU, ``cuda:LOCAL_RANK``.

    Returns:
        The torch device.

    Raises:
        SpectraError: an unknown name, or ``cuda`` when torch sees no GPU.
    """
    import torch

    name = check_device(name)
    if name == "auto":
        return distributed.rank_device(
            torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpectraError(
            f"device {name!r} was asked for but torch sees no GPU (a CPU-only torch build, or "
            "no NVIDIA driver)", params=("device",)
        )
    return distributed.rank_device(torch.device(name))


def gpu_possible() -> bool:
    """Whether torch might see a GPU here, decided without importing torch when it is not loaded.

    True when torch is loaded and sees one; else False on macOS (no CUDA builds) and on Linux
    without any GPU driver file (:data:`GPU_DRIVER_FILES`); True otherwise (then torch decides).

    Returns:
        Whether a GPU is possible.
    """
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in GPU_DRIVER_FILES)
    return True


def host_device(name: str) -> str | None:
    """``"cpu"`` when ``name`` surely means the host CPU (known without torch), else None.

    ``cpu`` always; ``auto`` when no GPU is possible (:func:`gpu_possible`) and the process is
    not one rank of several (torchrun). Anything else is for :func:`resolve_device` to decide.

    Returns:
        ``"cpu"`` or None.

    Raises:
        SpectraError: an unknown name.
    """
    name = check_device(name)
    if name == "cpu" or (name == "auto" and not gpu_possible() and not distributed.launched()):
        return "cpu"
    return None
