"""Tables that fit a width: columns by priority, numbers never cut, names shortened in the middle.

The columns are given in priority order. The first (the key, a layer name) may be shortened in
the middle down to ``min_key`` characters; every other cell is printed whole. Columns that do
not fit go to a second table (the key repeated) when they are ``wrap`` columns, and are left
out otherwise (the caller says which, e.g. "stable_rank, ks_D hidden: use -f csv"). Without a
width (piped output) everything goes in one table.

Example::

    >>> from spectracli.report.layout import Column, layout
    >>> cols = [Column("layer"), Column("sigma_max", right=True), Column("alpha", right=True)]
    >>> rows = [["encoder.layers.0.attn.q_proj", "1.234", "3.5"]]
    >>> for line in layout(cols, rows, width=24).lines():
    ...     print(line.text)
    layer          sigma_max
    -------------  ---------
    encode…q_proj      1.234
    <BLANKLINE>
    layer              alpha
    -----------------  -----
    encoder.…n.q_proj    3.5
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from spectracli.report.text import printable, shorten_middle, shorten_unique

GAP = 2


@dataclass
class Column:
    """One column: its header, alignment, and what happens when it does not fit."""

    header: str
    right: bool = False  # numbers are right-aligned
    wrap: bool = True  # False: dropped (and named in ``hidden``) instead of a second table
    text: bool = False  # free text: wrapped onto more lines within the room left (>= 16)


@dataclass
class Line:
    """A rendered line; ``row`` is the index of the data row it shows (None: header/rule)."""

    text: str
    row: int | None = None
    header: bool = False


@dataclass
class Layout:
    """The tables a set of columns was split into, and the columns left out."""

    blocks: list[list[Line]] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)

    def lines(self) -> list[Line]:
        """Every table's lines, tables separated by a blank line."""
        out: list[Line] = []
        for i, block in enumerate(self.blocks):
            if i:
                out.append(Line(""))
            out += block
        return out

    def text(self) -> str:
        """:meth:`lines` as text."""
        return "\n".join(line.text for line in self.lines())


TEXT_MIN = 16


def _widths(columns: list[Column], rows: list[list[str]]) -> list[int]:
    return [max([len(c.header)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]


def _fit_widths(columns: list[Column], natural: list[int]) -> list[int]:
    """Widths used to decide what fits: free text needs only ``TEXT_MIN`` (it wraps)."""
    return [min(w, max(TEXT_MIN, len(c.header))) if c.text else w
            for c, w in zip(columns, natural, strict=True)]


def _fill(candidates: list[int], natural: list[int], room: int,
          alone: bool = True) -> tuple[list[int], list[int]]:
    """Greedy in priority order: the columns that fit in ``room``, and the rest.

    With ``alone``, a first column wider than the room is taken anyway, to stand alone.

    Returns:
        ``(taken, rest)``: column indices, each in the order given.
    """
    taken, rest = [], []
    for i in candidates:
        if GAP + natural[i] <= room:
            taken.append(i)
            room -= GAP + natural[i]
        else:
            rest.append(i)
    if alone and not taken and rest:  # one column wider than the room goes alone
        taken.append(rest.pop(0))
    return taken, rest


def _groups(natural: list[int], columns: list[Column], width: int | None, min_key: int,
            key: int) -> tuple[list[list[int]], list[int]]:
    """Split the columns into tables that fit ``width``.

    Wrap columns are placed first with the key at its minimum; the others only in the room left
    once the key has its full width (a name beats an optional column).

    Returns:
        ``(groups, dropped)``: column indices per table (each holding the key column, in the
        given order), and the columns left out.
    """
    n = len(columns)
    if width is None or n <= 1:
        return [list(range(n))], []
    key_min = min(natural[key], max(min_key, len(columns[key].header)))
    room = width - key_min
    others = [i for i in range(n) if i != key]
    taken, rest = _fill([i for i in others if columns[i].wrap], natural, room)
    used = sum(GAP + natural[i] for i in taken)
    optional, dropped = _fill([i for i in others if not columns[i].wrap], natural,
                              width - natural[key] - used, alone=False)
    groups = [sorted([key, *taken, *optional])]
    while rest:
        taken, rest = _fill(rest, natural, room)
        groups.append(sorted([key, *taken]))
    return groups, dropped


def layout(columns: list[Column], rows: list[list[str]], width: int | None = None,
           min_key: int = 12, key: int = 0) -> Layout:
    """Lay out ``rows`` (cells as text, in ``columns`` order) within ``width`` characters.

    Every table has a header line and a rule line; the key column (index ``key``, repeated in
    every table) is shortened in the middle (never below ``min_key`` characters unless one
    column alone needs the room) and the other cells are printed whole. With ``width=None`` it
    is one table with every column.

    Args:
        columns: the columns, in priority order after the key.
        rows: the cells as text, one list per row in ``columns`` order.
        width: characters available (None: unlimited).
        min_key: the narrowest the key column may be cut to.
        key: the index of the key column.

    Returns:
        The tables, and the headers of the columns that did not fit (``hidden``).
    """
    rows = [[printable(cell) for cell in row] for row in rows]  # one line per row, always
    natural = _widths(columns, rows)
    groups, dropped = _groups(_fit_widths(columns, natural), columns, width, min_key, key)
    out = Layout(hidden=[columns[i].header for i in dropped])
    for group in groups:
        widths = [natural[i] for i in group]
        k = group.index(key)
        if width is not None:
            fixed = [w for w, i in zip(widths, group, strict=True)
                     if i != key and not columns[i].text]
            texts = [j for j, i in enumerate(group) if i != key and columns[i].text]
            key_room = width - sum(fixed) - GAP * (len(group) - 1)
            key_room -= sum(min(widths[j], TEXT_MIN) for j in texts)
            widths[k] = max(1, min(natural[key], key_room))
            spare = width - widths[k] - sum(fixed) - GAP * (len(group) - 1)
            for j in texts:  # the text columns share what is left
                widths[j] = max(1, min(natural[group[j]], spare // len(texts)))

        def fmt(cells: list[str], widths: list[int] = widths,
                group: list[int] = group) -> list[str]:
            wrapped = [textwrap.wrap(cell, w) or [""] if columns[i].text and len(cell) > w
                       else [shorten_middle(cell, w) if i == key else cell]
                       for w, i, cell in zip(widths, group, cells, strict=True)]
            lines = []
            for k in range(max(len(c) for c in wrapped)):
                parts = []
                for w, i, cell in zip(widths, group, wrapped, strict=True):
                    text = cell[k] if k < len(cell) else ""
                    parts.append(text.rjust(w) if columns[i].right else text.ljust(w))
                lines.append((" " * GAP).join(parts).rstrip())
            return lines

        block = [Line(fmt([columns[i].header for i in group])[0], header=True),
                 Line((" " * GAP).join("-" * w for w in widths))]
        # names that shortening would make equal stay distinct (report/text.py)
        keys = shorten_unique([row[key] for row in rows], widths[k])
        block += [Line(text, row=r) for r, row in enumerate(rows)
                  for text in fmt([keys[r] if i == key else row[i] for i in group])]
        out.blocks.append(block)
    return out
