"""nn.ConvTranspose*d stores (in, out / groups, *k): an in-memory module says so by its type and
its kernel is read as (out, in, *k). Truth: the singular values of the permuted, unfolded kernel
computed densely in float64."""

from __future__ import annotations

import pytest
import torch

import spectracli


@pytest.mark.parametrize("view", ["unfold", "slices"])
def test_a_transposed_conv_is_read_out_in(view):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.ConvTranspose2d(24, 12, 3), torch.nn.Conv2d(12, 16, 3))
    report = spectracli.analyze(net, farms=False, fit="median", min_size=3, conv_view=view)
    layers = {layer.name: layer for layer in report.layers}
    up = layers["0.weight"]
    assert up.shape == [24, 12, 3, 3] and up.transposed is True
    w = net[0].weight.detach().double().permute(1, 0, 2, 3)  # (out, in, kh, kw)
    if view == "unfold":
        assert up.matrix_shape == [12, 24 * 9]
        truth = torch.linalg.svdvals(w.reshape(12, -1))
    else:
        assert up.matrix_shape == [12, 24] and up.n_matrices == 9
        truth = torch.linalg.svdvals(w.permute(2, 3, 0, 1).reshape(9, 12, 24)).flatten()
    assert up.sigma_max == pytest.approx(float(truth.max()), rel=1e-6)
    assert up.sigma_min == pytest.approx(float(truth.min()), rel=1e-5)
    assert layers["1.weight"].transposed is False  # a plain conv as before


def test_a_saved_transposed_conv_has_no_such_evidence(tmp_path):
    """A file does not say which kernels are transposed: read as stored (documented)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.ConvTranspose2d(24, 12, 3))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(tmp_path / "m.safetensors"))
    (layer,) = spectracli.analyze(tmp_path / "m.safetensors", farms=False, min_size=3,
                                  conv_view="unfold").layers
    assert layer.transposed is False and layer.matrix_shape == [24, 12 * 9]
