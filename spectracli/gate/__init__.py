"""The CI gate: threshold rules + a report (+ a baseline) -> findings -> exit code and CI formats.

Library use::

    from spectracli.gate import evaluate, load_config
    result = evaluate(load_config("pyproject.toml"), report_dict, baseline_dict)
    result.exit_code()  # 0 pass, 1 an error-severity finding
"""

from spectracli.gate.evaluate import Check, Finding, GateResult, evaluate
from spectracli.gate.rules import ConfigError, GateConfig, Rule, load_config

__all__ = [
    "Check", "ConfigError", "Finding", "GateConfig", "GateResult", "Rule", "evaluate",
    "load_config",
]
