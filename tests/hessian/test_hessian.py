"""Hessian/GGN operators and the library call against dense float64 ground truth
(double backward / jacrev of the full-dataset mean loss, then eigvalsh)."""

from __future__ import annotations

import pytest
import torch
from dense_truths import linear_mse_hessian
from torch import nn
from torch.func import functional_call

from spectracli.errors import SpectraError
from spectracli.hessian import GGNOperator, HessianConfig, HessianOperator, analyze, eigenpairs
from spectracli.hessian.losses import cross_entropy, mse
from tests.hessian_models import dense_hessian

# Tiny products: one thread (tests/conftest.py) avoids OpenMP spin-waits on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))  # 75 params


def _data(n: int = 60, d: int = 5, c: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, c, (n,), generator=gen)


def _dense_hessian(model: nn.Module, x, y, loss_fn) -> torch.Tensor:
    """Independent truth: the float64 loss on all the data in one call, every Hessian column by
    double backward (tests/hessian_models.dense_hessian; eval mode, the mode restored after)."""
    return dense_hessian(model, lambda call: loss_fn(call(x.double()), y))


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(((a - b).abs() / b.abs()).max())


@pytest.mark.parametrize("mode", ["reverse-over-reverse", "forward-over-reverse"])
def test_mlp_top_k_to_1e_8_in_float64(mode):
    model, (x, y) = _mlp(), _data()
    ref = torch.linalg.eigvalsh(_dense_hessian(model, x, y, cross_entropy)).flip(0)[:4]
    res = eigenpairs(model, (x, y), "cross_entropy", k=4, dtype="float64", hvp_mode=mode,
                     tol=1e-10, batch_size=25)
    assert all(res.converged)
    assert _rel(res.eigenvalues, ref) < 1e-8


def test_uneven_batches_give_the_same_operator():
    model, (x, y) = _mlp(), _data(n=50)
    one = HessianOperator(model, [(x, y)], cross_entropy, dtype=torch.float64)
    uneven = HessianOperator(model, [(x[i:i + 7], y[i:i + 7]) for i in range(0, 50, 7)],
                          cross_entropy, dtype=torch.float64)
    v = torch.randn(one.n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(uneven.matvec(v), one.matvec(v), rtol=0, atol=1e-14)
    # Kept double-backward graphs (default when small) and a fresh graph per product agree.
    fresh = HessianOperator(model, [(x[i:i + 7], y[i:i + 7]) for i in range(0, 50, 7)],
                         cross_entropy, dtype=torch.float64, graph_cache_bytes=0)
    assert uneven.graph_cached and not fresh.graph_cached
    assert torch.allclose(fresh.matvec(v), uneven.matvec(v), rtol=0, atol=1e-15)
    dense = _dense_hessian(model, x, y, cross_entropy)
    assert torch.allclose(uneven.matvec(v), dense @ v, rtol=0, atol=1e-12)


def test_smallest_eigenvalues_of_an_indefinite_hessian():
    model, (x, y) = _mlp(seed=2), _data(seed=2)
    ev = torch.linalg.eigvalsh(_dense_hessian(model, x, y, cross_entropy))
    assert ev[0] < 0  # random init: negative curvature exists
    res = eigenpairs(model, (x, y), "cross_entropy", k=2, which="smallest", dtype="float64",
                     tol=1e-10)
    assert all(res.converged) and _rel(res.eigenvalues, ev[:2].flip(0)) < 1e-8
    assert res.lambda_min == pytest.approx(float(ev[0]), rel=1e-8)
    assert res.condition_number is None  # lambda_min < 0


class _SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(2 * 2 * 2, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x.reshape(-1, 1, 4, 4))))
        return self.head(torch.max_pool2d(x, 2).flatten(1))


def test_cnn_with_batchnorm_in_eval_mode():
    torch.manual_seed(0)
    model = _SmallCNN()
    with torch.no_grad():  # running statistics far from the batch ones: eval mode matters
        model.bn.running_mean.copy_(torch.tensor([0.5, -0.3]))
        model.bn.running_var.copy_(torch.tensor([2.0, 0.5]))
    model.train()  # the library must switch it to eval itself
    x, y = _data(n=40, d=16)
    dense = _dense_hessian(model, x, y, cross_entropy)  # (in eval mode)
    model.train()
    res = eigenpairs(model, (x, y), "cross_entropy", k=3, dtype="float64", tol=1e-10)
    assert _rel(res.eigenvalues, torch.linalg.eigvalsh(dense).flip(0)[:3]) < 1e-8
    assert res.settings["model_mode"] == "eval"


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.again = self.shared  # the same parameters used twice
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.again(torch.tanh(self.shared(x)))))


def test_tied_parameters_counted_once():
    torch.manual_seed(1)
    model = _Tied()
    x, y = _data(n=30, d=4)
    dense = _dense_hessian(model, x, y, cross_entropy)
    res = eigenpairs(model, (x, y), "cross_entropy", k=3, dtype="float64", tol=1e-10)
    assert res.n_params == 20 + 15 == dense.shape[0]
    assert _rel(res.eigenvalues, torch.linalg.eigvalsh(dense).flip(0)[:3]) < 1e-8


def test_linear_regression_mse_is_xtx_over_n():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(40, generator=gen, dtype=torch.float64)
    model = nn.Linear(6, 1, bias=False).double()
    op = HessianOperator(model, [(x[:16], y[:16]), (x[16:], y[16:])], mse, dtype=torch.float64)
    h = torch.stack([op.matvec(e) for e in torch.eye(6, dtype=torch.float64)])
    assert torch.allclose(h, linear_mse_hessian(x), rtol=0, atol=1e-14)
    res = eigenpairs(model, (x, y), "mse", k=2, which="both", dtype="float64", tol=1e-12)
    ev = torch.linalg.eigvalsh(linear_mse_hessian(x))
    assert res.condition_number == pytest.approx(float(ev[-1] / ev[0]), rel=1e-10)


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
def test_ggn_matches_dense_jt_hout_j(loss_name):
    model, (x, y) = _mlp(seed=4), _data(n=20)
    loss_fn = cross_entropy if loss_name == "cross_entropy" else mse
    if loss_name == "mse":
        y = torch.randn(20, 3, generator=torch.Generator().manual_seed(5))
    op = GGNOperator(model, [(x[:8], y[:8]), (x[8:], y[8:])], loss_fn,
                      dtype=torch.float64)
    # Dense: J (20*3, P) of the outputs, H_out of the full-data loss in the outputs.
    flat = op.flat_params()
    xd = x.double()

    def outputs(f):
        return functional_call(model, op.unflatten(f), (xd,))

    jac = torch.func.jacrev(outputs)(flat).reshape(60, -1)
    out = outputs(flat).detach()
    h_out = torch.func.hessian(lambda z: loss_fn(z.reshape(20, 3), y))(out.reshape(-1))
    ggn = jac.T @ h_out @ jac
    g = torch.stack([op.matvec(e) for e in torch.eye(op.n, dtype=torch.float64)])
    assert torch.allclose(g, ggn, rtol=0, atol=1e-13)
    assert float(torch.linalg.eigvalsh(ggn)[0]) > -1e-12  # PSD for a convex loss


def test_trace_within_its_error_bar_and_density_moments():
    model, (x, y) = _mlp(), _data()
    dense = _dense_hessian(model, x, y, cross_entropy)
    cfg = HessianConfig(k=1, dtype="float64", trace=True, trace_hvps=30, density=True,
                        density_probes=8, density_steps=20)
    res = analyze(model, (x, y), "cross_entropy", cfg)
    true_trace = float(dense.trace())
    assert abs(res.trace.estimate - true_trace) <= 3 * res.trace.stderr + 1e-10
    assert res.trace.stderr < 0.2 * abs(true_trace)
    # SLQ moments are Hutchinson estimates of tr(H^p)/n: compare within 4 standard errors.
    d = res.density
    n = dense.shape[0]
    for p in (1, 2):
        per_probe = torch.tensor([sum(w * t**p for t, w in zip(nodes, ws, strict=True))
                                  for nodes, ws in zip(d.nodes, d.weights, strict=True)])
        true = float(torch.linalg.matrix_power(dense, p).trace()) / n
        stderr = float(per_probe.std() / d.n_probes**0.5)
        assert abs(float(per_probe.mean()) - true) <= 4 * stderr + 1e-12
    grid = torch.tensor(d.grid)
    assert float(torch.trapezoid(torch.tensor(d.values), grid)) == pytest.approx(1.0, abs=1e-3)
    assert res.hvp_count == res.hvp_counts["lanczos"] + 30 + 8 * 20


class _Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(nn.functional.dropout(x, 0.5, training=True))  # ignores eval mode


def test_refuses_a_nondeterministic_loss():
    with pytest.raises(SpectraError, match="not deterministic"):
        eigenpairs(_Noisy(), _data(), "cross_entropy", k=1)


def test_bad_inputs_are_one_line_errors():
    model = _mlp()
    x, y = _data()
    with pytest.raises(SpectraError, match="labels out of range"):
        eigenpairs(model, (x, y + 5), "cross_entropy", k=1)
    with pytest.raises(SpectraError, match=r"x of shape \(60x7\).*0 has in_features=5"):
        eigenpairs(model, (torch.randn(60, 7), y), "cross_entropy", k=1)
    with pytest.raises(SpectraError, match="not finite"):
        eigenpairs(model, (x * float("nan"), y), "cross_entropy", k=1)
    with pytest.raises(SpectraError, match="0 samples"):
        eigenpairs(model, (x[:0], y[:0]), "cross_entropy", k=1)
    with pytest.raises(SpectraError, match="mse needs targets"):
        eigenpairs(model, (x, y.float()), "mse", k=1)


def test_report_fields_and_edge_of_stability():
    from spectracli.results import dumps_report, parse_report

    model, (x, y) = _mlp(), _data()
    res = eigenpairs(model, (x, y), "cross_entropy", k=2, dtype="float64", lr=0.5)
    d = parse_report(dumps_report(res))
    for key in ("schema_version", "kind", "tool_version", "created", "source", "settings",
                "operator", "eigenvalues", "residuals", "converged", "hvp_count", "n_params",
                "n_samples", "loss", "grad_norm", "condition_number", "edge_of_stability",
                "trace", "density", "timing"):
        assert key in d
    assert d["kind"] == "hessian" and d["n_samples"] == 60 and d["n_params"] == 75
    assert d["edge_of_stability"] == pytest.approx(0.5 * d["eigenvalues"][0] / 2)
    assert d["trace"] is None and d["density"] is None


def test_an_unknown_hvp_mode_is_worded_like_every_choice_error():
    model, (x, y) = _mlp(), _data(n=10)
    with pytest.raises(SpectraError) as info:
        HessianOperator(model, [(x, y)], cross_entropy, hvp_mode="forward")
    assert str(info.value) == ("hvp_mode must be one of 'reverse-over-reverse', "
                               "'forward-over-reverse'; got 'forward'")
    assert info.value.params == ("hvp_mode",)
