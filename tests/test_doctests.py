"""Docstring examples run with the suite: `python -m pytest` collects `spectracli` with
``--doctest-modules`` (pyproject's ``testpaths`` and ``addopts``). Here: the configuration says so,
and the modules whose docstrings promise an example still carry one (running them is pytest's job).
"""

from __future__ import annotations

import doctest
import importlib
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

# Modules with runnable examples in their docstrings (each must keep at least one).
WITH_EXAMPLES = [
    "spectracli.api", "spectracli.errors", "spectracli.options",
    "spectracli.report.text", "spectracli.report.layout", "spectracli.report.numbers",
    "spectracli.report.notebook", "spectracli.spectral.farms", "spectracli.spectral.esd",
    "spectracli.spectral.metrics", "spectracli.spectral.mp", "spectracli.spectral.powerlaw",
    "spectracli.spectral.bootstrap",
    "spectracli.hessian.lanczos", "spectracli.hessian.hutchpp", "spectracli.hessian.slq",
    "spectracli.hessian.linop", "spectracli.hessian.losses", "spectracli.hessian.operators",
    "spectracli.hessian.api", "spectracli.hessian.inputs", "spectracli.hessian.state",
    "spectracli.hessian.memory", "spectracli.io.tensor_data", "spectracli.io.memory",
    "spectracli.io", "spectracli.layers.planner",
    "spectracli.analyze_config", "spectracli.threads", "spectracli.dtypes", "spectracli.records",
    "spectracli.schema", "spectracli.summary", "spectracli.report_file",
    "spectracli.spectral.results",
]


def test_the_suite_runs_the_package_doctests():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in cfg["addopts"].split()
    assert "spectracli" in cfg["testpaths"]


@pytest.mark.parametrize("module", WITH_EXAMPLES)
def test_module_keeps_its_examples(module):
    tests = doctest.DocTestFinder().find(importlib.import_module(module))
    assert sum(len(t.examples) for t in tests) > 0, module
