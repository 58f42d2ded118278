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


def test_a_torch_device_counts_as_its_name():
    # from Python, device=torch.device("cpu") was refused as "must be 'auto', 'cpu', ..."
    from spectracli.device import host_device

    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert host_device(torch.device("cpu")) == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(SpectraError, match="'cuda:1' was asked for but torch sees no GPU"):
            resolve_device(torch.device("cuda", 1))
