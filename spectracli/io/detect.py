"""Which reader a path needs, decided by content first and extension second.

Returns one of ``"safetensors"``, ``"safetensors-sharded"``, ``"pytorch"``, ``"pytorch-sharded"``,
``"npz"``, ``"gguf"``, ``"onnx"`` with the file to read. Content wins over the name where it is
unambiguous (``GGUF`` magic, a zip holding ``.npy`` members is an ``.npz``, a zip holding
``data.pkl`` or a pickle stream is PyTorch, an 8-byte length followed by ``{`` is safetensors);
otherwise the extension picks the reader, whose own checks then say precisely what is wrong with
the file. Formats spectracli does not read (TensorFlow SavedModel and checkpoints, Keras
``.h5``/``.keras``, TFLite, ONNX Runtime ``.ort``, Core ML) are recognised by their magic bytes or
layout and named in the error, with the list of what is supported.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from spectracli.errors import CheckpointError, CheckpointNotFoundError

PYTORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
INDEX_SUFFIX = ".safetensors.index.json"
BIN_INDEX_SUFFIX = ".bin.index.json"
LOOKED_FOR = (
    "*.safetensors.index.json, *.safetensors, *.bin.index.json, pytorch_model.bin, *.pt, *.pth, "
    "*.bin, *.ckpt, *.npz, *.gguf, *.onnx"
)
SUPPORTED = (
    "spectracli reads safetensors (single or sharded), PyTorch .pt/.pth/.bin/.ckpt (single or "
    "sharded .bin), .npz, GGUF, ONNX and Hugging Face model ids"
)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def unsupported(path: Path, what: str) -> CheckpointError:
    """The error for a recognised format that spectracli does not read."""
    return CheckpointError(f"{path} is {what}, which spectracli does not read ({SUPPORTED})")


def detect(path: Path) -> tuple[str, Path]:
    """``(format, file)`` for a checkpoint path (module doc).

    Returns:
        The format name and the file its reader opens (for a directory, the file chosen in it).

    Raises:
        CheckpointNotFoundError: ``path`` does not exist (a ``FileNotFoundError``).
        CheckpointError: an empty, unreadable, text or foreign file, or no checkpoint at all.
    """
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
    if path.name.endswith(BIN_INDEX_SUFFIX):
        return "pytorch-sharded", path
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _by_content(path, head, size) or _by_name(path, head), path


def _by_content(path: Path, head: bytes, size: int) -> str | None:
    """The format where the first bytes say it unambiguously (magic, zip members, pickle).

    Returns:
        The format, or None when the content alone does not decide.
    """
    suffix = path.suffix.lower()
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        kind = _zip_kind(path)
        if kind:
            return kind
    if head[:1] == b"\x80" and suffix != ".safetensors":  # pickle protocol >= 2 (legacy torch.save)
        return "pytorch"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < size:
        return "safetensors"
    return None


def _by_name(path: Path, head: bytes) -> str:
    """The format by extension, once foreign formats and text are ruled out.

    Returns:
        The format whose reader then says precisely what is wrong with the file, if anything.

    Raises:
        CheckpointError: a foreign format (named), a text file, or an unknown extension.
    """  # noqa: DOC501 - unsupported() builds the CheckpointError, which ruff reads as a type
    suffix = path.suffix.lower()
    foreign = _foreign_file(path, head)
    if foreign:
        raise unsupported(path, foreign)
    if suffix == ".onnx" or (suffix not in PYTORCH_SUFFIXES and _looks_like_onnx(head)):
        return "onnx"
    if suffix == ".gguf":
        return "gguf"  # no GGUF magic: the reader says what is wrong
    if _looks_like_text(head):
        raise CheckpointError(f"{path} is a text file, not a checkpoint ({SUPPORTED})")
    by_suffix = {".safetensors": "safetensors", ".npz": "npz",
                 **dict.fromkeys(PYTORCH_SUFFIXES, "pytorch")}
    if suffix in by_suffix:
        return by_suffix[suffix]
    raise CheckpointError(f"{path} is not a recognised checkpoint format ({SUPPORTED})")


def _foreign_file(path: Path, head: bytes) -> str | None:
    """The name of a format spectracli does not read, recognised by magic bytes or name."""
    name, suffix = path.name.lower(), path.suffix.lower()
    checks = (  # in this order: the first that holds names the format
        (head.startswith(_HDF5_MAGIC), "an HDF5 file (Keras .h5 weights or model)"),
        (head[4:8] == b"TFL3", "a TensorFlow Lite model"),
        (head[4:8] == b"ORTM", "an ONNX Runtime (.ort) model; export it as .onnx instead"),
        (name in ("saved_model.pb", "saved_model.pbtxt"), "part of a TensorFlow SavedModel"),
        (suffix == ".pb", "a TensorFlow graph (.pb)"),
        (suffix == ".index" or ".data-" in name, "part of a TensorFlow checkpoint"),
        (suffix == ".mlmodel", "a Core ML model"),
        (suffix == ".keras", "a Keras .keras archive"),
    )
    return next((what for hit, what in checks if hit), None)


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ``ModelProto``: field 1 ``ir_version`` (a small varint) first, then another field.

    Protobuf has no magic; serialisers write fields in order, so a model starts with ``08 NN``
    (IR version 3-20) followed by the tag of producer_name, domain, graph, opset_import, ...

    Returns:
        Whether ``head`` starts like a serialised ``ModelProto``.
    """
    return (
        len(head) > 3
        and head[0] == 0x08
        and 3 <= head[1] <= 20
        and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72)
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
    if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        raise unsupported(path, "a Keras .keras archive")
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


def _one(path: Path, pattern: str, what: str) -> Path | None:
    """The single file matching ``pattern`` in ``path``; None for none; an error for several."""
    found = sorted(path.glob(pattern))
    if len(found) > 1:
        raise CheckpointError(
            f"directory {path} holds several {what} ({', '.join(p.name for p in found[:5])}); "
            "pass one file"
        )
    return found[0] if found else None


def _detect_dir(path: Path) -> tuple[str, Path]:
    index = _one(path, "*" + INDEX_SUFFIX, "sharded safetensors indexes")
    if index:
        return "safetensors-sharded", index
    single = _one(path, "*.safetensors", ".safetensors files and no *" + INDEX_SUFFIX)
    if single:
        return "safetensors", single
    bin_index = _one(path, "*" + BIN_INDEX_SUFFIX, "sharded PyTorch indexes")
    if bin_index:
        return "pytorch-sharded", bin_index
    if (path / "pytorch_model.bin").is_file():
        return "pytorch", path / "pytorch_model.bin"
    pickles = sorted(p for s in PYTORCH_SUFFIXES for p in path.glob("*" + s))
    if len(pickles) > 1:
        raise CheckpointError(
            f"directory {path} holds several PyTorch checkpoints "
            f"({', '.join(p.name for p in pickles[:5])}); pass one file"
        )
    if pickles:
        return "pytorch", pickles[0]
    for pattern, fmt, what in (
        ("*.npz", "npz", ".npz files"),
        ("*.gguf", "gguf", "GGUF files"),
        ("*.onnx", "onnx", "ONNX models"),
    ):
        found = _one(path, pattern, what)
        if found:
            return fmt, found
    foreign = _foreign_dir(path)
    if foreign:
        raise unsupported(path, foreign)
    raise CheckpointError(f"directory {path} holds no weights (looked for {LOOKED_FOR})")


def _foreign_dir(path: Path) -> str | None:
    if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
        return "a TensorFlow SavedModel"
    if path.suffix.lower() == ".mlpackage" or (path / "Manifest.json").is_file() and (
        path / "Data" / "com.apple.CoreML"
    ).is_dir():
        return "a Core ML package"
    if any(path.glob("*.h5")) or any(path.glob("*.keras")):
        return "a Keras model directory (.h5/.keras)"
    if (path / "checkpoint").is_file() and any(path.glob("*.index")):
        return "a TensorFlow checkpoint"
    if any(path.glob("*.tflite")):
        return "a TensorFlow Lite model directory"
    return None
