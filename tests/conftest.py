"""Fixtures shared by several test modules."""

import pytest
from report_fixtures import build_analyze_report, build_hessian_report

from spectracli.threads import torch_threads


@pytest.fixture(scope="module")
def one_thread():
    """Tiny products: one thread avoids OpenMP spin-waits on a busy 2-core machine."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def analyze_report() -> dict:
    return build_analyze_report()


@pytest.fixture(scope="module")
def hessian_report() -> dict:
    return build_hessian_report()
