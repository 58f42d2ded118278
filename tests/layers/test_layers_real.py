"""Real torch modules saved to safetensors and .pt: each analysed part against numpy float64 SVD
of the slice a practitioner cuts by hand (the truth is written here, independently of the rules).

Tolerances: sigma_max to 1e-10 relative (both sides float64 of the same stored float32 values);
sigma_min and the condition number to 1e-7 (analyze takes them from the Gram matrix, whose
relative error is about eps * cond^2 <= 1e-8 for these small random layers).
"""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint

E = 32  # model width


def _model_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    mods = nn.ModuleDict({
        "mha": nn.MultiheadAttention(E, 4),
        "lstm": nn.LSTM(12, 20),
        "gru": nn.GRU(12, 16, num_layers=2, bidirectional=True),
        "dw": nn.Conv1d(24, 24, kernel_size=31, groups=24),
        "stem": nn.Conv2d(3, 32, kernel_size=3),
        "body": nn.Conv2d(16, 32, kernel_size=3),
    })
    state = {k: v.detach().clone() for k, v in mods.state_dict().items()}
    # A GPT-2 block's transformers Conv1D weights are stored (in, out).
    g = torch.Generator().manual_seed(1)
    state["h.0.attn.c_attn.weight"] = torch.randn(E, 3 * E, generator=g)
    state["h.0.attn.c_attn.bias"] = torch.zeros(3 * E)
    state["h.0.attn.c_proj.weight"] = torch.randn(E, E, generator=g)
    state["h.0.mlp.c_fc.weight"] = torch.randn(E, 4 * E, generator=g)
    state["h.0.mlp.c_proj.weight"] = torch.randn(4 * E, E, generator=g)
    return state


def _truths(s: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Result name -> the matrix (or stack of matrices) cut by hand, float64."""
    w = {k: v.double().numpy() for k, v in s.items()}
    t: dict[str, np.ndarray] = {}
    ip = w["mha.in_proj_weight"]
    t["mha.in_proj_weight[q]"], t["mha.in_proj_weight[k]"], t["mha.in_proj_weight[v]"] = (
        ip[:E], ip[E:2 * E], ip[2 * E:])
    t["mha.out_proj.weight"] = w["mha.out_proj.weight"]
    for which in ("ih", "hh"):
        m = w[f"lstm.weight_{which}_l0"]
        for i, gate in enumerate("ifgo"):
            t[f"lstm.weight_{which}_l0[{gate}]"] = m[20 * i:20 * (i + 1)]
        for layer in (0, 1):
            for rev in ("", "_reverse"):
                m = w[f"gru.weight_{which}_l{layer}{rev}"]
                for i, gate in enumerate("rzn"):
                    t[f"gru.weight_{which}_l{layer}{rev}[{gate}]"] = m[16 * i:16 * (i + 1)]
    t["dw.weight"] = w["dw.weight"][:, 0, :]  # (24, 31): depthwise, unfolded
    t["stem.weight"] = w["stem.weight"].reshape(32, 27)  # first layer, unfolded
    t["body.weight"] = np.stack([w["body.weight"][:, :, i, j] for i in range(3)
                                 for j in range(3)])  # 9 kernel-position slices
    ca = w["h.0.attn.c_attn.weight"]
    for i, part in enumerate("qkv"):
        t[f"h.0.attn.c_attn.weight[{part}]"] = ca[:, E * i:E * (i + 1)].T
    for name in ("h.0.attn.c_proj.weight", "h.0.mlp.c_fc.weight", "h.0.mlp.c_proj.weight"):
        t[name] = w[name].T
    return t


@pytest.fixture(scope="module", params=["safetensors", "pt"])
def analysed(request, tmp_path_factory):
    state = _model_state()
    path = tmp_path_factory.mktemp("real") / f"model.{request.param}"
    if request.param == "pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    config = AnalyzeConfig(fit="median", farms=False, store_esd=False, threads=2)
    return state, analyze_checkpoint(path, config).to_dict()


def test_every_part_matches_numpy_svd_of_the_hand_cut_slice(analysed):
    state, report = analysed
    layers = {layer["name"]: layer for layer in report["layers"]}
    truths = _truths(state)
    assert set(layers) == set(truths)
    for name, mat in truths.items():
        sv = np.linalg.svd(mat, compute_uv=False)
        sv = sv.reshape(-1, sv.shape[-1])
        layer = layers[name]
        assert layer["matrix_shape"] == list(mat.shape[-2:]), name
        assert layer["n_matrices"] == sv.shape[0], name
        assert layer["sigma_max"] == pytest.approx(sv.max(), rel=1e-10), name
        assert layer["sigma_min"] == pytest.approx(sv.min(), rel=1e-7), name
        worst = (sv[:, 0] / sv[:, -1]).max()
        assert layer["condition_number"] == pytest.approx(worst, rel=1e-7), name


def test_provenance_says_rule_sources_part_and_view(analysed):
    _, report = analysed
    layers = {layer["name"]: layer for layer in report["layers"]}
    q = layers["mha.in_proj_weight[q]"]
    assert (q["rule"], q["sources"], q["part"]) == ("fused.in_proj", ["mha.in_proj_weight"], "q")
    assert layers["lstm.weight_hh_l0[f]"]["rule"] == "recurrent.lstm"
    assert layers["gru.weight_ih_l1_reverse[n]"]["rule"] == "recurrent.gru"
    assert layers["gru.weight_ih_l1_reverse[n]"]["matrix_shape"] == [16, 32]
    assert (layers["dw.weight"]["conv_view"], layers["dw.weight"]["kind"]) == ("unfold", "conv1d")
    assert layers["stem.weight"]["conv_view"] == "unfold"
    assert layers["body.weight"]["conv_view"] == "slices"
    c_attn = layers["h.0.attn.c_attn.weight[k]"]
    assert c_attn["rule"] == "fused.c_attn" and c_attn["transposed"] is True
    assert layers["h.0.mlp.c_fc.weight"]["matrix_shape"] == [4 * E, E]
    assert layers["h.0.mlp.c_fc.weight"]["rule"] == "gpt2.conv1d"
    assert layers["mha.out_proj.weight"]["rule"] == "kind.matrix"
    assert layers["mha.out_proj.weight"]["part"] is None


def test_no_split_keeps_fused_tensors_whole(tmp_path):
    state = _model_state()
    save_file(state, str(tmp_path / "m.safetensors"))
    report = analyze_checkpoint(
        tmp_path / "m.safetensors",
        AnalyzeConfig(fit="median", farms=False, store_esd=False, split=False, conv_view="slices"),
    ).to_dict()
    layers = {layer["name"]: layer for layer in report["layers"]}
    whole = layers["mha.in_proj_weight"]
    sv = np.linalg.svd(state["mha.in_proj_weight"].double().numpy(), compute_uv=False)
    assert whole["rule"] == "fused.in_proj.kept" and whole["matrix_shape"] == [3 * E, E]
    assert whole["condition_number"] == pytest.approx(sv[0] / sv[-1], rel=1e-7)
    assert layers["lstm.weight_hh_l0"]["rule"] == "recurrent.lstm.kept"
    assert layers["h.0.attn.c_attn.weight"]["matrix_shape"] == [3 * E, E]
    assert layers["body.weight"]["n_matrices"] == 9
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    # slices forced: the depthwise kernel's 31 (24, 1) slices are below min_size
    assert skipped["dw.weight"] == "matrix 24x1 has fewer than min_size=10 rows or columns"


def test_compare_and_gate_work_on_part_names(tmp_path):
    """Scaling the k rows of an in_proj by 2 doubles exactly the k part's sigma_max."""
    import json

    from typer.testing import CliRunner

    from spectracli.cli.app import app

    w = torch.randn(3 * E, E, generator=torch.Generator().manual_seed(5))
    scaled = w.clone()
    scaled[E:2 * E] *= 2
    runner = CliRunner()
    for name, tensor in (("a", w), ("b", scaled)):
        save_file({"attn.in_proj_weight": tensor}, str(tmp_path / f"{name}.safetensors"))
        res = runner.invoke(app, ["analyze", str(tmp_path / f"{name}.safetensors"), "-f", "json",
                                  "-o", str(tmp_path / f"{name}.json"), "--no-farms"])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                              "-f", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [la["name"] for la in data["layers"] if la["changed"]] == ["attn.in_proj_weight[k]"]
    assert data["layers"][0]["metrics"]["sigma_max"]["ratio"] == pytest.approx(2.0, rel=1e-9)
    gate = ["gate", str(tmp_path / "b.json"), "--baseline", str(tmp_path / "a.json"),
            "--max-rel-increase"]
    res = runner.invoke(app, [*gate, "sigma_max@attn.in_proj_weight[k]=0.5"])
    assert res.exit_code == 1, res.output  # the k part doubled
    res = runner.invoke(app, [*gate, "sigma_max@attn.in_proj_weight[q]=0.5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*gate, "sigma_max@*in_proj_weight[[]v]=0.5"])
    assert res.exit_code == 0, res.output


def test_a_fused_tensor_is_loaded_once_for_all_its_parts(tmp_path, monkeypatch):
    from spectracli.io.base import TensorHandle

    loads: list[str] = []

    def counting(original):
        def load(self):
            loads.append(self.name)
            return original(self)

        return load

    # torch or numpy, whichever the analysis reads with (numpy on the CPU for safetensors)
    for method in ("load", "load_numpy"):
        monkeypatch.setattr(TensorHandle, method, counting(getattr(TensorHandle, method)))
    state = {k: v for k, v in _model_state().items() if k.startswith(("mha.", "lstm."))}
    save_file(state, str(tmp_path / "m.safetensors"))
    report = analyze_checkpoint(tmp_path / "m.safetensors",
                                AnalyzeConfig(fit="median", farms=False, threads=2)).to_dict()
    assert sum(name.startswith("mha.in_proj_weight[") for name in
               (layer["name"] for layer in report["layers"])) == 3
    assert loads.count("mha.in_proj_weight") == 1
    assert loads.count("lstm.weight_hh_l0") == 1
