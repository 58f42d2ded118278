"""Small pieces of wording every renderer shares: plurals, articles, shortened names, paths.

Example::

    >>> from spectracli.report.text import plural, shorten_middle
    >>> plural(1, "layer"), plural(3, "layer"), plural(2, "match", "matches")
    ('1 layer', '3 layers', '2 matches')
    >>> shorten_middle("model.layers.11.self_attn.q_proj.weight", 24)
    'model.layer…_proj.weight'
"""

from __future__ import annotations

import os

ELLIPSIS = "…"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 layer``, ``0 layers``, ``2 matches`` (``many`` when adding an s is wrong)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def article(word: str) -> str:
    """``an analyze``, ``a hessian``: the indefinite article by the first letter's sound."""
    return f"{'an' if word[:1].lower() in 'aeio' else 'a'} {word}"


def shorten_middle(text: str, width: int) -> str:
    """``text`` cut in the middle to at most ``width`` characters, keeping both ends.

    The start of a layer name says where it is, the end what it is.

    Returns:
        ``text`` itself when it fits, else its ends joined by an ellipsis (empty for
        ``width < 1``).
    """
    if width < 1:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return ELLIPSIS
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def display_path(path: str | os.PathLike[str] | None) -> str | None:
    """A path as the user typed it, normalised, never made absolute.

    Returns:
        ``cfg/../baseline.json`` -> ``baseline.json``, ``./a`` -> ``a``; a URL unchanged;
        None for None.
    """
    if path is None:
        return None
    text = os.fspath(path)
    if not text:
        return text
    return os.path.normpath(text) if not _is_url(text) else text


def _is_url(text: str) -> bool:
    return "://" in text

