"""How numbers are written in tables and messages: one formatter for every renderer.

Short, never hiding inf or a missing value, and never cut: a table that has no room for a
number drops or wraps its column instead (report/layout.py).

Example::

    >>> from spectracli.report.numbers import fmt_num
    >>> fmt_num(3.14159265), fmt_num(3.14159265, 6), fmt_num(None), fmt_num(float("inf"))
    ('3.142', '3.14159', '-', 'inf')
    >>> fmt_num(100000.0), fmt_num(100000.0, integral=True), fmt_num(7)
    ('1e+05', '100000', '7')
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "-"


def fmt_num(value: Any, digits: int = 4, *, integral: bool = False) -> str:
    """``-`` for missing, ``inf``/``nan`` spelled out, ints as ints, floats to ``digits``
    significant digits (``%g``), booleans as yes/no, strings unchanged.

    ``integral=True`` writes an integer-valued float below 1e6 as an integer (``100000``, not
    ``1e+05``): for thresholds that people typed.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if integral and value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)
