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


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    r"""``text`` on one line: newlines, tabs and other control characters written as escapes.

    A tensor name may hold any character; in a table row a newline would start a new row.

    Returns:
        ``text`` with ``\n``, ``\r``, ``\t`` and ``\xNN`` for control characters (unchanged
        when it has none).
    """
    if text.isprintable():
        return text
    return "".join(_ESCAPES.get(c, f"\\x{ord(c):02x}") if not c.isprintable() and c != " "
                   else c for c in text)


def _window(text: str, width: int, at: int) -> str:
    """``text`` in ``width`` characters around index ``at``.

    Returns:
        Its start, the characters around ``at`` and its end, joined by ellipses
        (``encod…rs.10…weight``).
    """
    room = width - 2
    head = tail = room // 3
    mid = room - head - tail
    start = min(max(head, at - mid // 2), len(text) - tail - mid)
    if start <= head:  # the window touches the start: one ellipsis before the tail
        return text[:head + mid] + ELLIPSIS + text[len(text) - tail - 1:][-(tail + 1):]
    if start + mid >= len(text) - tail:
        return text[:head + 1] + ELLIPSIS + text[-(tail + mid):]
    return text[:head] + ELLIPSIS + text[start:start + mid] + ELLIPSIS + text[-tail:]


def shorten_unique(texts: list[str], width: int) -> list[str]:
    """Each of ``texts`` cut to at most ``width`` characters, different texts kept different.

    :func:`shorten_middle` first; names it would make equal (``encoder.layers.10.attn.q`` and
    ``...11.attn.q`` both ``encode…attn.q``) show, between two ellipses, the part where each
    differs from the others (``enc…s.10…tn.q``). Two texts still equal then (a width under 8)
    get a ``~2``, ``~3`` ... suffix within the width.

    Returns:
        The shortened texts, in order; equal inputs stay equal.
    """
    out = [shorten_middle(t, width) for t in texts]
    groups: dict[str, set[str]] = {}
    for text, short in zip(texts, out, strict=True):
        groups.setdefault(short, set()).add(text)
    for short, members in groups.items():
        if len(members) < 2:
            continue
        fixed: dict[str, str] = {}
        for text in sorted(members):
            at = max(len(os.path.commonprefix([text, other])) for other in members
                     if other != text)
            fixed[text] = _window(text, width, at) if width >= 8 else short
        seen: dict[str, int] = {}
        for text in sorted(members):  # still equal: number them
            n = seen[fixed[text]] = seen.get(fixed[text], 0) + 1
            if n > 1:
                mark = f"~{n}"
                fixed[text] = shorten_middle(text, max(1, width - len(mark))) + mark
        out = [fixed.get(t, o) if o == short else o for t, o in zip(texts, out, strict=True)]
    return out


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

