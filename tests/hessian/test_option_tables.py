"""Every HvpMode and Operator member has its own entry (issue 18): no two-way fallback."""

import pytest
import torch
from torch import nn

from spectracli.errors import SpectraError
from spectracli.hessian import operators
from spectracli.options import HvpMode, Operator


def test_every_hvp_mode_builds_its_own_strategy():
    assert set(operators.HVP_STRATEGIES) == set(HvpMode)
    for mode in HvpMode:
        strategy = operators.HVP_STRATEGIES[mode](1e6)
        assert strategy.name == mode.value


def test_every_operator_member_has_its_own_class():
    assert set(operators.OPERATORS) == set(Operator)
    for member, cls in operators.OPERATORS.items():
        assert cls.kind == member.value
    assert operators.OPERATORS["ggn"] is operators.GGNOperator  # plain strings look up too


def test_hvp_mode_without_strategy_raises(monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    data = [(torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))]
    op = operators.HessianOperator(model, data, "mse", hvp_mode="forward-over-reverse")
    assert isinstance(op.hvp, operators.ForwardOverReverse)
    monkeypatch.delitem(operators.HVP_STRATEGIES, HvpMode.FORWARD_OVER_REVERSE)
    with pytest.raises(SpectraError, match="no HVP strategy"):
        operators.HessianOperator(model, data, "mse", hvp_mode="forward-over-reverse")
