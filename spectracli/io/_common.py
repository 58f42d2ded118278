"""Small helpers shared by the readers: one-line messages from foreign exceptions."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException, limit: int = 240) -> str:
    """The first non-empty line of an exception's message, ANSI codes removed, capped in length.

    Foreign libraries (torch, zipfile, the safetensors Rust core) write multi-line messages; our
    errors are one line, so only the head of theirs is kept.
    """
    text = _ANSI.sub("", str(exc))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        first = type(exc).__name__
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    return first
