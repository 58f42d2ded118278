"""The scale benchmark's sharded-checkpoint builder, on a tiny size: a real sharded checkpoint
that spectracli reads whole (every matrix analysed once, the index consistent with the shards)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

from safetensors import safe_open

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint

# benchmarks/ is not an installed package: load the script by path, whatever the working directory.
_SPEC = importlib.util.spec_from_file_location(
    "scale_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "scale_bench.py"
)
scale_bench = importlib.util.module_from_spec(_SPEC)
sys.modules["scale_bench"] = scale_bench
_SPEC.loader.exec_module(scale_bench)
build_sharded_checkpoint = scale_bench.build_sharded_checkpoint
layers_for = scale_bench.layers_for
layout = scale_bench.layout
nbytes = scale_bench.nbytes


def test_sharded_builder_index_matches_shards(tmp_path):
    meta = build_sharded_checkpoint(tmp_path, n_layers=2, d_model=16, d_ff=40, vocab=60,
                                    shard_bytes=6000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    expected = dict(layout(2, 16, 40, 60))
    assert set(index["weight_map"]) == set(expected)
    assert meta["n_shards"] == len(set(index["weight_map"].values())) > 1
    assert index["metadata"]["total_size"] == sum(nbytes(s) for s in expected.values())
    seen = {}
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(tmp_path / shard), framework="pt") as fh:
            for name in fh.keys():
                assert index["weight_map"][name] == shard
                seen[name] = tuple(fh.get_slice(name).get_shape())
    assert seen == expected
    assert meta["largest_tensor_bytes"] == 60 * 16 * 4


def test_sharded_checkpoint_is_analysed_whole(tmp_path):
    meta = build_sharded_checkpoint(tmp_path, n_layers=1, d_model=16, d_ff=40, vocab=60,
                                    shard_bytes=4000)
    report = analyze_checkpoint(tmp_path, AnalyzeConfig(farms=False, store_esd=False)).to_dict()
    names = {layer["name"] for layer in report["layers"]}
    assert names == {n for n, s in layout(1, 16, 40, 60) if len(s) == 2}
    assert len(names) == meta["n_matrices"]
    # Gaussian entries scaled by 1/sqrt(fan_in): sigma_max of an m x n matrix is about
    # (sqrt(m) + sqrt(n)) / sqrt(n) (Marchenko-Pastur edge); 1.5x covers small-size fluctuation.
    for layer in report["layers"]:
        m, n = layer["shape"]
        edge = (math.sqrt(m) + math.sqrt(n)) / math.sqrt(n)
        assert 0.5 * edge < layer["sigma_max"] < 1.5 * edge


def test_layers_for_reaches_the_requested_size():
    n = layers_for(2e9, 768, 3072, 250_002)
    total = sum(nbytes(s) for _, s in layout(n, 768, 3072, 250_002))
    assert total <= 2e9 < total + sum(nbytes(s) for _, s in layout(1, 768, 3072, 0)[1:])
