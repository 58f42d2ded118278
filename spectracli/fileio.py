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
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise SpectraError(f"cannot write {target}: directory {directory} does not exist")
    if target.is_dir():  # checked first: os.replace would fail only after the work is written
        raise SpectraError(f"cannot write {target}: it is a directory, expected a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SpectraError(f"cannot write {target}: {exc.strerror}") from None
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
