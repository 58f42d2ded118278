"""Hugging Face model ids (``org/name[@revision]``) resolved to a local snapshot directory.

Resolution goes through ``huggingface_hub`` (extra ``[hub]``), cache first:

1. an existing local path always wins (checked by the caller; an id is only tried for a path
   that does not exist);
2. the hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, read when called) is asked for the
   revision's snapshot without any network access (``local_files_only=True``);
3. only when that snapshot lacks weights, and the hub is not offline (``HF_HUB_OFFLINE``) and
   ``allow_download`` is true, the weights are downloaded: safetensors files (and their index)
   when the repository has any, else PyTorch ``.bin`` files, plus ``config.json``.

The snapshot directory is then read like any local directory, where safetensors win over ``.bin``
and ``config.json`` feeds the layer rules.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from spectracli.errors import CheckpointError
from spectracli.io._common import missing_extra, one_line

_HUB_ID = re.compile(
    r"^(?:hf://)?([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@([\w.-]+))?(?:/([\w.@=+-][\w./@=+-]*))?$"
)
_CONFIG_FILES = ["config.json", "adapter_config.json", "generation_config.json"]
_SAFETENSORS = ["*.safetensors", "*.safetensors.index.json"]
_BIN = ["pytorch_model*.bin", "*.bin.index.json"]
_TRUE = ("1", "on", "yes", "true")
# A two-part spec ending in a weight file's suffix names a local file (which may be missing).
_LOCAL_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz", ".gguf", ".onnx")


def parse_hub_id(spec: str) -> tuple[str, str | None, str | None] | None:
    """``(repo_id, revision, file)`` of ``[hf://]org/name[@rev][/path/in/repo]``; else None.

    The syntax is ``huggingface_hub.HfFileSystem``'s: a file inside the repository (e.g. one GGUF
    of many) follows the id; a revision with a ``/`` in it goes through ``revision=`` instead.

    Returns:
        The parts (revision and file None when absent), or None for a spec that is not an id
        (a local-looking path, ``..`` in the file, a trailing ``/``).
    """
    match = _HUB_ID.match(spec.strip())
    if not match or spec.startswith(("./", "../", "/")) or spec.endswith("/"):
        return None
    file = match.group(3)
    if file is None and match.group(2) is None and spec.lower().endswith(_LOCAL_SUFFIXES):
        return None  # dir/model.pt is a missing local file, not the repository "model.pt"
    if file and ".." in file.split("/"):
        return None
    return match.group(1), match.group(2), file


def hub_cache_dir() -> Path:
    """The hub cache directory as the environment says now (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise missing_extra("huggingface_hub", "hub", "Hugging Face model ids") from None
    return huggingface_hub


_WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.pt", "*.pth",
                 "*.gguf", "*.onnx")


def _has_weights(snapshot: Path, file: str | None = None) -> bool:
    if file:
        return (snapshot / file).exists()
    return any(any(snapshot.glob(pattern)) for pattern in _WEIGHT_FILES)


def resolve_hub_id(
    spec: str, revision: str | None = None, *, allow_download: bool = True
) -> tuple[Path, dict[str, Any]]:
    """The local snapshot directory of a Hugging Face model id, and what was resolved.

    ``revision`` (a branch, tag or commit) may also be given as ``org/name@revision``; both at
    once must agree. ``org/name/path`` names one file or folder of the repository (fetched alone
    when downloading).

    Returns:
        ``(path, info)``, info holding ``repo_id``, ``revision``, ``commit``, ``downloaded`` and
        ``file`` when one was named.

    Raises:
        CheckpointError: not an id; the id is not cached (or cached without weights) and the hub
            is offline or downloads are not allowed; the download fails; ``huggingface_hub``
            is not installed (the message names ``pip install 'spectracli[hub]'``).
    """
    parsed = parse_hub_id(spec)
    if parsed is None:
        raise CheckpointError(f"{spec} is neither an existing path nor a Hugging Face id org/name")
    repo_id, rev_in_id, file = parsed
    if rev_in_id and revision and rev_in_id != revision:
        raise CheckpointError(
            f"{spec} carries @{rev_in_id} but revision {revision!r} was also given: give one",
            params=("revision",),
        )
    revision = rev_in_id or revision or "main"
    hub = _hub()
    cache = hub_cache_dir()
    snapshot: Path | None = None
    try:
        found = hub.snapshot_download(
            repo_id, revision=revision, cache_dir=str(cache), local_files_only=True
        )
        snapshot = Path(found)
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError and relatives)
        snapshot = None
    info = {"repo_id": repo_id, "revision": revision, "downloaded": False}
    if file:
        info["file"] = file
    if snapshot is not None and _has_weights(snapshot, file):
        info["commit"] = snapshot.name
        return (snapshot / file if file else snapshot), info
    lacking = f"without {file}" if file else "without weights"
    where = f"{cache} holds {f'a snapshot {lacking}' if snapshot else 'no snapshot'} of it"
    if hub_offline():
        raise CheckpointError(
            f"{repo_id}@{revision} is not a local path and the Hugging Face cache {where}; "
            "HF_HUB_OFFLINE is set, so nothing is downloaded (download it first with "
            f"`hf download {repo_id}`, or unset HF_HUB_OFFLINE)"
        )
    if not allow_download:
        raise CheckpointError(
            f"{repo_id}@{revision} is not a local path and the Hugging Face cache {where}; "
            "downloads are not allowed"
        )
    snapshot = _download(hub, repo_id, revision, cache, file)
    info.update(commit=snapshot.name, downloaded=True)
    return (snapshot / file if file else snapshot), info


def _download(hub: Any, repo_id: str, revision: str, cache: Path, file: str | None) -> Path:
    try:
        if file:
            patterns = [*_CONFIG_FILES, file, f"{file}/*", f"{file}.data", f"{file}_data"]
        else:
            files = hub.list_repo_files(repo_id, revision=revision)
            has_safetensors = any(f.endswith(".safetensors") for f in files)
            patterns = _CONFIG_FILES + (_SAFETENSORS if has_safetensors else _BIN)
        found = hub.snapshot_download(
            repo_id, revision=revision, cache_dir=str(cache), allow_patterns=patterns
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all one line
        raise CheckpointError(
            f"cannot fetch {repo_id}@{revision} from the Hugging Face Hub: "
            f"{type(exc).__name__}: {one_line(exc)}"
        ) from None
    snapshot = Path(found)
    if not _has_weights(snapshot, file):
        raise CheckpointError(
            f"{repo_id}@{revision} holds no {file or 'safetensors or PyTorch .bin weights'}"
        )
    return snapshot
