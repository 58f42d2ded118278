"""spectracli.io.tensor_data: the (x, y) data files of ``spectracli hessian --data`` (npz, a
torch.save dict, safetensors) read to the same tensors that were written."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file

from spectracli.io.tensor_data import read_xy


def test_data_files_in_three_formats_agree(tmp_path):
    x = torch.randn(10, 3)
    y = torch.arange(10) % 2
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    save_file({"inputs": x, "labels": y}, str(tmp_path / "d.safetensors"))
    for path, keys in (("d.npz", ("x", "y")), ("d.pt", ("x", "y")),
                       ("d.safetensors", ("inputs", "labels"))):
        got_x, got_y = read_xy(str(tmp_path / path), *keys)
        assert torch.equal(got_x, x) and torch.equal(got_y, y)
