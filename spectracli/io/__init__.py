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
from typing import TYPE_CHECKING

from spectracli.errors import CheckpointError
from spectracli.io.base import Checkpoint, TensorHandle, read_config_json
from spectracli.io.detect import detect

if TYPE_CHECKING:
    import torch

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "TensorHandle",
    "load_state_dict",
    "open_checkpoint",
]


def open_checkpoint(
    path: str | Path,
    *,
    trust_pickle: bool = False,
    revision: str | None = None,
    allow_download: bool = True,
) -> Checkpoint:
    """Open a checkpoint file, directory or Hugging Face model id for streaming reads.

    Formats (docs/checkpoints.md): ``.safetensors``; a Hugging Face sharded directory (or its
    ``*.safetensors.index.json``); PyTorch ``.pt/.pth/.bin/.ckpt`` (zip or legacy pickle, loaded
    with ``weights_only=True`` and foreign objects as inert placeholders unless ``trust_pickle``),
    sharded ``.bin`` with ``pytorch_model.bin.index.json``; ``.npz`` (``allow_pickle=False``);
    ``.gguf`` (extra ``[gguf]``); ``.onnx`` (extra ``[onnx]``). A ``path`` that does not exist
    and reads as ``org/name[@revision]`` is a Hugging Face id (extra ``[hub]``), resolved from
    the hub cache first, downloaded only when not offline and ``allow_download``; ``revision``
    picks the branch, tag or commit. Headers and indexes are validated here, so a bad file fails
    before any tensor is yielded. The ``config.json`` beside the weights, when there is one, is
    parsed into ``ckpt.config``.

    Args:
        path: a checkpoint file, a directory holding one, or a Hugging Face id.
        trust_pickle: unpickle PyTorch files with arbitrary code (only for trusted sources).
        revision: the branch, tag or commit of a Hugging Face id.
        allow_download: fetch a Hugging Face id that is not in the local cache.

    Returns:
        The open checkpoint (a context manager): ``handles()`` yields one lazy
        :class:`TensorHandle` per tensor (name, shape, dtype known before any data is read;
        ``load()`` reads that tensor alone).

    Raises:
        CheckpointError: missing, corrupt, unsafe or unsupported input (one line).

    Example:
        >>> from spectracli.io import open_checkpoint
        >>> with open_checkpoint("sample_models/digits_mlp.safetensors") as ckpt:
        ...     handles = {h.name: h for h in ckpt.handles()}
        ...     print(ckpt.format, handles["fc1.weight"].shape, handles["fc1.weight"].dtype)
        ...     print(tuple(handles["head.weight"].load().shape))
        safetensors (256, 64) float32
        (10, 128)
    """
    p = Path(path)
    hub_info = None
    if not p.exists() or revision is not None:
        from spectracli.io.hub import parse_hub_id, resolve_hub_id

        if not p.exists() and parse_hub_id(str(path)) is not None:
            p, hub_info = resolve_hub_id(str(path), revision, allow_download=allow_download)
        elif revision is not None:
            raise CheckpointError(
                f"revision {revision!r} applies to Hugging Face ids, but {path} is a local path",
                params=("revision",),
            )
    ckpt = _open(p, trust_pickle)
    ckpt.hub = hub_info
    if ckpt.config is None:  # the Hugging Face layout: config.json beside the weights
        shown = Path(ckpt.path)
        ckpt.config = read_config_json(shown if shown.is_dir() else shown.parent)
    return ckpt


def _open(p: Path, trust_pickle: bool) -> Checkpoint:  # noqa: PLR0911 - one branch per format
    """The reader of ``p``'s format (:func:`detect`); each reader is imported only when used."""
    fmt, file = detect(p)
    if fmt == "safetensors":
        from spectracli.io.safetensors_reader import open_safetensors

        return _shown_as(open_safetensors(file), p)
    if fmt == "safetensors-sharded":
        from spectracli.io.safetensors_sharded import open_sharded

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

    Returns:
        ``{name: tensor}`` for every tensor and alias, on the CPU in the stored dtype.
    """
    out: dict[str, torch.Tensor] = {}
    with open_checkpoint(path, trust_pickle=trust_pickle) as ckpt:
        for h in ckpt.handles():
            t = h.load()
            out[h.name] = t
            for alias in h.aliases:
                out[alias] = t
    return out
