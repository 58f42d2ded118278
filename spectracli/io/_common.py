"""Small helpers shared by the readers: one-line messages from foreign exceptions."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from spectracli.errors import CheckpointError, UnsafeReferenceError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException, limit: int = 240) -> str:
    """The first non-empty line of an exception's message, ANSI codes removed, capped in length.

    Foreign libraries (torch, zipfile, the safetensors Rust core) write multi-line messages; our
    errors are one line, so only the head of theirs is kept.

    Returns:
        The line, at most ``limit`` characters (the type name when the message is empty).
    """
    text = _ANSI.sub("", str(exc))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        first = type(exc).__name__
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    return first


def _hub_blobs(base: Path) -> Path | None:
    """The ``blobs`` folder of the Hugging Face cache repository holding ``base``, if any.

    A hub cache snapshot (``models--org--name/snapshots/<commit>/``) holds symlinks into
    ``models--org--name/blobs/``; those are the one way out of a directory a reader follows.
    ``base`` is resolved; a ``blobs`` that is itself a symlink does not count.

    Returns:
        The ``blobs`` directory, or None when ``base`` is not inside a hub cache snapshot.
    """
    for folder in (base, *base.parents):
        snapshots = folder.parent
        if snapshots.name == "snapshots" and "--" in snapshots.parent.name:
            blobs = snapshots.parent / "blobs"
            if blobs.is_dir() and not blobs.is_symlink():
                return blobs
            return None
    return None


def contained_file(root: Path, name: str, manifest: Path, entry: str) -> Path:
    """``root / name`` for a file name read from a manifest, refused when it leads out of ``root``.

    A checkpoint reads only files inside its own directory: a manifest (a sharded index, an ONNX
    model's external data locations) naming an absolute path, climbing out with ``..``, or
    naming a symlink whose target lies outside is refused before anything is opened. The one
    exception is a Hugging Face cache snapshot, whose files are symlinks into the same
    repository's ``blobs/`` folder (huggingface_hub lays it out so).

    Args:
        root: the checkpoint's directory (the manifest's folder).
        name: the file name as the manifest spells it.
        manifest: the file that names it, for the message.
        entry: what names it in the manifest, e.g. ``"weight_map entry 'lm_head.weight'"``.

    Returns:
        ``root / name`` (not resolved: messages keep the user's spelling).

    Raises:
        UnsafeReferenceError: ``name`` is absolute or resolves outside ``root``.
    """
    path = root / name
    why = None
    if os.path.isabs(name) or PureWindowsPath(name).drive or name.startswith(("/", "\\")):
        why = "an absolute path"
    else:
        base = root.resolve()
        lexical = Path(os.path.normpath(base / name))
        target = path.resolve()
        if lexical == base:
            why = "the checkpoint's directory itself, not a file in it"
        elif base not in lexical.parents:
            why = "a path that climbs out of the checkpoint's directory with '..'"
        elif target == base or base not in target.parents:
            blobs = _hub_blobs(base)
            if blobs is None or blobs not in target.parents:
                why = f"a symlink leading out of the checkpoint's directory, to {target}"
    if why is None:
        return path
    raise UnsafeReferenceError(
        f"{manifest}: {entry} names {name!r}, {why}; refused: a checkpoint reads only files "
        f"inside its own directory, {root}{os.sep}"
    )


def read_weight_map(index_path: Path) -> dict[str, str]:
    """The ``weight_map`` (tensor name -> shard file) of a Hugging Face sharded index.

    Used for ``*.safetensors.index.json`` and ``pytorch_model.bin.index.json`` alike. Every shard
    the index names must be a file inside the index's directory (:func:`contained_file`).

    Returns:
        ``{tensor name: shard file name}``.

    Raises:
        CheckpointError: the index is unreadable, not JSON, has no (or an empty) ``weight_map``,
            or names a shard missing from its directory (the message names it).
        UnsafeReferenceError: a shard name is absolute or leads out of the index's directory.
    """
    root = index_path.parent
    try:
        with open(index_path, encoding="utf-8") as fh:
            index = json.load(fh)
    except OSError as exc:
        raise CheckpointError(f"cannot read {index_path}: {one_line(exc)}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"index {index_path} is not JSON: {one_line(exc)}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise CheckpointError(
            f"index {index_path} has no 'weight_map' object mapping tensor names to shard files"
        )
    if not weight_map:
        raise CheckpointError(f"index {index_path} has an empty weight_map: no tensors")
    first_entry = {}
    for tensor, shard in weight_map.items():
        first_entry.setdefault(shard, tensor)
    for shard, tensor in first_entry.items():
        contained_file(root, shard, index_path, f"weight_map entry {tensor!r}")
    missing = sorted({s for s in weight_map.values() if not (root / s).is_file()})
    if missing:
        listed = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise CheckpointError(
            f"index {index_path} names shard(s) missing from {root}{os.sep}: {listed}"
        )
    return weight_map


def strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Remove ``_orig_mod.`` everywhere and ``module.`` when every name starts with it.

    Returns:
        ``state`` renamed (the same values), or as saved when stripping would merge two names.
    """
    names = {k: k.replace("_orig_mod.", "") for k in state}
    while names and all(v.startswith("module.") for v in names.values()):
        names = {k: v[len("module.") :] for k, v in names.items()}
    if len(set(names.values())) != len(names):  # stripping would merge two tensors: keep as saved
        return state
    return {names[k]: v for k, v in state.items()}


def missing_extra(package: str, extra: str, what: str) -> CheckpointError:
    """The one-line error for an optional dependency that is not installed."""
    return CheckpointError(
        f"reading {what} needs the '{package}' package: pip install 'spectracli[{extra}]'"
    )


# numpy dtypes torch.from_numpy accepts; the numpy name is the torch name.
TENSOR_DTYPES = (
    "float64", "float32", "float16", "complex64", "complex128", "int64", "int32", "int16",
    "int8", "uint64", "uint32", "uint16", "uint8", "bool",
)


def tensor_dtype_name(dtype: np.dtype) -> str | None:
    """The torch dtype name of a numpy dtype torch can hold, decided without importing torch.

    Returns:
        ``"float32"`` etc. (the numpy names of :data:`TENSOR_DTYPES` are torch's), else None.
    """
    if dtype.fields is not None or dtype.subdtype is not None:
        return None
    name = dtype.newbyteorder("=").name
    return name if name in TENSOR_DTYPES else None


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> the same values as float32, exactly.

    bfloat16 is the top half of a float32 (same sign, exponent and 7 fraction bits), so
    ``(uint16 as uint32) << 16`` viewed as float32 is the exact value.

    Returns:
        float32 array of ``bits``' shape.

    Example:
        >>> bfloat16_to_float32(np.array([0x3F80, 0xC000, 0x7F80], dtype=np.uint16))
        array([ 1., -2., inf], dtype=float32)
    """
    return (bits.astype(np.uint32) << 16).view(np.float32)


def group_tied(
    items: Mapping[str, Any], tie_key: Callable[[Any], tuple | None]
) -> list[tuple[str, list[str]]]:
    """Names grouped by a tie key: an item whose key another already has is its alias.

    Args:
        items: name -> array or tensor, in checkpoint order.
        tie_key: the view an item stands for (storage, offset, shape, strides, dtype), or None
            when it cannot be told (never tied).

    Returns:
        ``(name, aliases)`` in the order of ``items``, one entry per distinct view.
    """
    groups: dict[tuple, list[str]] = {}
    order: list[tuple[str, list[str]]] = []
    for name, item in items.items():
        key = tie_key(item)
        if key is not None and key in groups:
            groups[key].append(name)
            continue
        aliases: list[str] = []
        if key is not None:
            groups[key] = aliases
        order.append((name, aliases))
    return order
