"""Part names are selectable by glob: ``*[q]`` means every q part in analyze and in gate rules."""

from __future__ import annotations

import pytest

from spectracli.gate.evaluate import _glob
from spectracli.layers import glob_match, name_selected

CASES = [
    ("enc.attn.in_proj_weight[q]", "*[q]", True),
    ("enc.attn.in_proj_weight[q]", "enc.attn.in_proj_weight[q]", True),
    ("enc.attn.in_proj_weight[k]", "*[q]", False),
    ("enc.lstm.weight_hh_l0[f]", "*weight_hh_l0[[]f]", True),
    ("layers.2.w", "layers.[0-3].*", True),  # a character class keeps its meaning
    ("layers.7.w", "layers.[0-3].*", False),
    ("moe.experts.down_proj[7]", "*experts.down_proj[*]", True),
    ("fc1.weight", "*[q]", False),
]


@pytest.mark.parametrize(("name", "pattern", "expected"), CASES)
def test_analyze_and_gate_match_part_names_alike(name, pattern, expected):
    assert glob_match(name, pattern) is expected
    assert _glob(name, pattern) is expected
    assert name_selected(name, [pattern], []) is expected
