"""Hugging Face sharded safetensors: ``*.safetensors.index.json`` plus its shard files."""

from __future__ import annotations

from pathlib import Path

from spectracli.errors import CheckpointError
from spectracli.io._common import read_weight_map
from spectracli.io.base import Checkpoint
from spectracli.io.safetensors_reader import SafetensorsCheckpoint, SafetensorsFile


def open_sharded(index_path: Path, shown_path: Path) -> Checkpoint:
    """A Hugging Face sharded checkpoint: ``*.safetensors.index.json`` plus its shards.

    Every shard named by the index must exist and every tensor the index places in a shard must
    be in that shard's header; all headers are validated before any handle is yielded. Each shard
    is opened once and serves all of its tensors.

    Returns:
        The checkpoint, shown as ``shown_path``; tensors a shard holds that the index forgot
        are served too, once.

    Raises:
        CheckpointError: an unreadable index, a missing shard, or a tensor its shard lacks.
    """
    root = index_path.parent
    weight_map = read_weight_map(index_path)
    shard_names = sorted(set(weight_map.values()))
    files: list[SafetensorsFile] = []
    owner: dict[str, SafetensorsFile] = {}
    by_shard: dict[str, SafetensorsFile] = {}
    for s in shard_names:
        f = SafetensorsFile(root / s)
        files.append(f)
        by_shard[s] = f
    for name, s in weight_map.items():
        f = by_shard[s]
        if name not in f.entries:
            raise CheckpointError(
                f"index {index_path} places tensor '{name}' in shard {s}, which does not hold it"
            )
        owner[name] = f
    for f in files:  # tensors a shard holds that the index forgot: still served, once
        for name in f.entries:
            owner.setdefault(name, f)
    return SafetensorsCheckpoint(shown_path, "safetensors-sharded", files, owner, root)
