"""Checkpoint readers: a path in, names and lazy tensor handles out (see docs/checkpoints.md).

    from spectracli.io import open_checkpoint
    with open_checkpoint("model.safetensors") as ckpt:
        for h in ckpt.handles():      # no tensor data read yet
            w = h.load()              # this one tensor, on the CPU, in its stored dtype

Every file-level problem (missing, empty, corrupt, unsafe, unknown format) raises
``spectracli.errors.CheckpointError`` with a one-line message.
"""

from __future__ import annotations

from pathlib import Path

import torch

from spectracli.errors import CheckpointError
from spectracli.io.base import Checkpoint, TensorHandle, read_config_json
from spectracli.io.detect import detect

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "TensorHandle",
    "load_state_dict",
    "open_checkpoint",
]


def open_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> Checkpoint:
    """Open a checkpoint file or directory for streaming reads.

    Formats: ``.safetensors``; a Hugging Face sharded directory (or its
    ``*.safetensors.index.json``); PyTorch ``.pt/.pth/.bin/.ckpt`` (zip or legacy pickle, loaded
    with ``weights_only=True`` unless ``trust_pickle``); ``.npz`` (``allow_pickle=False``).
    Headers and indexes are validated here, so a bad file fails before any tensor is yielded.
    The ``config.json`` beside the weights, when there is one, is parsed into ``ckpt.config``.
    """
    ckpt = _open(Path(path), trust_pickle)
    if ckpt.config is None:  # the Hugging Face layout: config.json beside the weights
        shown = Path(ckpt.path)
        ckpt.config = read_config_json(shown if shown.is_dir() else shown.parent)
    return ckpt


def _open(p: Path, trust_pickle: bool) -> Checkpoint:
    fmt, file = detect(p)
    if fmt == "safetensors":
        from spectracli.io.safetensors_reader import open_safetensors

        return _shown_as(open_safetensors(file), p)
    if fmt == "safetensors-sharded":
        from spectracli.io.safetensors_reader import open_sharded

        return open_sharded(file, p)
    if fmt == "pytorch":
        from spectracli.io.pytorch_reader import open_pytorch

        return _shown_as(open_pytorch(file, trust_pickle=trust_pickle), p)
    if fmt == "pytorch-sharded":
        from spectracli.io.pytorch_reader import open_pytorch_sharded

        return open_pytorch_sharded(file, p, trust_pickle=trust_pickle)
    if fmt == "gguf":
        from spectracli.io.gguf_reader import open_gguf

        return _shown_as(open_gguf(file), p)
    if fmt == "onnx":
        from spectracli.io.onnx_reader import open_onnx

        return _shown_as(open_onnx(file), p)
    from spectracli.io.npz_reader import open_npz

    return _shown_as(open_npz(file), p)


def _shown_as(ckpt: Checkpoint, path: Path) -> Checkpoint:
    ckpt.path = path  # report the path the user gave (a directory stays a directory)
    return ckpt


def load_state_dict(path: str | Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint by name, aliases included (tied names share one tensor).

    Loads everything into memory: meant for putting weights into a model (e.g. for the Hessian),
    not for streaming analysis.
    """
    out: dict[str, torch.Tensor] = {}
    with open_checkpoint(path, trust_pickle=trust_pickle) as ckpt:
        for h in ckpt.handles():
            t = h.load()
            out[h.name] = t
            for alias in h.aliases:
                out[alias] = t
    return out
