"""Recurrent weights split per gate (``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and their cells).

PyTorch stacks the gates along the rows: ``weight_ih_l{k}`` (G * H, in) and ``weight_hh_l{k}``
(G * H, H) (``_reverse`` for the backward direction; ``weight_ih``/``weight_hh`` in the cells).
The gate count G comes from the hh matrix's row/column ratio (with ``proj_size`` its columns are
the projection size, and H is read from ``weight_hr_l{k}`` (P, H)):

- ``recurrent.lstm``: G = 4, parts i, f, g, o (input, forget, cell, output gates).
- ``recurrent.gru``: G = 3, parts r, z, n (reset, update, new).
- ``recurrent.rnn``: G = 1, one matrix as stored.

A weight without its hh sibling (so G is unknown) is analysed fused, with a warning.
"""

from __future__ import annotations

import re

from spectracli.layers.context import Context, join, split_name
from spectracli.layers.fused import blocks, part_plans, whole_plan
from spectracli.layers.plan import Cut, Outcome, TensorInfo

_LEAF = re.compile(r"^weight_(?P<which>ih|hh)(?P<layer>_l\d+)?(?P<rev>_reverse)?$")
GATES = {4: ("lstm", ("i", "f", "g", "o")), 3: ("gru", ("r", "z", "n")), 1: ("rnn", ())}


def gate_count(t: TensorInfo, ctx: Context) -> int | None:
    """G for a ``weight_ih``/``weight_hh`` tensor, from its hh sibling; None when unknown."""
    prefix, leaf = split_name(t.name)
    m = _LEAF.match(leaf)
    if m is None:
        return None
    suffix = (m["layer"] or "") + (m["rev"] or "")
    hh = ctx.tensors.get(join(prefix, f"weight_hh{suffix}"))
    if hh is None or len(hh.shape) != 2:
        return None
    hr = ctx.tensors.get(join(prefix, f"weight_hr{suffix}"))
    hidden = hr.shape[1] if hr is not None and len(hr.shape) == 2 else hh.shape[1]
    if hidden <= 0 or hh.shape[0] % hidden:
        return None
    count = hh.shape[0] // hidden
    return count if count in GATES and t.shape[0] == count * hidden else None


def rule_recurrent(t: TensorInfo, ctx: Context) -> Outcome | None:
    """``recurrent.lstm`` / ``recurrent.gru`` / ``recurrent.rnn``."""
    if len(t.shape) != 2 or not _LEAF.match(split_name(t.name)[1]):
        return None
    count = gate_count(t, ctx)
    if count is None:
        return Outcome(plans=[whole_plan(t, "recurrent.kept", notes=(
            "analysed fused: no weight_hh sibling gives the gate count (LSTM 4, GRU 3)",))])
    cell, gates = GATES[count]
    rule = f"recurrent.{cell}"
    if count == 1:
        return Outcome(plans=[whole_plan(t, rule)])
    if not ctx.options.split:
        return Outcome(plans=[whole_plan(t, rule + ".kept")])
    hidden = t.shape[0] // count
    parts = [(g, Cut(t.name, ranges=(b,))) for g, b in zip(gates, blocks([hidden] * count),
                                                          strict=True)]
    return Outcome(plans=part_plans(t, rule, parts))
