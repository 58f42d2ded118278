"""Atomic output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from spectracli.errors import SpectraError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _target_checks(target: Path) -> Path:
    """The directory ``target`` would be written in, after the checks that need no writing.

    Returns:
        The directory (``.`` for a bare file name).

    Raises:
        SpectraError: the directory does not exist (or is not a directory), or ``target`` is a
            directory.
    """
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise SpectraError(f"cannot write {target}: directory {directory} {what}")
    if target.is_dir():  # checked first: os.replace would fail only after the work is written
        raise SpectraError(f"cannot write {target}: it is a directory, expected a file name")
    return directory


def _temp_beside(target: Path) -> tuple[int, str]:
    """A new empty temporary file in ``target``'s directory, named after it.

    Returns:
        (its open file descriptor, its path).

    Raises:
        SpectraError: as :func:`_target_checks`, or the file cannot be created there.
    """
    directory = _target_checks(target)
    try:
        return tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SpectraError(f"cannot write {target}: {exc.strerror} ({directory})") from None


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, before any work, where :func:`atomic_open` of ``path`` would fail at the end.

    The directory must exist and take a new file (tried by creating and removing an empty
    temporary file beside the target, so permissions, ACLs and read-only mounts are all seen);
    ``path`` must not be a directory. Nothing is left behind; an existing ``path`` is untouched.

    Raises:
        SpectraError: the directory does not exist or is not writable, or ``path`` is a
            directory (one line naming them).
    """
    fd, tmp = _temp_beside(Path(path))
    os.close(fd)
    os.unlink(tmp)


def check_writable_dir(path: str | os.PathLike) -> None:
    """Fail now where writing files into directory ``path`` (created if missing) would fail.

    Raises:
        SpectraError: ``path`` (or an ancestor it would be created in) exists and is not a
            directory, or the directory it would be written or created in is not writable.
    """
    out_dir = Path(path)
    probe = out_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "it" if probe == out_dir else f"{probe}"
        raise SpectraError(f"cannot write into {out_dir}: {what} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SpectraError(f"cannot write into {out_dir}: {probe} is not writable")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``; rename it over ``path`` only on success.

    A failure inside the ``with`` block removes the temporary file, so no half-written
    output is ever left under the target name.

    Args:
        path: the target file.
        mode: ``"w"`` (text, UTF-8) or ``"wb"``.

    Yields:
        The open temporary file (mode 0666 less the umask, as ``open`` would create it).

    Raises:
        SpectraError: the directory does not exist, ``path`` is a directory, or the temporary
            file cannot be created.
    """
    target = Path(path)
    fd, tmp = _temp_beside(target)
    encoding = None if "b" in mode else "utf-8"
    try:
        # mkstemp creates the file 0600; give the output the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
