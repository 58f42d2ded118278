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

from spectracli.schema import nonfinite_text

MISSING = "-"


def fmt_num(value: Any, digits: int = 4, *, integral: bool = False) -> str:
    """The one number formatter of every report and message.

    ``integral=True`` writes an integer-valued float below 1e6 as an integer (``100000``, not
    ``1e+05``): for thresholds that people typed.

    Returns:
        ``-`` for missing, ``inf``/``nan`` spelled out, ints as ints, floats to ``digits``
        significant digits (``%g``), booleans as yes/no, strings unchanged.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _fmt_float(value, digits, integral)
    return str(value)


def _fmt_float(value: float, digits: int, integral: bool) -> str:
    """A float for :func:`fmt_num`: ``nan``, ``inf``/``-inf``, an integer or ``%g``."""
    if not math.isfinite(value):
        return nonfinite_text(value)
    if integral and value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.{digits}g}"


def ci_half_width(block: dict[str, Any] | None) -> float | None:
    """Half the width of a fit block's ``alpha_ci`` ((high - low) / 2), None without one."""
    ci = (block or {}).get("alpha_ci")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in ci:
        return None
    return (float(ci[1]) - float(ci[0])) / 2.0


# alpha_ci shown as +- half-width while its two ends are within this ratio of alpha's distance
ASYMMETRIC = 1.25


def fmt_alpha(block: dict[str, Any] | None) -> str:
    """A fit's alpha as the table shows it.

    Returns:
        ``3.49 ± 0.41`` (half-width of alpha_ci) when alpha is near the interval's middle (the
        two distances within ASYMMETRIC of each other), else ``4.91 +9.1/-3.3`` (distances to
        the upper and lower end: FARMS intervals, widened on ln(alpha - 1), are asymmetric); in
        parentheses when the fit is not ok (its status says why), ``-`` when there is none.
    """
    block = block or {}
    alpha = block.get("alpha")
    if alpha is None:
        return "-"
    text = fmt_num(alpha)
    half = ci_half_width(block)
    if half is not None and math.isfinite(half):
        low, high = block["alpha_ci"]
        up, down = float(high) - alpha, alpha - float(low)
        if max(up, down) <= ASYMMETRIC * min(up, down):
            text += f" \u00b1 {fmt_num(half, 2)}"
        else:
            text += f" +{fmt_num(up, 2)}/-{fmt_num(down, 2)}"
    status = block.get("fit_status")
    return text if status in (None, "ok") else f"({text})"
