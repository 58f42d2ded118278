"""Rules + report (+ baseline) -> findings, checks and an exit code.

Every rule applies to every layer its ``match`` globs select (names and tied-weight aliases,
``fnmatch`` case-sensitive), minus its ``exclude`` globs. For each (rule, layer) pair one
:class:`Check` is recorded (a JUnit test case); every violated limit is a :class:`Finding`.

Against a baseline value b, a value v has relative increase (v - b) / |b| (``+inf`` when b = 0
and v > 0, 0 when v = b) and absolute change |v - b|. Findings are sorted worst first:
errors before warnings, then layer-set problems (shape changes, missing layers), then
threshold violations by how far beyond the limit they lie relative to the limit, then notes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from spectracli.gate.baseline import diff_layers, settings_differences
from spectracli.gate.rules import INTERVALS, ConfigError, GateConfig, Rule
from spectracli.gate.subjects import Subject, metric_names, subjects
from spectracli.report.numbers import fmt_num
from spectracli.report.text import plural

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2

# Ids of the gate's own checks (user rule ids may not start with "spectracli/").
MISSING_LAYER = "spectracli/missing-layer"
NEW_LAYER = "spectracli/new-layer"
SHAPE_CHANGE = "spectracli/shape-change"
SETTINGS_DIFFER = "spectracli/settings-differ"
BUILTIN_RULES = {
    MISSING_LAYER: "A layer of the baseline is missing from the report.",
    NEW_LAYER: "The report has a layer the baseline lacks.",
    SHAPE_CHANGE: "A layer's shape differs from the baseline's (always an error).",
    SETTINGS_DIFFER: "Report and baseline were analysed with different settings.",
}

# Sort groups within a severity: structural problems, threshold violations, notes.
_GROUP = {
    "shape_change": 0, "missing_layer": 0,
    "min": 1, "max": 1, "max_rel_increase": 1, "max_abs_change": 1, "max_steps_below": 1,
    "no_value": 2, "fit_not_ok": 2, "unmatched": 2, "new_layer": 2, "settings_differ": 2,
}

# Metrics that come from a power-law fit: judged only when that fit's status is "ok".
FIT_METRICS = (
    "alpha", "xmin", "tail_size", "ks_distance", "alpha_weighted", "log_alpha_norm", "alpha_se",
)


@dataclass
class Finding:
    """One violation or note: which rule, which layer and metric, the numbers, how far."""

    rule_id: str
    severity: str  # "error" | "warning"
    kind: str  # min | max | max_rel_increase | max_abs_change | no_value | fit_not_ok |
    #            unmatched | missing_layer | new_layer | shape_change | settings_differ
    message: str
    layer: str | None = None
    metric: str | None = None
    value: float | None = None  # the metric, or the relative/absolute change for baseline rules
    threshold: float | None = None
    baseline: float | None = None  # the baseline's value of the metric, for baseline rules
    excess: float | None = None  # |value - threshold| / |threshold| (inf when threshold is 0)
    how_far: str = ""

    def sort_key(self) -> tuple:
        """Worst first: errors, then by kind group, then by excess, layer and rule id."""
        excess = self.excess if self.excess is not None else -1.0
        return (
            0 if self.severity == "error" else 1,
            _GROUP.get(self.kind, 3),
            -excess,
            self.layer or "",
            self.rule_id,
        )

    @property
    def limit_text(self) -> str:
        """The threshold as people read it: ``<= 1e+04``, ``<= 150 (+50% of 100)``."""
        t, b = self.threshold, self.baseline
        if t is None:
            return "-"
        if self.kind == "min":
            return f">= {fmt(t)}"
        if self.kind == "max":
            return f"<= {fmt(t)}"
        if self.kind == "max_rel_increase" and b is not None:
            return f"<= {fmt(b + t * abs(b))} (+{t:.0%} of {fmt(b)})"
        if self.kind == "max_abs_change" and b is not None:
            return f"{fmt(b)} +/- {fmt(t)}"
        return fmt(t)

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON (``findings`` of the gate report, docs/ci.md)."""
        return {
            "rule": self.rule_id,
            "severity": self.severity,
            "kind": self.kind,
            "layer": self.layer,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "limit": self.limit_text,
            "baseline": self.baseline,
            "excess": self.excess,
            "how_far": self.how_far,
            "message": self.message,
        }


@dataclass
class Check:
    """One (rule, layer) pair: a JUnit test case. ``status``: pass | fail | warning | skipped."""

    rule_id: str
    layer: str | None  # None for a rule that matched no layer
    metric: str | None
    value: float | None
    status: str
    messages: list[str] = field(default_factory=list)
    severity: str = "error"


@dataclass
class GateResult:
    """The outcome of a gate run: findings, one check per (rule, layer), the rules that applied."""

    findings: list[Finding]
    checks: list[Check]
    rules: list[Rule]  # the rules that applied to this report kind
    not_applicable: list[Rule]
    report_kind: str
    n_layers: int
    source: str = ""
    baseline_source: str | None = None
    with_hessian: bool = False  # n_layers counts the Hessian pseudo-layer (hessian, track)

    @property
    def n_errors(self) -> int:
        """Findings of severity ``error``."""
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def n_warnings(self) -> int:
        """Findings of severity ``warning``."""
        return sum(1 for f in self.findings if f.severity == "warning")

    def passed(self, strict: bool = False) -> bool:
        """No error finding (and, with ``strict``, no warning)."""
        return self.n_errors == 0 and not (strict and self.n_warnings)

    def exit_code(self, strict: bool = False, exit_zero: bool = False) -> int:
        """0 pass; 1 an error finding (or, with ``strict``, any warning); 0 with exit_zero."""
        if exit_zero:
            return EXIT_PASS
        return EXIT_PASS if self.passed(strict) else EXIT_FAIL

    def to_dict(self, strict: bool = False) -> dict[str, Any]:
        """The gate report as JSON (``kind: "gate"``, docs/ci.md)."""
        return {
            "schema_version": 1,
            "kind": "gate",
            "passed": self.passed(strict),
            "strict": strict,
            "source": self.source,
            "baseline": self.baseline_source,
            "report_kind": self.report_kind,
            "counts": {
                "errors": self.n_errors,
                "warnings": self.n_warnings,
                "checks": len(self.checks),
                "layers": self.n_layers,
                "rules": len(self.rules),
            },
            "findings": [f.to_dict() for f in self.findings],
            "rules": [r.to_dict() for r in self.rules],
            "not_applicable": [r.id for r in self.not_applicable],
        }


# The one number formatter (report/numbers.py), with thresholds people typed (1e5) as integers.
fmt = functools.partial(fmt_num, integral=True)


def excess_of(value: float, limit: float, side: str = "max") -> float:
    """How far beyond the limit, for ranking findings worst first.

    For positive value and limit it is the ratio beyond 1 (value/limit - 1 above a max,
    limit/value - 1 below a min), so 10x over a max ranks with 10x under a min; otherwise
    |value - limit| / |limit| (inf for a zero limit with a nonzero gap, or an infinite value).

    Args:
        value: the judged value.
        limit: the rule's threshold.
        side: ``max`` (value above a maximum) or ``min`` (value below a minimum).

    Returns:
        The excess, >= 0 for a value past the limit.
    """
    gap = abs(value - limit)
    if math.isinf(gap):
        return math.inf
    if value > 0 and limit > 0:
        return value / limit - 1 if side == "max" else limit / value - 1
    if limit == 0:
        return math.inf if gap > 0 else 0.0
    return gap / abs(limit)


def how_far(value: float, limit: float, side: str) -> str:
    """A short phrase: ``16.09 above (+161%)``, ``0.2 below (-10%)``, ``2.6e+03x the max``."""
    word = "above" if side == "max" else "below"
    gap = abs(value - limit)
    if math.isinf(gap):
        return f"infinitely {word}"
    if limit != 0 and value != 0 and (value > 0) == (limit > 0):
        ratio = value / limit if side == "max" else limit / value
        if ratio >= 10:
            return f"{ratio:.3g}x the max" if side == "max" else f"1/{ratio:.3g} of the min"
    if limit == 0:
        return f"{fmt(gap)} {word}"
    sign = "+" if side == "max" else "-"
    return f"{fmt(gap)} {word} ({sign}{gap / abs(limit):.0%})"


def relative_increase(value: float, base: float) -> float:
    """``(value - base) / |base|``; +-inf from a zero base, -1 from an infinite one to finite."""
    if value == base:
        return 0.0
    if base == 0 or math.isinf(base):
        if math.isinf(base) and not math.isinf(value):
            return -1.0  # from infinite to finite: a full decrease
        return math.copysign(math.inf, value - base)
    return (value - base) / abs(base)


def absolute_change(value: float, base: float) -> float:
    """``|value - base|`` (0 for equal values, infinities included)."""
    if value == base:
        return 0.0
    return abs(value - base)


def _glob(name: str, pattern: str) -> bool:
    # Part names such as ``attn.in_proj_weight[q]`` match as they are and as ``*[q]``: the
    # layer model's rule (spectracli.layers.glob_match, which imports torch; the gate does not;
    # tests/layers/test_layers_glob.py keeps the two equal).
    return (name == pattern or fnmatchcase(name, pattern)
            or ("[" in pattern and fnmatchcase(name, pattern.replace("[", "[[]"))))


def rule_matches(rule: Rule, subject: Subject) -> bool:
    """Whether a name or alias of ``subject`` matches the rule's globs and none of its excludes."""
    names = [subject.name, *subject.aliases]
    hit = any(_glob(n, g) for n in names for g in rule.match)
    return hit and not any(_glob(n, g) for n in names for g in rule.exclude)


def applies(rule: Rule, kind: str) -> bool:
    """Whether ``rule`` applies to a report of ``kind`` (``any``: when it has the metric)."""
    if rule.report == "any":
        return rule.metric in metric_names(kind)
    return rule.report == kind


def _why_missing(subject: Subject, metric: str) -> str:
    layer_status = subject.metrics.get("status")
    if layer_status and layer_status != "ok":
        return f" (layer status: {layer_status})"  # e.g. non-finite weights
    status_key = "farms.fit_status" if metric.startswith("farms.") else "fit_status"
    status = subject.metrics.get(status_key)
    if status and str(status) != "ok" and metric.split(".")[-1] in (
        "alpha", "xmin", "tail_size", "ks_distance", "alpha_weighted", "log_alpha_norm"
    ):
        return f" (fit {status})"
    return ""


def fit_status_of(subject: Subject, metric: str) -> tuple[str, str | None] | None:
    """(status, reason) of the fit behind a fit metric when it is not ok; None otherwise."""
    farms = metric.startswith("farms.")
    if metric.split(".")[-1] not in FIT_METRICS:
        return None
    status = subject.metrics.get("farms.fit_status" if farms else "fit_status")
    if status is None or status == "ok":
        return None
    return str(status), subject.metrics.get("farms.fit_reason" if farms else "fit_reason")


def _fit_not_ok(
    rule: Rule, config: GateConfig, owner: Subject, name: str, whose: str
) -> list[Finding] | None:
    """The finding for a fit metric whose fit (``owner``'s: the layer or its baseline) is not ok.

    Returns:
        One finding at the severity ``fit_not_ok`` sets (none when it is ``ignore``); None when
        the fit is ok or the metric is not a fit metric.
    """
    bad = fit_status_of(owner, rule.metric)
    if bad is None:
        return None
    severity = _severity(config.fit_not_ok)
    if severity is None:
        return []
    status, reason = bad
    value = owner.value(rule.metric)
    shown = f" (its value {fmt(value)} is not judged)" if value is not None else ""
    return [Finding(
        rule.id, severity, "fit_not_ok",
        f"{name}: {rule.metric} not checked: {whose} fit is {status}"
        + (f", {reason}" if reason else "") + shown,
        layer=name, metric=rule.metric, value=value, how_far=f"fit {status}",
    )]


def _severity(policy: str) -> str | None:
    return None if policy == "ignore" else policy


def evaluate(
    config: GateConfig,
    report: dict[str, Any],
    baseline: dict[str, Any] | None = None,
    *,
    source: str = "",
    baseline_source: str | None = None,
) -> GateResult:
    """Apply every rule of ``config`` to ``report`` (and ``baseline``).

    Args:
        config: the rules and policies.
        report: an analyze, hessian or track report dict.
        baseline: the baseline report dict, for drift rules.
        source: how the report is named in messages and outputs.
        baseline_source: how the baseline is named.

    Returns:
        The findings (worst first), the checks and the rules that applied.

    Raises:
        ConfigError: a rule needs a baseline and none is given.
        BaselineError: the baseline is of another kind or shares no layer with the report.
    """
    kind = str(report.get("kind"))
    if kind == "track":  # last step, consecutive steps and runs of steps: gate/trends.py
        from spectracli.gate.trends import evaluate_track

        return evaluate_track(config, report, baseline, source=source,
                              baseline_source=baseline_source)
    subs = subjects(report)
    findings: list[Finding] = []
    base_by_name: dict[str, Subject] = {}
    shape_changes: dict[str, tuple] = {}
    if baseline is not None:
        diff, base_by_name = diff_layers(report, baseline, baseline_source or "the baseline")
        shape_changes = diff.shape_changes
        findings = _layer_set_findings(config, diff, settings_differences(report, baseline))
    checks = [Check(f.rule_id, f.layer, None, None,
                    "fail" if f.severity == "error" else "warning", [f.message], f.severity)
              for f in findings]

    # max_steps_below needs a run of steps: it applies to track reports only.
    applicable = [r for r in config.rules if applies(r, kind) and r.max_steps_below is None]
    skipped_rules = [r for r in config.rules if r not in applicable]
    for rule in applicable:
        if rule.needs_baseline and baseline is None:
            raise ConfigError(
                f"{rule.origin}: rule {rule.id!r} compares with a baseline "
                "(max_rel_increase/max_abs_change) but none was given: pass --baseline FILE "
                "or set 'baseline' in the [gate] table"
            )
        matched = [s for s in subs if rule_matches(rule, s)]
        if not matched:
            text = (f"rule {rule.id!r}: no layer matches {', '.join(rule.match)}"
                    + (f" (excluding {', '.join(rule.exclude)})" if rule.exclude else "")
                    + f" among {plural(len(subs), 'layer')}")
            findings.append(Finding(rule.id, "warning", "unmatched", text, metric=rule.metric,
                                    how_far="matched nothing"))
            checks.append(Check(rule.id, None, rule.metric, None, "warning", [text], "warning"))
            continue
        for subject in matched:
            found = _check_one(rule, subject, base_by_name.get(subject.name),
                               subject.name in shape_changes, config)
            findings.extend(found)
            checks.append(_layer_check(rule, subject, found))

    findings.sort(key=Finding.sort_key)
    return GateResult(
        findings=findings,
        checks=checks,
        rules=applicable,
        not_applicable=skipped_rules,
        report_kind=kind,
        n_layers=len(subs),
        with_hessian=kind == "hessian",
        source=source,
        baseline_source=baseline_source,
    )


def _no_value(
    rule: Rule,
    config: GateConfig,
    owner: Subject,
    name: str,
    message: str,
    how_far: str,
    value: float | None = None,
) -> list[Finding]:
    """The finding for layer ``name`` when ``owner`` has no value of the rule's metric.

    ``owner`` is the current subject or its baseline. A layer whose weights hold NaN/Inf (status
    ``nonfinite``) is always an error: that is what a gate must catch.

    Returns:
        One finding at the severity ``missing_value`` sets (none when it is ``ignore``).
    """
    nonfinite = owner.metrics.get("status") == "nonfinite"
    severity = "error" if nonfinite else _severity(config.missing_value)
    if severity is None:
        return []
    return [Finding(
        rule.id, severity, "no_value", message + _why_missing(owner, rule.metric),
        layer=name, metric=rule.metric, value=value, how_far=how_far,
    )]


def _layer_set_findings(config: GateConfig, diff: Any, differences: list[str]) -> list[Finding]:
    """Findings on the layer set against the baseline and on the settings that differ.

    Args:
        config: the policies for missing and new layers.
        diff: the :class:`~spectracli.gate.baseline.LayerDiff` of report and baseline.
        differences: the settings that differ, in words.

    Returns:
        Shape changes (errors), missing and new layers (at their policies' severity), then the
        settings that differ (warnings).
    """
    findings = [
        Finding(SHAPE_CHANGE, "error", "shape_change",
                f"{name}: shape {old} in the baseline, {cur} now",
                layer=name, how_far=f"{old} -> {cur}")
        for name, (old, cur) in diff.shape_changes.items()
    ]
    for names, policy, kind_, rid, text in (
        (diff.missing, config.missing_layers, "missing_layer", MISSING_LAYER,
         "in the baseline but missing now"),
        (diff.new, config.new_layers, "new_layer", NEW_LAYER, "new: not in the baseline"),
    ):
        severity = _severity(policy)
        if severity is None:
            continue
        for name in names:
            findings.append(Finding(rid, severity, kind_, f"{name}: {text}", layer=name,
                                    how_far=text.split(":")[0]))
    for text in differences:
        findings.append(Finding(
            SETTINGS_DIFFER, "warning", "settings_differ",
            f"settings differ, numbers may not be comparable: {text}", how_far=text,
        ))
    return findings


def _layer_check(rule: Rule, subject: Subject, found: list[Finding]) -> Check:
    """The JUnit check of ``rule`` on ``subject`` from its findings ``found``.

    Returns:
        The check: ``fail`` on an error, ``warning`` on a warning, ``skipped`` when the value
        is missing or comes from a fit that is not ok (not judged), else ``pass``.
    """
    value = subject.value(rule.metric)
    severities = {f.severity for f in found}
    if "error" in severities:
        status = "fail"
    elif "warning" in severities:
        status = "warning"
    elif value is None or fit_status_of(subject, rule.metric) is not None:
        status = "skipped"  # no value, or one from a fit that is not ok: not judged
    else:
        status = "pass"
    messages = [f.message for f in found]
    if status == "skipped":
        messages = [f"{subject.name}: {rule.metric} "
                    + ("has no value" if value is None else "is not judged")
                    + _why_missing(subject, rule.metric)]
    sev = "error" if "error" in severities else "warning" if severities else rule.severity
    return Check(rule.id, subject.name, rule.metric, value, status, messages, sev)


def _check_one(
    rule: Rule,
    subject: Subject,
    base: Subject | None,
    shape_changed: bool,
    config: GateConfig,
) -> list[Finding]:
    """The findings of ``rule`` on one layer: its limits, then its drift from ``base``.

    Returns:
        The findings (empty when the layer passes).
    """
    name, metric = subject.name, rule.metric
    not_ok = _fit_not_ok(rule, config, subject, name, "the")
    if not_ok is not None:  # a number from a failed fit neither passes nor fails a rule
        return not_ok
    value = subject.value(metric)
    if value is None:
        return _no_value(rule, config, subject, name, f"{name}: {metric} has no value", "no value")
    interval = None
    if rule.confidence and (rule.min is not None or rule.max is not None):
        field = INTERVALS.get(metric, "")
        interval = subject.interval(field)
        if interval is None:
            return _no_value(rule, config, subject, name,
                             f"{name}: {metric} has no {field} (confidence rule)", "no interval",
                             value=value)
    out = _limit_findings(rule, name, value, interval)
    if not rule.needs_baseline or base is None or shape_changed:
        # New layers and shape changes are reported once, as layer-set findings.
        return out
    return out + _against_baseline(rule, config, base, name, value)


def _against_baseline(rule: Rule, config: GateConfig, base: Subject, name: str,
                      value: float) -> list[Finding]:
    """The drift findings of ``rule`` on layer ``name`` against its baseline subject ``base``.

    Returns:
        The baseline's fit-not-ok or no-value finding when its number cannot be compared, else
        the drift findings.
    """
    base_not_ok = _fit_not_ok(rule, config, base, name, "the baseline's")
    if base_not_ok is not None:
        return base_not_ok
    before = base.value(rule.metric)
    if before is None:
        return _no_value(
            rule, config, base, name, f"{name}: the baseline has no value of {rule.metric}",
            "no baseline value", value=value,
        )
    return _drift_findings(rule, name, value, before)


def _limit_findings(rule: Rule, name: str, value: float,
                    interval: tuple[float, float] | None) -> list[Finding]:
    """The min/max findings of ``rule`` on layer ``name`` (``interval``: a confidence rule).

    Returns:
        One finding per limit passed; with an interval, only when the whole of it is past.
    """
    out: list[Finding] = []
    metric = rule.metric
    for side, limit in (("min", rule.min), ("max", rule.max)):
        if limit is None:
            continue
        judged, shown = value, fmt(value)
        if interval is not None:
            # The whole interval must be past the limit: judge its nearer end.
            low, high = interval
            judged = high if side == "min" else low
            shown = f"{fmt(value)}, its whole interval [{fmt(low)}, {fmt(high)}]"
        if judged < limit if side == "min" else judged > limit:
            far = how_far(judged, limit, side)
            out.append(Finding(
                rule.id, rule.severity, side,
                f"{name}: {metric} = {shown} {'<' if side == 'min' else '>'} "
                f"{side} {fmt(limit)}: {far}",
                layer=name, metric=metric, value=value, threshold=limit,
                excess=excess_of(judged, limit, side), how_far=far,
            ))
    return out


def _drift_findings(rule: Rule, name: str, value: float, before: float) -> list[Finding]:
    """The drift findings of ``rule`` on layer ``name`` from ``before`` (the baseline) to ``value``.

    Returns:
        One finding per drift limit passed (relative increase, absolute change).
    """
    out: list[Finding] = []
    metric = rule.metric
    if rule.max_rel_increase is not None:
        rel = relative_increase(value, before)
        if rel > rule.max_rel_increase:
            far = (f"+{rel:.1%} vs +{rule.max_rel_increase:.1%} allowed"
                   if math.isfinite(rel) else "from 0 or to inf")
            out.append(Finding(
                rule.id, rule.severity, "max_rel_increase",
                f"{name}: {metric} rose from {fmt(before)} to {fmt(value)} "
                f"(+{rel:.1%}; at most +{rule.max_rel_increase:.1%} allowed)",
                layer=name, metric=metric, value=value, threshold=rule.max_rel_increase,
                baseline=before, excess=excess_of(rel, rule.max_rel_increase), how_far=far,
            ))
    if rule.max_abs_change is not None:
        change = absolute_change(value, before)
        if change > rule.max_abs_change:
            out.append(Finding(
                rule.id, rule.severity, "max_abs_change",
                f"{name}: {metric} changed from {fmt(before)} to {fmt(value)} "
                f"(by {fmt(change)}; at most {fmt(rule.max_abs_change)} allowed)",
                layer=name, metric=metric, value=value, threshold=rule.max_abs_change,
                baseline=before, excess=excess_of(change, rule.max_abs_change),
                how_far=f"changed by {fmt(change)} (limit {fmt(rule.max_abs_change)})",
            ))
    return out
