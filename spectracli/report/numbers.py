"""How numbers are written in tables: short, never hiding inf or a missing value."""

from __future__ import annotations

import math
from typing import Any


def fmt_num(value: Any, digits: int = 4) -> str:
    """``-`` for missing, ``inf``/``nan`` spelled out, ints as ints, floats to ``digits`` digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return str(value)
