"""The docstring contract and the complexity budget hold in the test run too (docs/design.md,
"Function size and the docstring contract"): CI runs `python -m pytest`, so the lint runs here,
and the budget in pyproject cannot be raised without this file saying so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _lint_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]


def test_the_budget_and_the_docstring_rules_are_configured():
    lint = _lint_config()
    assert lint["mccabe"]["max-complexity"] <= 10
    selected = set(lint["select"])
    # Google-style docstrings, Returns/Yields/Raises that match the body, function size.
    assert {"D", "C901", "DOC201", "DOC402", "DOC501", "PLR0911", "PLR0912", "PLR0915"} <= selected
    assert lint["pydocstyle"]["convention"] == "google"
    # Only tests, benchmarks and sample scripts are exempt from the docstring rules as a whole.
    whole_dirs = [k for k, v in lint["per-file-ignores"].items() if "D" in v and "spectracli" in k]
    assert whole_dirs == []


def test_the_package_passes_ruff():
    pytest.importorskip("ruff")  # the dev extra installs it
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "spectracli"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-1000:]
