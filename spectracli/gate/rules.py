"""Gate configuration: threshold rules and analyze settings, read from TOML and validated.

Where the configuration lives (first found, walking up from the working directory):

- ``spectracli.toml``: tables ``[gate]``, ``[[gate.rules]]`` and ``[analyze]``;
- ``pyproject.toml`` with a ``[tool.spectracli]`` table: ``[tool.spectracli.gate]``,
  ``[[tool.spectracli.gate.rules]]`` and ``[tool.spectracli.analyze]``.

``--config FILE`` names a file explicitly (either layout). Every key is documented in
docs/ci.md. A configuration error is a :class:`ConfigError` whose one-line message names the
file, the key and what was expected, so the CLI exits with code 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectracli.analyze_config import AnalyzeConfig, Setting, file_settings
from spectracli.errors import SpectraError
from spectracli.results import LAYER_METRICS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# The Hessian report is gated as one pseudo-layer named "hessian" with these metrics.
HESSIAN_LAYER = "hessian"
HESSIAN_METRICS = (
    "lambda_max",
    "lambda_min",
    "condition_number",
    "trace",
    "trace_stderr",
    "grad_norm",
    "loss",
    "edge_of_stability",
    "n_outliers",
    "bulk_edge",
    "max_residual",
)

SEVERITIES = ("error", "warning")
POLICIES = ("error", "warning", "ignore")
RULE_KEYS = (
    "id",
    "match",
    "exclude",
    "metric",
    "min",
    "max",
    "max_rel_increase",
    "max_abs_change",
    "max_steps_below",
    "confidence",
    "severity",
    "report",
    "description",
)
GATE_KEYS = (
    "rules", "baseline", "missing_layers", "new_layers", "missing_value", "fit_not_ok", "strict",
)


# Analyze settings a config may carry: the AnalyzeConfig fields a file may set, each with its
# TOML types, what it must be and its check, all read from the dataclass
# (spectracli/analyze_config.py; the choices come from spectracli.options). ``trust_pickle`` is
# not among them: unpickling is a command-line decision, never a setting that a file in a
# repository can switch on (``store_esd`` is an output choice, not a setting).
ANALYZE_CHECKS: dict[str, Setting] = file_settings()
# Kept for callers that list the keys with what each expects.
ANALYZE_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    key: (spec.types, spec.expected) for key, spec in ANALYZE_CHECKS.items()
}
NOT_IN_CONFIG_FILES = tuple(
    f.name for f in dataclasses.fields(AnalyzeConfig) if f.name not in ANALYZE_CHECKS)
RESERVED_PREFIX = "spectracli/"
# Metrics that carry a confidence interval, and the report field that holds it ([low, high]).
INTERVALS = {"alpha": "alpha_ci", "farms.alpha": "farms.alpha_ci"}


class ConfigError(SpectraError):
    """A gate configuration that cannot be used (names the file, the key, what was expected)."""


@dataclass
class Rule:
    """One threshold rule: for every layer whose name matches, check ``metric``.

    ``min``/``max`` bound the value; ``max_rel_increase`` bounds (value - base) / |base| and
    ``max_abs_change`` bounds |value - base| against the baseline's value of the same layer.
    """

    id: str
    metric: str
    match: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    max_rel_increase: float | None = None
    max_abs_change: float | None = None
    # Track reports only: ``min`` may be violated for at most this many consecutive steps.
    max_steps_below: int | None = None
    # min/max fail only when the metric's whole confidence interval is past the limit
    # (alpha and farms.alpha, through alpha_ci; see INTERVALS and docs/ci.md).
    confidence: bool = False
    severity: str = "error"
    report: str = "analyze"  # the report kind it applies to: "analyze" | "hessian" | "any"
    description: str = ""
    origin: str = ""  # where the rule was defined, for messages

    @property
    def needs_baseline(self) -> bool:
        """Whether the rule compares with a baseline (a drift rule)."""
        return self.max_rel_increase is not None or self.max_abs_change is not None

    def describe(self) -> str:
        """A one-line text of the rule's limits, e.g. ``condition_number <= 1e+04``."""
        parts = []
        if self.min is not None:
            parts.append(f"{self.metric} >= {self.min:g}")
        if self.max is not None:
            parts.append(f"{self.metric} <= {self.max:g}")
        if self.max_rel_increase is not None:
            parts.append(f"{self.metric} rises at most {self.max_rel_increase:g}x of baseline")
        if self.max_abs_change is not None:
            parts.append(f"|{self.metric} - baseline| <= {self.max_abs_change:g}")
        if self.confidence and parts:
            parts = [p + " (whole interval)" if p.startswith(self.metric + " ") else p
                     for p in parts]
        if self.max_steps_below is not None and parts and self.min is not None:
            parts[0] += f" (below it for at most {self.max_steps_below} consecutive steps)"
        where = ",".join(self.match)
        text = " and ".join(parts) + f" on {where}"
        if self.exclude:
            text += f" except {','.join(self.exclude)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON (``rules`` of the gate report)."""
        return {
            "id": self.id,
            "metric": self.metric,
            "match": list(self.match),
            "exclude": list(self.exclude),
            "min": self.min,
            "max": self.max,
            "max_rel_increase": self.max_rel_increase,
            "max_abs_change": self.max_abs_change,
            "max_steps_below": self.max_steps_below,
            "confidence": self.confidence,
            "severity": self.severity,
            "report": self.report,
            "description": self.description,
        }


@dataclass
class GateConfig:
    """Everything the gate needs besides the inputs: rules, policies and analyze settings."""

    rules: list[Rule] = field(default_factory=list)
    baseline: Path | None = None
    missing_layers: str = "error"  # layers in the baseline and missing now
    new_layers: str = "warning"  # layers now that the baseline lacks
    missing_value: str = "warning"  # a matched layer whose metric is null/nan
    fit_not_ok: str = "warning"  # a fit metric whose fit_status is not ok: never judged by value
    strict: bool = False
    analyze: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


def valid_metrics() -> tuple[str, ...]:
    """Every metric a rule may name: per-layer metrics, then the Hessian pseudo-layer's."""
    return tuple(dict.fromkeys(LAYER_METRICS + HESSIAN_METRICS))


def _unknown(what: str, name: str, valid: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; valid: {', '.join(valid)}"


def _number(value: Any) -> float | None:
    """A TOML number (int or float, inf allowed), or a numeric string such as "1e4"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _globs(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return None


def _check_id(rule_id: Any, where: str) -> None:
    if not isinstance(rule_id, str) or not rule_id.strip() or rule_id != rule_id.strip():
        raise ConfigError(f"{where} key 'id': expected a non-empty string without spaces "
                          f"at the ends, got {rule_id!r}")
    if rule_id.startswith(RESERVED_PREFIX):
        raise ConfigError(f"{where} key 'id': the prefix {RESERVED_PREFIX!r} is reserved "
                          "for the gate's built-in checks")


def _check_metric(metric: Any, where: str) -> str:
    if metric is None:
        raise ConfigError(f"{where}: missing key 'metric' (one of {', '.join(valid_metrics())})")
    if not isinstance(metric, str) or metric not in valid_metrics():
        unknown = _unknown("metric", str(metric), valid_metrics())
        raise ConfigError(f"{where} key 'metric': {unknown}")
    return metric


def _rule_limits(raw: dict[str, Any], where: str) -> dict[str, float | None]:
    limits: dict[str, float | None] = {}
    for key in ("min", "max", "max_rel_increase", "max_abs_change"):
        if key not in raw:
            limits[key] = None
            continue
        value = _number(raw[key])
        if value is None or math.isnan(value):
            raise ConfigError(f"{where} key {key!r}: expected a number, got {raw[key]!r}")
        if key.startswith("max_") and key != "max" and value < 0:
            raise ConfigError(f"{where} key {key!r}: expected a number >= 0, got {raw[key]!r}")
        limits[key] = value
    if all(v is None for v in limits.values()):
        raise ConfigError(f"{where}: a rule needs at least one of min, max, max_rel_increase, "
                          "max_abs_change")
    return limits


def _check_steps_below(steps_below: Any, lo: float | None, where: str) -> None:
    if steps_below is None:
        return
    if isinstance(steps_below, bool) or not isinstance(steps_below, int) or steps_below < 0:
        raise ConfigError(f"{where} key 'max_steps_below': expected an integer >= 0, "
                          f"got {steps_below!r}")
    if lo is None:
        raise ConfigError(f"{where} key 'max_steps_below': needs 'min' (the threshold "
                          "the metric may stay below for that many steps)")


def _rule_globs(raw: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    match = _globs(raw.get("match", "*"))
    if match is None:
        raise ConfigError(f"{where} key 'match': expected a glob string or a list of them, "
                          f"got {raw.get('match')!r}")
    exclude: tuple[str, ...] = ()
    if "exclude" in raw:
        got = _globs(raw["exclude"])
        if got is None:
            raise ConfigError(f"{where} key 'exclude': expected a glob string or a list of them, "
                              f"got {raw['exclude']!r}")
        exclude = got
    return match, exclude


def _rule_report(report: Any, metric: str, match: tuple[str, ...], where: str) -> str:
    if report is None:
        # A metric only the Hessian has, or a rule aimed at the "hessian" pseudo-layer.
        hessian = metric not in LAYER_METRICS or match == (HESSIAN_LAYER,)
        report = "hessian" if hessian else "analyze"
    elif report not in ("analyze", "hessian"):
        raise ConfigError(f"{where} key 'report': expected \"analyze\" or \"hessian\", "
                          f"got {report!r}")
    allowed = LAYER_METRICS if report == "analyze" else HESSIAN_METRICS
    if metric not in allowed:
        raise ConfigError(f"{where} key 'metric': {metric!r} is not a metric of {report} "
                          f"reports; valid: {', '.join(allowed)}")
    return report


def _check_confidence(confidence: Any, metric: str, has_bounds: bool, where: str) -> None:
    if not isinstance(confidence, bool):
        raise ConfigError(f"{where} key 'confidence': expected true or false, got {confidence!r}")
    if confidence and metric not in INTERVALS:
        raise ConfigError(f"{where} key 'confidence': only {', '.join(INTERVALS)} carry a "
                          f"confidence interval, not {metric!r}")
    if confidence and not has_bounds:
        raise ConfigError(f"{where} key 'confidence': applies to 'min' and 'max', and the rule "
                          "has neither")


def build_rule(raw: dict[str, Any], where: str) -> Rule:
    """Validate one rule table; ``where`` names it in messages, e.g. ``f.toml: gate.rules[2]``.

    Returns:
        The rule; without an ``id`` it is the metric, with its ``match`` globs in brackets
        when they are not ``*``.

    Raises:
        ConfigError: not a table, an unknown key, an unknown metric, or limits of the wrong type
            or that contradict each other.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table with 'metric' and limits, got {raw!r}")
    for key in raw:
        if key not in RULE_KEYS:
            raise ConfigError(f"{where}: {_unknown('key', key, RULE_KEYS)}")
    rule_id = raw.get("id")
    if rule_id is not None:
        where = f"{where} (id {rule_id!r})"
        _check_id(rule_id, where)
    metric = _check_metric(raw.get("metric"), where)
    limits = _rule_limits(raw, where)
    lo, hi = limits["min"], limits["max"]
    steps_below = raw.get("max_steps_below")
    _check_steps_below(steps_below, lo, where)
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"{where} keys 'min'/'max': min {lo:g} is above max {hi:g}, "
                          "so no value could pass")
    match, exclude = _rule_globs(raw, where)
    severity = raw.get("severity", "error")
    if severity not in SEVERITIES:
        raise ConfigError(f"{where} key 'severity': expected \"error\" or \"warning\", "
                          f"got {severity!r}")
    report = _rule_report(raw.get("report"), metric, match, where)
    confidence = raw.get("confidence", False)
    _check_confidence(confidence, metric, lo is not None or hi is not None, where)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where} key 'description': expected a string, got {description!r}")
    if rule_id is None:
        rule_id = metric if match == ("*",) else f"{metric}[{','.join(match)}]"
    return Rule(
        id=rule_id,
        metric=metric,
        match=match,
        exclude=exclude,
        min=lo,
        max=hi,
        max_rel_increase=limits["max_rel_increase"],
        max_abs_change=limits["max_abs_change"],
        max_steps_below=steps_below,
        confidence=confidence,
        severity=severity,
        report=report,
        description=description,
        origin=where,
    )


def check_unique_ids(rules: list[Rule]) -> None:
    """Refuse two rules with one id.

    Raises:
        ConfigError: a duplicate id, naming where both rules were defined.
    """
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.id in seen:
            raise ConfigError(f"{rule.origin}: duplicate rule id {rule.id!r} (also "
                              f"{seen[rule.id].origin}); give each rule its own 'id'")
        seen[rule.id] = rule


def check_consistent(rules: list[Rule]) -> None:
    """Refuse rules on the same metric and layers whose min lies above another's max.

    Raises:
        ConfigError: two such rules (no value could pass both), naming both.
    """
    for lo in rules:
        for hi in rules:
            if lo.min is None or hi.max is None or lo.min <= hi.max:
                continue
            same = (lo.metric, lo.match, lo.exclude, lo.report) == (
                hi.metric, hi.match, hi.exclude, hi.report)
            if same and lo is not hi:
                raise ConfigError(
                    f"{lo.origin}: min {lo.min:g} of rule {lo.id!r} is above max {hi.max:g} of "
                    f"rule {hi.id!r} ({hi.origin}) on the same metric and layers, so no value "
                    "could pass both"
                )


def _policy(table: dict[str, Any], key: str, default: str, where: str) -> str:
    value = table.get(key, default)
    if value not in POLICIES:
        raise ConfigError(f"{where} key {key!r}: expected \"error\", \"warning\" or \"ignore\", "
                          f"got {value!r}")
    return value


def validate_analyze(table: Any, where: str) -> dict[str, Any]:
    """Check a config file's analyze settings against the :class:`AnalyzeConfig` fields.

    Each key must be a field a file may set (:data:`ANALYZE_CHECKS`) with a value its
    :class:`~spectracli.analyze_config.Setting` accepts; then the settings together must pass
    :meth:`AnalyzeConfig.validate`, so a file is refused when it is read, not when analyze runs.

    Args:
        table: the parsed ``[analyze]`` table.
        where: the file and table, for messages.

    Returns:
        The settings as a plain dict: choices (and ``device``) in lower case, arrays as tuples.

    Raises:
        ConfigError: naming ``where``, the key, what was expected and what came.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of analyze settings, got {table!r}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in ANALYZE_CHECKS:
            raise ConfigError(f"{where}: {_unknown('key', key, list(ANALYZE_CHECKS))}")
        spec = ANALYZE_CHECKS[key]
        if not spec.accepts(value):
            raise ConfigError(f"{where} key {key!r}: expected {spec.expected}, got {value!r}")
        if isinstance(value, str) and (spec.choice is not None or key == "device"):
            value = value.lower()
        out[key] = tuple(value) if isinstance(value, list) else value
    try:
        AnalyzeConfig(**out).validate()
    except SpectraError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return out


def config_from_tables(
    gate: Any, analyze: Any, source: Path, prefix: str
) -> GateConfig:
    """Build a :class:`GateConfig` from the ``gate`` and ``analyze`` tables of one file.

    ``prefix`` is the tables' path in the file (``tool.spectracli`` or empty), for messages.

    Returns:
        The config: rules (ids unique and consistent), policies and analyze settings.

    Raises:
        ConfigError: a table of the wrong type, an unknown key, an invalid policy or rule.
    """
    dot = f"{prefix}." if prefix else ""
    config = GateConfig(source=source)
    if gate is not None:
        _read_gate_table(config, gate, source, dot)
    if analyze is not None:
        config.analyze = validate_analyze(analyze, f"{source}: [{dot}analyze]")
        base = config.analyze.get("base")
        if base and not Path(base).is_absolute():
            config.analyze["base"] = os.path.normpath(source.parent / base)
    return config


def _read_gate_table(config: GateConfig, gate: Any, source: Path, dot: str) -> None:
    """Fill ``config`` from the ``gate`` table: rules, baseline, policies, strict.

    Raises:
        ConfigError: the table is not a table, has an unknown key, or a value of the wrong type.
    """
    where_gate = f"{source}: [{dot}gate]"
    if not isinstance(gate, dict):
        raise ConfigError(f"{where_gate}: expected a table, got {gate!r}")
    for key in gate:
        if key not in GATE_KEYS:
            raise ConfigError(f"{where_gate}: {_unknown('key', key, GATE_KEYS)}")
    raw_rules = gate.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{where_gate} key 'rules': expected an array of tables "
                          f"([[{dot}gate.rules]]), got {raw_rules!r}")
    config.rules = [
        build_rule(raw, f"{source}: [[{dot}gate.rules]] #{i + 1}")
        for i, raw in enumerate(raw_rules)
    ]
    check_unique_ids(config.rules)
    check_consistent(config.rules)
    baseline = gate.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, str) or not baseline:
            raise ConfigError(f"{where_gate} key 'baseline': expected a path string, "
                              f"got {baseline!r}")
        # Relative to the config file, so the gate runs the same from any directory.
        config.baseline = Path(os.path.normpath(
            source.parent / baseline if not Path(baseline).is_absolute() else baseline))
    config.missing_layers = _policy(gate, "missing_layers", "error", where_gate)
    config.new_layers = _policy(gate, "new_layers", "warning", where_gate)
    config.missing_value = _policy(gate, "missing_value", "warning", where_gate)
    config.fit_not_ok = _policy(gate, "fit_not_ok", "warning", where_gate)
    strict = gate.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"{where_gate} key 'strict': expected true or false, got {strict!r}")
    config.strict = strict


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file.

    Returns:
        The file's tables.

    Raises:
        ConfigError: a missing, unreadable or malformed file (the decoder's line and column).
    """
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message carries "(at line L, column C)".
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: malformed TOML: not UTF-8 text") from None


def _tool_table(data: dict[str, Any], path: Path) -> dict[str, Any] | None:
    tool = data.get("tool")
    if not isinstance(tool, dict) or "spectracli" not in tool:
        return None
    table = tool["spectracli"]
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.spectracli]: expected a table, got {table!r}")
    return table


def load_config(path: str | Path) -> GateConfig:
    """Read a config file: a pyproject.toml (``[tool.spectracli.*]``) or a spectracli.toml.

    Returns:
        The gate config of the file's ``gate`` and ``analyze`` tables.

    Raises:
        ConfigError: an unreadable file, a pyproject.toml without ``[tool.spectracli.gate]``,
            an unknown table, or an invalid rule or setting.
    """
    path = Path(path)
    data = read_toml(path)
    table = _tool_table(data, path)
    if table is not None:
        prefix = "tool.spectracli"
        unknown = [k for k in table if k not in ("gate", "analyze")]
        if unknown:
            raise ConfigError(f"{path}: [tool.spectracli]: "
                              f"{_unknown('table', unknown[0], ['gate', 'analyze'])}")
    else:
        if path.name == "pyproject.toml":
            raise ConfigError(f"{path}: no [tool.spectracli.gate] table")
        table, prefix = data, ""
        unknown = [k for k in table if k not in ("gate", "analyze")]
        if unknown:
            raise ConfigError(f"{path}: {_unknown('table', unknown[0], ['gate', 'analyze'])}")
    return config_from_tables(table.get("gate"), table.get("analyze"), path, prefix)


def find_config(start: str | Path | None = None) -> Path | None:
    """The nearest spectracli.toml, or pyproject.toml with ``[tool.spectracli]``, upwards."""
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "spectracli.toml"
        if candidate.is_file():
            return candidate
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                data = read_toml(candidate)
            except ConfigError:
                # A broken pyproject may still be ours: report it rather than skip it.
                if b"spectracli" in candidate.read_bytes():
                    return candidate
                continue
            if _tool_table(data, candidate) is not None:
                return candidate
    return None


# With a baseline and no rules, these drift checks run (all warnings; docs/ci.md "Default
# checks"); the layer set and shapes are checked against any baseline (errors by default).
DEFAULT_DRIFT: dict[str, tuple[tuple[str, str, float], ...]] = {
    "analyze": (
        ("sigma_max", "max_rel_increase", 0.10),
        ("condition_number", "max_rel_increase", 0.25),
        ("alpha", "max_abs_change", 0.5),
    ),
    "hessian": (("lambda_max", "max_rel_increase", 0.10),),
}


def default_rules(report_kind: str) -> list[Rule]:
    """The default drift checks for a baseline of ``report_kind`` (:data:`DEFAULT_DRIFT`).

    Returns:
        Warning rules with ids ``default.<metric>-drift``; for a track report those of its
        weights (analyze) and of its Hessian.
    """
    if report_kind == "track":
        return [*default_rules("analyze"), *default_rules("hessian")]
    return [
        Rule(id=f"default.{metric}-drift", metric=metric, severity="warning",
             report=report_kind, origin="default drift checks (docs/ci.md)",
             description=f"default: {metric} drift against the baseline",
             **{limit: value})
        for metric, limit, value in DEFAULT_DRIFT.get(report_kind, ())
    ]


def parse_quick_rule(kind: str, text: str, confident: bool = False) -> Rule:
    """A rule from a command-line option: ``--max condition_number=1e4`` and the like.

    ``kind`` is the option: ``min``, ``max``, ``max_rel_increase`` or ``max_abs_change``.
    ``METRIC@GLOB=VALUE`` restricts the rule to layers matching GLOB. ``confident``
    (``--confident``) makes a min/max rule on a metric with an interval (alpha, farms.alpha)
    fail only when the whole interval is past the limit; other rules are left as they are.

    Returns:
        The rule, id ``cli.<kind>.<metric>[@<glob>]``, applying to any report kind that has
        the metric.

    Raises:
        ConfigError: ``text`` is not ``METRIC[@GLOB]=VALUE``, or the rule is invalid (unknown
            metric, value not a number).
    """
    option = "--" + kind.replace("_", "-")
    if "=" not in text:
        raise ConfigError(f"{option} {text!r}: expected METRIC=VALUE, e.g. "
                          f"{option} condition_number=1e4")
    left, value = text.rsplit("=", 1)
    metric, _, glob = left.partition("@")
    raw: dict[str, Any] = {"metric": metric.strip(), kind: value.strip()}
    if confident and kind in ("min", "max") and metric.strip() in INTERVALS:
        raw["confidence"] = True
    if glob:
        raw["match"] = glob.strip()
    rule = build_rule(raw, f"{option} {text}")
    rule.id = f"cli.{kind}.{metric.strip()}" + (f"@{glob.strip()}" if glob else "")
    # A rule typed for one file applies to whichever report kind has the metric.
    rule.report = "any"
    return rule
