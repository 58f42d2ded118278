"""Fixtures shared by several test modules."""

import pytest
import torch
from report_fixtures import build_analyze_report, build_hessian_report


@pytest.fixture(scope="module")
def one_thread():
    """Tiny products: one thread avoids OpenMP spin-waits on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def analyze_report() -> dict:
    return build_analyze_report()


@pytest.fixture(scope="module")
def hessian_report() -> dict:
    return build_hessian_report()
