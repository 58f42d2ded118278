"""The Python entry points: a model in memory, its state dict and its saved file give the same
report; the report reads as attributes, a DataFrame, HTML and figures; errors are ValueErrors."""

import doctest
import json
import math
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import torch
from safetensors.torch import save_model
from torch import nn

import spectracli
from spectracli.errors import CheckpointError, SpectraError
from spectracli.io.memory import memory_checkpoint
from spectracli.report import notebook
from spectracli.results import parse_report

SAMPLE = "sample_models/digits_mlp.safetensors"


class Net(nn.Module):
    """Linear, Conv2d, MultiheadAttention and an embedding tied to the output head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 24)
        self.attn = nn.MultiheadAttention(24, 4)
        self.conv = nn.Conv2d(12, 16, 3)
        self.fc = nn.Linear(24, 32)
        self.head = nn.Linear(24, 50, bias=False)
        self.head.weight = self.embed.weight  # tied: one tensor, two names
        self.register_buffer("steps", torch.zeros(5))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Net()


def comparable(report):
    """The report dict without what legitimately differs between sources (where, when)."""
    d = report.to_dict()
    for key in ("source", "created", "timing"):
        d.pop(key)
    return d


def test_object_state_dict_and_saved_file_give_the_same_report(net, tmp_path):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    from_object = spectracli.analyze(net, farms_window=16)
    from_state = spectracli.analyze(net.state_dict(), farms_window=16)
    save_model(net, str(tmp_path / "net.safetensors"))
    from_file = spectracli.analyze(tmp_path / "net.safetensors", farms_window=16)

    assert comparable(from_object) == comparable(from_state)
    # The file stores tensors sorted by name: same layers, same numbers, another order.
    a, c = comparable(from_object), comparable(from_file)
    def by_name(items):
        return {item["name"]: item for item in items}

    assert len(a["layers"]) == len(c["layers"]) and len(a["skipped"]) == len(c["skipped"])
    assert by_name(a["layers"]) == by_name(c["layers"])
    assert by_name(a["skipped"]) == by_name(c["skipped"])
    assert a["settings"] == c["settings"]
    # summary means summed in another order: equal to rounding
    assert a["summary"] == pytest.approx(c["summary"], rel=1e-14)

    names = [layer.name for layer in from_object.layers]
    assert names[0] == "embed.weight" and "head.weight" not in names  # tied: analysed once
    assert from_object.layers[0].aliases == ["head.weight"]
    assert "conv.weight" in names and any(n.startswith("attn.") for n in names)
    assert from_object.source["format"] == "module"
    assert from_state.source["format"] == "state_dict"
    for key, value in net.state_dict().items():  # the model is left as it was
        assert torch.equal(value, before[key])


def test_memory_handles_serve_the_parameters_without_a_copy(net):
    ckpt = memory_checkpoint(net)
    handles = {h.name: h for h in ckpt.handles()}
    assert handles["fc.weight"].load().data_ptr() == net.fc.weight.data_ptr()
    assert not handles["fc.weight"].load().requires_grad
    assert handles["embed.weight"].aliases == ["head.weight"]
    assert "steps" in handles  # persistent buffers, as in the saved state dict
    assert ckpt.size_bytes == sum(
        h.numel * h.load().element_size() for h in handles.values())


def test_base_may_be_a_model_too(net):
    tuned = Net()
    tuned.load_state_dict(net.state_dict())
    with torch.no_grad():
        tuned.fc.weight += 0.5 * torch.eye(32, 24)
    rep = spectracli.analyze(tuned, base=net, include="fc.*")
    (layer,) = rep.layers
    assert layer.name == "fc.weight"
    assert layer.sigma_max == pytest.approx(0.5, rel=1e-6)  # W - W_base = 0.5 I
    assert rep.settings["base"] == "<module Net>"


def test_layer_attributes_mirror_the_json_keys(net):
    report = spectracli.analyze(net, farms_window=16)
    for layer in report.layers:
        data = layer.to_dict()
        for key, value in data.items():
            got = getattr(layer, key)
            got = got.to_dict() if hasattr(got, "to_dict") else got
            assert got == value, key
        assert layer.farms.alpha == data["farms"]["alpha"]
        assert layer.farms.window_rows == data["farms"]["window_rows"] <= 16
    assert report.summary.mean_alpha == report.to_dict()["summary"]["mean_alpha"]
    assert report.skipped[0].reason == report.to_dict()["skipped"][0]["reason"]
    assert report.settings.farms_window == 16 and report.source.format == "module"
    assert "alpha" in dir(report.layers[0])  # tab completion sees the JSON keys
    with pytest.raises(AttributeError, match="no field 'alhpa'"):
        _ = report.layers[0].alhpa


def flat_json(layer):
    """Reference flattening written out: top-level keys, then farms' keys, eigenvalues left out,
    confidence intervals as low and high."""
    out = {k: v for k, v in layer.items() if k not in ("farms", "esd")}
    for k, v in (layer["farms"] or {}).items():
        if k != "esd":
            out[f"farms_{k}"] = v
    for k in [k for k in out if k.endswith("_ci") and isinstance(out[k], list)]:
        out[f"{k}_low"], out[f"{k}_high"] = out.pop(k)
    return out


def test_to_pandas_has_the_json_columns_and_values(net):
    report = spectracli.analyze(net, farms_window=16)
    layers = parse_report(report.to_json())["layers"]
    df = report.to_pandas()
    assert len(df) == len(layers)
    assert {"farms_alpha", "farms_window_rows", "alpha", "sigma_max", "alpha_ci_low",
            "farms_alpha_ci_high"} <= set(df.columns)
    assert set(df.columns) == set().union(*(flat_json(la) for la in layers))
    for i, layer in enumerate(layers):
        for column, value in flat_json(layer).items():
            cell = df.iloc[i][column]
            if value is None:
                assert cell is None or (isinstance(cell, float) and math.isnan(cell)), column
            elif isinstance(value, float):
                assert cell == value or (math.isinf(value) and math.isinf(cell)), column
            else:
                assert (list(cell) if isinstance(value, list) else cell) == value, column
    assert "esd_values" in report.to_pandas(esd=True).columns
    assert doctest.testmod(notebook).failed == 0


def test_to_pandas_without_pandas_names_the_extra(net, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    report = spectracli.analyze(net, include="fc.*")
    with pytest.raises(ImportError, match=r'pip install "spectracli\[pandas\]"'):
        report.to_pandas()


class _Tables(HTMLParser):
    """Text of every table cell, per table."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "td":
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self.tables[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_notebook_html_names_the_flagged_layers():
    torch.manual_seed(1)
    f64 = torch.float64
    low_rank = torch.randn(40, 3, dtype=f64) @ torch.randn(3, 30, dtype=f64)  # rank 3: flagged
    state = {"low_rank.weight": low_rank, "dense.weight": torch.randn(64, 64, dtype=f64)}
    report = spectracli.analyze(state)
    flagged = report.flagged
    assert "low_rank.weight" in flagged
    page = report._repr_html_()
    parser = _Tables()
    parser.feed(page)
    parser.close()
    summary, flagged_table = parser.tables
    names_in_table = set(flagged_table[1::3])
    assert names_in_table == set(flagged)
    assert any("rank deficient" in cell for cell in flagged_table[2::3])
    assert "data:image" not in page  # no figures inline


def test_plot_returns_matplotlib_figures(net):
    from matplotlib.figure import Figure

    figures = spectracli.analyze(net, farms_window=16).plot()
    assert len(figures) >= 3 and all(isinstance(f, Figure) for f in figures)


def test_errors_are_standard_exceptions_in_library_words(net, tmp_path):
    with pytest.raises(ValueError, match=r"^fit must be one of 'ks', 'median', 'peak'; got 'KS'$"):
        spectracli.analyze(net, fit="KS")
    with pytest.raises(TypeError, match="unknown option 'fitt'"):
        spectracli.analyze(net, fitt="ks")
    with pytest.raises(TypeError, match="source must be an nn.Module"):
        spectracli.analyze(42)
    with pytest.raises(FileNotFoundError):
        spectracli.analyze(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        spectracli.analyze({"lr": 0.1})
    with pytest.raises(CheckpointError, match="meta device"):
        spectracli.analyze(nn.Linear(20, 20, device="meta"))
    assert issubclass(SpectraError, ValueError)


def test_the_modules_stay_modules_and_become_callable():
    import spectracli.analyze as analyze_module
    import spectracli.hessian as hessian_package
    from spectracli.analyze import AnalyzeConfig

    assert analyze_module is sys.modules["spectracli.analyze"] is spectracli.analyze
    assert AnalyzeConfig is spectracli.analyze.AnalyzeConfig
    assert hessian_package.HessianConfig is spectracli.hessian.HessianConfig
    assert callable(spectracli.analyze) and callable(spectracli.hessian)
    # a fresh interpreter: `import spectracli` alone, the entry point imported on first use
    code = ("import spectracli, sys; assert 'spectracli.analyze' not in sys.modules; "
            f"r = spectracli.analyze({SAMPLE!r}, farms=False); print(len(r.layers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "3"


def test_hessian_entry_point_is_the_hessian_api(one_thread):
    from spectracli.hessian.api import HessianConfig
    from spectracli.hessian.api import analyze as hessian_analyze

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
    result = spectracli.hessian(model, (x, y), "cross_entropy", k=2, dtype="float64")
    direct = hessian_analyze(model, (x, y), "cross_entropy", HessianConfig(k=2, dtype="float64"))
    assert result.eigenvalues == pytest.approx(direct.eigenvalues, rel=1e-10)
    with pytest.raises(TypeError, match="unknown option 'top_k'"):
        spectracli.hessian(model, (x, y), top_k=2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        spectracli.hessian(model, (x, y), k=0)


def test_to_json_is_the_json_report(net):
    report = spectracli.analyze(net, include="fc.*")
    assert json.loads(report.to_json())["layers"][0]["name"] == "fc.weight"
