"""Hugging Face ids resolved from a hub cache built here in the hub's own layout (no network).

Layout: ``<cache>/models--org--name/refs/<branch>`` holds a commit hash, the files live in
``snapshots/<hash>/``. Truth: the same file analysed by its local path.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.cli.app import app
from spectracli.errors import CheckpointError
from spectracli.io import open_checkpoint

pytest.importorskip("huggingface_hub")

MAIN = "a" * 40
V1 = "b" * 40


def _weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"fc1.weight": torch.randn(20, 12, generator=g),
            "fc2.weight": torch.randn(16, 20, generator=g)}


def _cache(root, repo="org/tiny"):
    """A hub cache with two revisions: main (safetensors + .bin + config) and tag v1."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    for ref, commit, seed in (("main", MAIN, 0), ("v1", V1, 1)):
        snap = repo_dir / "snapshots" / commit
        snap.mkdir(parents=True)
        save_file(_weights(seed), str(snap / "model.safetensors"))
        torch.save({k: v * 0 for k, v in _weights(seed).items()}, snap / "pytorch_model.bin")
        (snap / "config.json").write_text(json.dumps({"model_type": "mlp", "hidden_size": 12}))
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return repo_dir


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    repo_dir = _cache(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return repo_dir


def _sigma(report) -> dict[str, float]:
    return {la.name: la.sigma_max for la in report.layers}


def test_hub_id_reads_the_cached_safetensors_and_config(hub_cache):
    config = AnalyzeConfig(farms=False, min_size=5, threads=1)
    report = analyze_checkpoint("org/tiny", config)
    direct = analyze_checkpoint(hub_cache / "snapshots" / MAIN / "model.safetensors", config)
    assert report.source["format"] == "safetensors"  # safetensors win over the .bin beside it
    assert report.source["hub"] == {"repo_id": "org/tiny", "revision": "main", "commit": MAIN,
                                    "downloaded": False}
    assert _sigma(report) == _sigma(direct) and all(v > 0 for v in _sigma(report).values())
    with open_checkpoint("org/tiny") as ckpt:
        assert ckpt.config == {"model_type": "mlp", "hidden_size": 12}


def test_hub_revision_by_suffix_and_by_option(hub_cache, tmp_path):
    v1 = analyze_checkpoint(hub_cache / "snapshots" / V1 / "model.safetensors",
                            AnalyzeConfig(farms=False, min_size=5))
    out = tmp_path / "r.json"
    for args in (["org/tiny@v1"], ["org/tiny", "--revision", "v1"]):
        res = CliRunner().invoke(app, ["analyze", *args, "-f", "json", "-o", str(out),
                                       "--no-farms", "--min-size", "5"])
        assert res.exit_code == 0, res.output
        report = json.loads(out.read_text())
        assert report["source"]["hub"]["commit"] == V1
        assert {la["name"]: la["sigma_max"] for la in report["layers"]} == _sigma(v1)


def test_hub_id_not_cached_while_offline_is_one_line_exit_2(hub_cache, tmp_path):
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["analyze", "org/absent", "-f", "json", "-o", str(out)])
    assert res.exit_code == 2 and not out.exists() and "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "HF_HUB_OFFLINE" in lines[0] and "org/absent" in lines[0]
    with pytest.raises(CheckpointError, match="not a local path"):
        open_checkpoint("org/tiny@no-such-branch")


def test_existing_local_path_wins_over_the_hub_id(hub_cache, tmp_path):
    local = tmp_path / "org" / "tiny"
    local.mkdir(parents=True)
    save_file(_weights(7), str(local / "model.safetensors"))
    with open_checkpoint("org/tiny") as ckpt:
        assert ckpt.hub is None
        got = {h.name: h.load() for h in ckpt.handles()}
    assert torch.equal(got["fc1.weight"], _weights(7)["fc1.weight"])
    with pytest.raises(CheckpointError, match="applies to Hugging Face ids"):
        open_checkpoint(local, revision="v1")


def test_hf_home_locates_the_cache(tmp_path, monkeypatch):
    _cache(tmp_path / "home" / "hub")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with open_checkpoint("org/tiny") as ckpt:
        assert ckpt.hub["commit"] == MAIN


def test_missing_hub_package_names_the_extra(hub_cache, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)
    res = CliRunner().invoke(app, ["analyze", "org/tiny"])
    assert res.exit_code == 2 and "pip install 'spectracli[hub]'" in res.stderr


def test_hub_id_with_a_file_inside_the_repository(hub_cache):
    with open_checkpoint("org/tiny@v1/model.safetensors") as ckpt:
        assert ckpt.format == "safetensors" and ckpt.hub["file"] == "model.safetensors"
        got = {h.name: h.load() for h in ckpt.handles()}
    assert torch.equal(got["fc1.weight"], _weights(1)["fc1.weight"])
    with open_checkpoint("org/tiny/pytorch_model.bin") as ckpt:  # the .bin, when asked for
        assert ckpt.format == "pytorch" and ckpt.hub["commit"] == MAIN
    with pytest.raises(CheckpointError, match="without model.gguf .*HF_HUB_OFFLINE"):
        open_checkpoint("org/tiny/model.gguf")


def test_a_missing_file_with_a_weight_suffix_is_a_local_path_not_a_hub_id(tmp_path, monkeypatch):
    """`dir/model.pt` that does not exist says so at once (a fresh user waited 26 s for hub
    retries); `org/name` and `org/name/file.gguf` stay hub ids."""
    from spectracli.errors import CheckpointNotFoundError
    from spectracli.io import open_checkpoint
    from spectracli.io.hub import parse_hub_id

    assert parse_hub_id("m/nonexist.pt") is None
    assert parse_hub_id("runs/model.safetensors") is None
    assert parse_hub_id("org/name") == ("org/name", None, None)
    assert parse_hub_id("org/name/model-q4.gguf") == ("org/name", None, "model-q4.gguf")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        open_checkpoint("m/nonexist.pt")
