"""spectracli track: a real short training run of the shipped digits MLP, five checkpoints.

Truths: each step's layers equal ``analyze_checkpoint`` of that checkpoint alone; the cache is
keyed by content (a copy hits, a rewrite misses); steps come from the names and order the run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.cli.app import app
from spectracli.errors import SpectraError
from spectracli.results import LAYER_METRICS, layer_metric, load_report
from spectracli.track import (
    TrackConfig,
    content_hash,
    find_checkpoints,
    gradient_fraction,
    step_of,
    subspace_overlap,
    track_run,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample_models"))
from digits import build_mlp, load_digits  # noqa: E402

STEPS = (5, 10, 20, 40, 100)  # "checkpoint-100" sorts before "checkpoint-20" as text
FAST = {"fit": "median", "farms": False}


def write_run(root: Path, steps=STEPS) -> Path:
    """Train the digits MLP with SGD, saving Hugging Face style checkpoint-<step>/ folders."""
    torch.manual_seed(0)
    model = build_mlp()
    x, y = load_digits("train")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for step in range(1, max(steps) + 1):
        idx = torch.randint(0, len(y), (64,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
        if step in steps:
            folder = root / f"checkpoint-{step}"
            folder.mkdir(parents=True)
            state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(folder / "model.safetensors"))
            (folder / "trainer_state.json").write_text("{}")
    (root / "runs").mkdir()  # TensorBoard folder of a Trainer: not a checkpoint
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))


def test_step_of_reads_the_common_naming_schemes():
    assert step_of("checkpoint-500") == 500
    assert step_of("epoch=2-step=300.ckpt") == 300
    assert step_of("epoch=2-step=300-v1.ckpt") == 300
    assert step_of("global_step7") == 7
    assert step_of("step_40.pt") == 40
    assert step_of("model_0005.safetensors") == 5
    assert step_of("epoch=3.ckpt") == 3
    assert step_of("last.ckpt") is None


def test_checkpoints_are_ordered_by_step_not_by_name(run_dir):
    found, ignored = find_checkpoints(run_dir)
    assert [c.step for c in found] == list(STEPS)
    assert all(c.path.name == f"checkpoint-{c.step}" for c in found)
    assert ignored == []  # runs/ is a folder without a step: passed over silently


def test_a_checkpoint_being_written_is_passed_over(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    (tmp_path / "run" / "tmp-checkpoint-200").mkdir()
    found, ignored = find_checkpoints(tmp_path / "run")
    assert [c.step for c in found] == list(STEPS)
    assert [i["path"] for i in ignored] == [str(tmp_path / "run" / "tmp-checkpoint-200")]


def test_an_unreadable_checkpoint_is_passed_over_with_its_reason(run_dir, tmp_path):
    """An empty checkpoint-N/ (a Trainer that died while saving) does not abort the run."""
    run = tmp_path / "run"
    for step in (5, 10):
        shutil.copytree(run_dir / f"checkpoint-{step}", run / f"checkpoint-{step}")
    (run / "checkpoint-7").mkdir()
    report = track_run(run, TrackConfig(analyze=AnalyzeConfig(**FAST), cache=False)).to_dict()
    assert [s["step"] for s in report["steps"]] == [5, 10]
    (note,) = report["ignored"]
    assert note["path"] == str(run / "checkpoint-7")
    assert note["reason"].startswith("not read: ") and "holds no weights" in note["reason"]
    res = runner.invoke(app, ["track", str(run), "--no-farms", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "checkpoint-7: not read:" in res.output
    shutil.rmtree(run / "checkpoint-5")
    shutil.rmtree(run / "checkpoint-10")
    with pytest.raises(SpectraError, match="holds no weights"):  # nothing readable at all
        track_run(run, TrackConfig(analyze=AnalyzeConfig(**FAST), cache=False))


def test_blank_cells_of_a_tiny_model_are_explained(tmp_path):
    """A model too small to analyse, or to fit, gives '-' cells and a line saying why."""
    gen = torch.Generator().manual_seed(0)
    for step in (1, 2):
        (tmp_path / f"checkpoint-{step}").mkdir()
        save_file({"fc1.weight": torch.randn(8, 4, generator=gen),
                   "fc2.weight": torch.randn(3, 8, generator=gen)},
                  str(tmp_path / f"checkpoint-{step}" / "model.safetensors"))
    # no matrix at all in any step is an error naming --min-size (tests/test_analyze_nothing.py)
    res = runner.invoke(app, ["track", str(tmp_path), "--no-cache"])
    assert res.exit_code == 2, res.output
    assert "no weight matrices in" in res.stderr and "a smaller --min-size" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["track", str(tmp_path), "--no-cache", "--min-size", "3",
                              "--no-farms", "-f", "markdown"])
    assert res.exit_code == 0, res.output
    assert ("- steps 1, 2: mean_alpha '-': no power-law fit is ok (2 too_few_eigenvalues)"
            in res.output)
    assert "- steps 1, 2: mean_farms_alpha '-': FARMS is off (--no-farms)" in res.output


def test_glob_selects_and_lists_what_it_passed_over(tmp_path):
    for name in ("epoch=0-step=10.ckpt", "epoch=1-step=20.ckpt", "last.ckpt", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found, ignored = find_checkpoints(tmp_path, glob="*.ckpt")
    assert [(c.step, c.path.name) for c in found] == [(10, "epoch=0-step=10.ckpt"),
                                                      (20, "epoch=1-step=20.ckpt")]
    assert ignored == [{"path": str(tmp_path / "last.ckpt"),
                        "reason": "no step number in the name"}]


def test_two_checkpoints_of_one_step_and_an_empty_run_are_errors(tmp_path):
    (tmp_path / "step_1.pt").write_bytes(b"x")
    (tmp_path / "model_1.pt").write_bytes(b"x")
    with pytest.raises(SpectraError, match="both have step 1"):
        find_checkpoints(tmp_path)
    with pytest.raises(SpectraError, match="holds no checkpoint matching"):
        find_checkpoints(tmp_path, glob="*.safetensors")
    with pytest.raises(SpectraError, match="does not exist"):
        find_checkpoints(tmp_path / "nope")


def test_a_list_without_step_numbers_keeps_its_order(tmp_path):
    a, b = tmp_path / "final.pt", tmp_path / "base.pt"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    found, _ = find_checkpoints([a, b])
    assert [(c.step, c.path) for c in found] == [(0, a), (1, b)]


def test_each_step_equals_analysing_that_checkpoint_alone(run_dir, tmp_path):
    config = TrackConfig(analyze=AnalyzeConfig(**FAST), cache=tmp_path / "cache")
    report = track_run(run_dir, config).to_dict()
    assert [s["step"] for s in report["steps"]] == list(STEPS)
    for step in report["steps"]:
        alone = analyze_checkpoint(Path(step["source"]["path"]), AnalyzeConfig(**FAST)).to_dict()
        assert step["layers"] == alone["layers"]
        assert step["skipped"] == alone["skipped"]
        assert step["summary"] == alone["summary"]
        assert step["hessian"] is None
    # the run trains: the layers change between steps
    first, last = report["steps"][0]["layers"][0], report["steps"][-1]["layers"][0]
    assert first["sigma_max"] != last["sigma_max"]


def test_the_cache_is_keyed_by_content(run_dir, tmp_path):
    cache = tmp_path / "cache"
    config = TrackConfig(analyze=AnalyzeConfig(**FAST), cache=cache)
    first = track_run(run_dir, config).to_dict()
    assert first["source"]["cache"] == {"dir": str(cache), "hits": 0, "misses": 5, "errors": []}
    again = track_run(run_dir, config).to_dict()
    assert again["source"]["cache"]["hits"] == 5
    assert [s["layers"] for s in again["steps"]] == [s["layers"] for s in first["steps"]]
    # a growing run: a copy under a new step name is the same content (a hit); a rewritten
    # checkpoint under an old name is new content (a miss)
    grown = tmp_path / "grown"
    shutil.copytree(run_dir, grown)
    shutil.copytree(grown / "checkpoint-100", grown / "checkpoint-200")
    weights = grown / "checkpoint-5" / "model.safetensors"
    state = {"fc1.weight": torch.ones(16, 16)}  # above min_size: still a matrix to analyse
    save_file(state, str(weights))
    report = track_run(grown, config).to_dict()
    cached = {s["step"]: s["source"]["cached"] for s in report["steps"]}
    assert cached == {5: False, 10: True, 20: True, 40: True, 100: True, 200: True}
    assert report["steps"][-1]["source"]["path"] == str(grown / "checkpoint-200")
    # other settings, other entries
    other = TrackConfig(analyze=AnalyzeConfig(fit="ks", farms=False), cache=cache)
    assert track_run(run_dir, other).to_dict()["source"]["cache"]["hits"] == 0


def test_content_hash_is_of_the_weights_file(run_dir, tmp_path):
    folder = run_dir / "checkpoint-5"
    assert content_hash(folder) == content_hash(folder / "model.safetensors")
    copy = tmp_path / "copy.safetensors"
    shutil.copy(folder / "model.safetensors", copy)
    assert content_hash(copy) == content_hash(folder)
    assert content_hash(run_dir / "checkpoint-10") != content_hash(folder)


def test_default_cache_lives_in_the_run_and_a_damaged_entry_is_recomputed(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = TrackConfig(analyze=AnalyzeConfig(**FAST))
    track_run(run, config)
    entries = sorted((run / ".spectracli-cache").glob("analyze-*.json"))
    assert len(entries) == 5
    entries[0].write_text("{not json")
    report = track_run(run, config).to_dict()
    assert report["source"]["cache"]["hits"] == 4
    assert track_run(run, TrackConfig(analyze=AnalyzeConfig(**FAST), cache=False)).to_dict()[
        "source"]["cache"]["dir"] is None


def test_subspace_overlap_and_gradient_fraction_against_closed_forms():
    torch.manual_seed(0)
    q = torch.linalg.qr(torch.randn(50, 50, dtype=torch.float64)).Q
    v = q[:, :3].T  # (3, 50) orthonormal rows
    assert subspace_overlap(v, v) == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    # rotate the third vector by theta towards a direction outside the span
    theta = 0.3
    w = v.clone()
    w[2] = math.cos(theta) * v[2] + math.sin(theta) * q[:, 10]
    assert subspace_overlap(v, w) == pytest.approx([1.0, 1.0, math.cos(theta)], abs=1e-12)
    g = 3.0 * q[:, 0] + 4.0 * q[:, 20]
    assert gradient_fraction(v, g) == pytest.approx(3.0 / 5.0, abs=1e-12)
    assert gradient_fraction(v, torch.zeros(50)) is None


runner = CliRunner()


def test_cli_track_json_csv_and_rerender(run_dir, tmp_path):
    out = tmp_path / "track.json"
    args = ["track", str(run_dir), "--fit", "median", "--no-farms", "--cache",
            str(tmp_path / "c")]
    res = runner.invoke(app, [*args, "--format", "json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    data = load_report(out)
    assert data["kind"] == "track"
    assert data["settings"]["analyze"]["fit"] == "median"
    assert data["settings"]["analyze"]["farms"] is False
    assert [s["step"] for s in data["steps"]] == list(STEPS)

    res = runner.invoke(app, [*args, "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert set(rows[0]) == {"step", "layer", "metric", "value"}
    by = {(int(r["step"]), r["layer"], r["metric"]): float(r["value"]) for r in rows}
    for step in data["steps"]:
        for layer in step["layers"]:
            for metric in LAYER_METRICS:
                value = layer_metric(layer, metric)
                if isinstance(value, float):
                    assert by[(step["step"], layer["name"], metric)] == pytest.approx(value,
                                                                                      rel=1e-15)
    assert by[(100, "summary", "mean_alpha")] == data["steps"][-1]["summary"]["mean_alpha"]

    res = runner.invoke(app, ["report", str(out), "--format", "table"])
    assert res.exit_code == 0, res.output
    assert "checkpoint-100" in res.output and "mean_alpha" in res.output
    res = runner.invoke(app, ["report", str(out), "--format", "markdown"])
    assert res.exit_code == 0 and "| step |" in res.output
    html = tmp_path / "track.html"
    res = runner.invoke(app, ["report", str(out), "--format", "html", "-o", str(html)])
    assert res.exit_code == 0, res.output
    text = html.read_text()
    assert text.count("<figure>") == 2 and "alpha: layers x steps" in text
    res = runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "track_alpha_heatmap.png", "track_metrics.png"]


def test_cli_track_takes_a_list_of_paths(run_dir, tmp_path):
    paths = [str(run_dir / f"checkpoint-{s}" / "model.safetensors") for s in (20, 5)]
    res = runner.invoke(app, ["track", *paths, "--no-farms", "--no-cache", "-f", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    # the file names carry no step number: the given order, positions as steps
    assert [(s["step"], s["source"]["path"]) for s in data["steps"]] == [(0, paths[0]),
                                                                         (1, paths[1])]


@pytest.mark.parametrize("args, message", [
    (["nope-dir"], "does not exist"),
    (["{run}", "--model", "m.py:f"], "--model is for the Hessian: add --hessian"),
    (["{run}", "--hessian"], "--hessian needs --model and --data"),
    (["{run}", "--format", "xml"], "--format must be one of"),
    (["{run}", "--fit", "nope"], "--fit must be one of"),
    (["{run}", "--cache", "x", "--no-cache"], "exclude each other"),
])
def test_cli_track_bad_input_is_one_line_and_exit_2(run_dir, args, message):
    res = runner.invoke(app, ["track", *[a.format(run=run_dir) for a in args]])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


HESSIAN = {"k": 3, "dtype": "float64", "tol": 1e-10, "max_samples": 256, "seed": 0}


def _hessian_track(run_dir, warm: bool, **extra):
    from spectracli.hessian import HessianConfig

    x, y = load_digits("train")
    config = TrackConfig(
        analyze=AnalyzeConfig(**FAST), cache=False, hessian=HessianConfig(**HESSIAN, **extra),
        model=build_mlp, data=(x, y), warm_start=warm, gradient=True,
    )
    return track_run(run_dir, config).to_dict()


@pytest.fixture(scope="module")
def hessian_runs(run_dir, one_thread):
    return _hessian_track(run_dir, True, lr=0.1), _hessian_track(run_dir, False)


def test_warm_started_eigenvalues_equal_cold_ones_with_fewer_hvps(hessian_runs):
    warm, cold = hessian_runs
    hw = [s["hessian"] for s in warm["steps"]]
    hc = [s["hessian"] for s in cold["steps"]]
    assert [h["warm_started"] for h in hw] == [False, True, True, True, True]
    assert not any(h["warm_started"] for h in hc)
    for a, b in zip(hw, hc, strict=True):
        assert all(a["converged"]) and all(b["converged"])
        assert a["eigenvalues"] == pytest.approx(b["eigenvalues"], rel=1e-8, abs=0)
    assert sum(h["hvp_count"] for h in hw) < sum(h["hvp_count"] for h in hc)


def test_each_steps_hessian_equals_the_hessian_of_that_checkpoint_alone(hessian_runs):
    from spectracli.hessian import HessianConfig, analyze
    from spectracli.hessian.loading import apply_state_dict
    from spectracli.io import load_state_dict

    cold = hessian_runs[1]
    x, y = load_digits("train")
    step = cold["steps"][2]
    model = build_mlp()
    apply_state_dict(model, load_state_dict(step["source"]["path"]), "test")
    alone = analyze(model, (x, y), "cross_entropy", HessianConfig(**HESSIAN)).to_dict()
    assert step["hessian"]["eigenvalues"] == alone["eigenvalues"]  # same start, same numbers
    assert step["hessian"]["hvp_count"] == alone["hvp_count"]


def test_per_step_sharpness_overlap_and_gradient_fraction(hessian_runs, run_dir):
    from spectracli.hessian import HessianConfig
    from spectracli.hessian.api import build_operator
    from spectracli.hessian.lanczos import lanczos
    from spectracli.hessian.loading import apply_state_dict
    from spectracli.io import load_state_dict

    warm = hessian_runs[0]
    x, y = load_digits("train")
    for i, step in enumerate(warm["steps"]):
        h = step["hessian"]
        assert h["edge_of_stability"] == pytest.approx(0.1 * h["eigenvalues"][0] / 2, rel=1e-15)
        if i == 0:
            assert h["overlap"] is None
        else:
            assert len(h["overlap"]) == 3 and all(0.0 <= c <= 1.0 for c in h["overlap"])
    # recompute two consecutive eigenspaces and the gradient independently (dense products)
    vecs, grads = [], []
    for step in warm["steps"][3:5]:
        model = build_mlp()
        apply_state_dict(model, load_state_dict(step["source"]["path"]), "test")
        op, _ = build_operator(model, (x, y), "cross_entropy", HessianConfig(**HESSIAN))
        vecs.append(lanczos(op, 3, tol=1e-12, return_vectors=True).eigenvectors)
        grads.append(op.loss_and_grad()[1].to(torch.float64))
    a, b = vecs
    overlap = torch.linalg.svdvals(a @ b.T)
    assert warm["steps"][4]["hessian"]["overlap"] == pytest.approx(overlap.tolist(), abs=1e-6)
    g = grads[1]
    frac = float((b @ g).norm() / g.norm())
    assert warm["steps"][4]["hessian"]["gradient_fraction"] == pytest.approx(frac, abs=1e-6)


def test_track_report_with_hessian_renders(hessian_runs, tmp_path):
    from spectracli.report import render
    from spectracli.report.track import track_figures

    warm = hessian_runs[0]
    rows = list(csv.DictReader(io.StringIO(render(warm, "csv"))))
    hess = {(int(r["step"]), r["metric"]): float(r["value"]) for r in rows
            if r["layer"] == "hessian"}
    last = warm["steps"][-1]["hessian"]
    assert hess[(100, "lambda_max")] == last["eigenvalues"][0]
    assert hess[(100, "hvp_count")] == last["hvp_count"]
    assert hess[(100, "overlap_min")] == min(last["overlap"])
    assert (5, "overlap_min") not in hess
    assert "lambda_max" in render(warm, "table")
    names = [f.filename for f in track_figures(warm)]
    assert names == ["track_metrics.png", "track_alpha_heatmap.png", "track_sharpness.png"]


def test_cli_track_hessian(run_dir, tmp_path):
    model = f"{ROOT / 'sample_models' / 'digits.py'}:build_mlp"
    data = str(ROOT / "sample_models" / "digits.npz")
    args = ["track", str(run_dir), "--glob", "checkpoint-[14]*", "--no-farms", "--no-cache",
            "--hessian", "--model", model, "--data", data, "-k", "2", "--max-samples", "128",
            "--hessian-dtype", "float64", "--lr", "0.1", "-f", "json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data_ = json.loads(res.output)
    assert [s["step"] for s in data_["steps"]] == [10, 40, 100]
    hs = [s["hessian"] for s in data_["steps"]]
    assert [h["warm_started"] for h in hs] == [False, True, True]
    assert all(len(h["eigenvalues"]) == 2 and all(h["converged"]) for h in hs)
    assert data_["settings"]["hessian"]["warm_start"] is True
    assert hs[-1]["source"]["weights"].endswith("checkpoint-100")
    res = runner.invoke(app, [*args[:-2], "--cold", "-f", "json"])
    assert not any(s["hessian"]["warm_started"] for s in json.loads(res.output)["steps"])
    res = runner.invoke(app, [*args[:7], "--model", model, "--data", "nope.npz"])
    assert res.exit_code == 2 and "nope.npz" in res.output


def test_cli_track_hessian_takes_the_hessian_commands_options(run_dir, tmp_path):
    """--which, --params, --hvp-mode, --density, --output-fn (and the rest of HESSIAN_OPTIONS)
    reach each step's solve: the first step equals the library's Hessian of that checkpoint
    with the same settings and hook."""
    from spectracli.hessian import HessianConfig, analyze
    from spectracli.io import load_state_dict

    hook = tmp_path / "hooks.py"
    hook.write_text("def double(out):\n    return 2.0 * out\n")
    model = f"{ROOT / 'sample_models' / 'digits.py'}:build_mlp"
    args = ["track", str(run_dir), "--glob", "checkpoint-[14]*", "--no-farms", "--no-cache",
            "--hessian", "--model", model, "--data", str(ROOT / "sample_models" / "digits.npz"),
            "-k", "1", "--max-samples", "64", "--hessian-dtype", "float64", "--max-hvps", "40",
            "--which", "both", "--params", "fc2.*", "--hvp-mode", "forward-over-reverse",
            "--density", "--density-probes", "1", "--density-steps", "6",
            "--output-fn", f"{hook}:double", "-f", "json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    first = report["steps"][0]["hessian"]
    from spectracli.report.track import render_track

    assert "| lambda_max | lambda_min |" in render_track(report, "markdown")
    net = build_mlp()
    net.load_state_dict(load_state_dict(run_dir / "checkpoint-10"))
    x, y = load_digits("train")
    truth = analyze(net, (x, y), "cross_entropy", HessianConfig(
        k=1, which="both", params=["fc2.*"], dtype="float64", max_hvps=40, max_samples=64,
        hvp_mode="forward-over-reverse", density=True, density_probes=1, density_steps=6),
        output_fn=lambda out: 2.0 * out).to_dict()
    assert first["n_params"] == 256 * 128 + 128
    assert first["settings"]["which"] == "both" and first["settings"]["params"] == ["fc2.*"]
    assert first["settings"]["hvp_mode"] == "forward-over-reverse"
    assert first["eigenvalues"] == pytest.approx(truth["eigenvalues"], rel=1e-9)
    assert first["density"]["n_probes"] == 1
    res = runner.invoke(app, ["track", str(run_dir), "--which", "smallest"])
    assert res.exit_code == 2 and "--which is for the Hessian: add --hessian" in res.output


def test_hessian_of_lightning_checkpoints_with_a_model_prefix(run_dir, tmp_path):
    """A LightningModule holding the network as ``self.model`` saves ``model.<name>`` keys in
    ``state_dict``; the factory's model is loaded from them."""
    from spectracli.hessian import HessianConfig
    from spectracli.io import load_state_dict

    state = load_state_dict(run_dir / "checkpoint-10")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()},
                "global_step": 10, "epoch": 0}, tmp_path / "epoch=0-step=10.ckpt")
    x, y = load_digits("train")
    config = TrackConfig(analyze=AnalyzeConfig(**FAST), cache=False,
                         hessian=HessianConfig(**HESSIAN), model=build_mlp, data=(x, y))
    prefixed = track_run(tmp_path, config).to_dict()["steps"][0]
    plain = track_run([run_dir / "checkpoint-10"], config).to_dict()["steps"][0]
    assert prefixed["hessian"]["eigenvalues"] == plain["hessian"]["eigenvalues"]
    assert [layer["name"] for layer in prefixed["layers"]] == [
        "model.fc1.weight", "model.fc2.weight", "model.head.weight"]
