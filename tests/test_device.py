"""One device rule for every command: auto, cpu, cuda[:N]; a clear error otherwise."""

import pytest
import torch

from spectracli.device import resolve_device
from spectracli.errors import SpectraError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("AUTO").type == expected


@pytest.mark.parametrize("name", ["tpu", "mps2", "gpu"])
def test_unknown_devices_are_usage_errors(name):
    with pytest.raises(SpectraError, match="^device must be 'auto', 'cpu', 'cuda'"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_usage_error(name):
    with pytest.raises(SpectraError, match="sees no GPU"):
        resolve_device(name)
