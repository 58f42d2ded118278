"""Stored dtype names, defined once: how a checkpoint's tensors are typed before they are loaded.

A reader (``io/``) reports each tensor's dtype as torch spells it without the ``torch.`` prefix
(``"bfloat16"``); the layer model (``layers/``) skips what is not a float matrix by these names,
and ``analyze`` sizes a tensor's memory from them. The module imports nothing, so every room may
use it (docs/design.md).

Example::

    >>> from spectracli.dtypes import FLOAT_DTYPES, FLOAT_ITEMSIZE
    >>> FLOAT_DTYPES
    ('float64', 'float32', 'float16', 'bfloat16')
    >>> FLOAT_ITEMSIZE["bfloat16"]
    2
"""

from __future__ import annotations

# Bytes per element of each floating dtype a checkpoint may store (fp8 and quantised tensors
# are dequantised by their reader, which then reports one of these).
FLOAT_ITEMSIZE: dict[str, int] = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
FLOAT_DTYPES: tuple[str, ...] = tuple(FLOAT_ITEMSIZE)
