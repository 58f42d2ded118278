"""Which reader a path needs, decided by content first and extension second.

Returns one of ``"safetensors"``, ``"safetensors-sharded"``, ``"pytorch"``, ``"npz"`` with the file
to read. Content wins over the name where it is unambiguous (a zip holding ``.npy`` members is an
``.npz``, a zip holding ``data.pkl`` or a pickle stream is PyTorch, an 8-byte length followed by
``{`` is safetensors); otherwise the extension picks the reader, whose own checks then say
precisely what is wrong with the file.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from spectracli.errors import CheckpointError, CheckpointNotFoundError

PYTORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
INDEX_SUFFIX = ".safetensors.index.json"
LOOKED_FOR = (
    "*.safetensors.index.json, *.safetensors, pytorch_model.bin, *.pt, *.pth, *.bin, *.ckpt, *.npz"
)


def detect(path: Path) -> tuple[str, Path]:
    """``(format, file)`` for a checkpoint path; a ``CheckpointError`` for anything else."""
    if not path.exists():
        raise CheckpointNotFoundError(f"{path} does not exist")
    if path.is_dir():
        return _detect_dir(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file or directory")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), expected a checkpoint")
    if path.name.endswith(INDEX_SUFFIX):
        return "safetensors-sharded", path
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()

    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        kind = _zip_kind(path)
        if kind:
            return kind, path
    if head[:1] == b"\x80" and suffix != ".safetensors":  # pickle protocol >= 2 (legacy torch.save)
        return "pytorch", path
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < size:
        return "safetensors", path
    if _looks_like_text(head):
        raise CheckpointError(
            f"{path} is a text file, not a checkpoint "
            "(expected safetensors, a PyTorch .pt/.pth/.bin/.ckpt, or .npz)"
        )
    if suffix == ".safetensors":
        return "safetensors", path
    if suffix in PYTORCH_SUFFIXES:
        return "pytorch", path
    if suffix == ".npz":
        return "npz", path
    raise CheckpointError(
        f"{path} is not a recognised checkpoint: its content is neither safetensors, a PyTorch "
        "zip or pickle, nor an .npz archive"
    )


def _zip_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except Exception:  # noqa: BLE001 - zipfile raises many types on a corrupt archive
        return None  # let the extension decide; the reader reports the corruption
    if any(n.endswith("data.pkl") for n in names):
        return "pytorch"
    if names and any(n.endswith(".npy") for n in names):
        return "npz"
    return None


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut by the 4096-byte window
            return False
        text = head[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\n\r\f\v" for c in text)


def _detect_dir(path: Path) -> tuple[str, Path]:
    indexes = sorted(path.glob("*" + INDEX_SUFFIX))
    if len(indexes) == 1:
        return "safetensors-sharded", indexes[0]
    if len(indexes) > 1:
        raise CheckpointError(
            f"directory {path} holds several sharded indexes "
            f"({', '.join(p.name for p in indexes)}); pass one of them"
        )
    singles = sorted(path.glob("*.safetensors"))
    if len(singles) == 1:
        return "safetensors", singles[0]
    if len(singles) > 1:
        raise CheckpointError(
            f"directory {path} holds {len(singles)} .safetensors files and no "
            f"*{INDEX_SUFFIX}; pass one file"
        )
    if (path / "pytorch_model.bin").is_file():
        return "pytorch", path / "pytorch_model.bin"
    if list(path.glob("pytorch_model*.bin.index.json")):
        raise CheckpointError(
            f"directory {path} holds a sharded PyTorch .bin checkpoint, which is not supported; "
            "convert it to safetensors or pass one shard"
        )
    pickles = sorted(p for s in PYTORCH_SUFFIXES for p in path.glob("*" + s))
    if len(pickles) == 1:
        return "pytorch", pickles[0]
    if len(pickles) > 1:
        raise CheckpointError(
            f"directory {path} holds several PyTorch checkpoints "
            f"({', '.join(p.name for p in pickles[:5])}); pass one file"
        )
    npzs = sorted(path.glob("*.npz"))
    if len(npzs) == 1:
        return "npz", npzs[0]
    if len(npzs) > 1:
        raise CheckpointError(
            f"directory {path} holds several .npz files ({', '.join(p.name for p in npzs[:5])}); "
            "pass one file"
        )
    raise CheckpointError(f"directory {path} holds no weights (looked for {LOOKED_FOR})")
