"""The gate on a track report (``kind: "track"``, a run's checkpoints by step).

- ``min``/``max`` apply to the **last step** (its layers, and its Hessian as the ``hessian``
  pseudo-layer), as they would to that checkpoint's own analyze/hessian report;
- ``max_rel_increase``/``max_abs_change`` apply to **consecutive steps**: every step against
  the step before it (a trend), and also the last step against ``--baseline`` when one is given;
- ``max_steps_below = N`` (with ``min``) applies to the **whole run**: a finding when the metric
  stayed below ``min`` for more than N consecutive steps (one dip of N steps or fewer passes).

Findings name the steps; the checks are one per (rule, layer), the worst over the steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from spectracli.errors import SpectraError
from spectracli.gate.evaluate import Check, Finding, GateResult, evaluate, excess_of, fmt
from spectracli.gate.rules import GateConfig, Rule
from spectracli.gate.subjects import subjects

_STATUS_ORDER = {"fail": 3, "warning": 2, "pass": 1, "skipped": 0}


def analyze_view(report: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """One step of a track report as the analyze report of its checkpoint."""
    return {
        "schema_version": report.get("schema_version"),
        "kind": "analyze",
        "source": step.get("source") or {},
        "settings": (report.get("settings") or {}).get("analyze") or {},
        "layers": step.get("layers") or [],
        "skipped": step.get("skipped") or [],
        "summary": step.get("summary") or {},
    }


def _views(report: dict[str, Any], step: dict[str, Any]) -> list[dict[str, Any]]:
    views = [analyze_view(report, step)]
    if isinstance(step.get("hessian"), dict):
        views.append({**step["hessian"], "kind": "hessian"})
    return views


def _prefixed(result: GateResult, text: str) -> GateResult:
    for f in result.findings:
        f.message = f"{text}: {f.message}"
    for c in result.checks:
        c.messages = [f"{text}: {m}" for m in c.messages]
    return result


def _baseline_views(baseline: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if baseline is None:
        return {}
    if baseline.get("kind") == "track":
        if not baseline.get("steps"):
            raise SpectraError("the baseline track report has no steps")
        return {v["kind"]: v for v in _views(baseline, baseline["steps"][-1])}
    return {str(baseline.get("kind")): baseline}


def steps_below(values: list[tuple[int, float | None]], limit: float) -> tuple[int, int, int]:
    """The longest run of consecutive steps with a value below ``limit``.

    Returns:
        ``(length, first step, last step)``, ``(0, 0, 0)`` for none; a step without a value
        ends a run.
    """
    best = (0, 0, 0)
    run: list[int] = []
    for step, value in values:
        if value is not None and value < limit:
            run.append(step)
            if len(run) > best[0]:
                best = (len(run), run[0], run[-1])
        else:
            run = []
    return best


def evaluate_track(
    config: GateConfig,
    report: dict[str, Any],
    baseline: dict[str, Any] | None = None,
    *,
    source: str = "",
    baseline_source: str | None = None,
) -> GateResult:
    """Apply ``config``'s rules to a track report (module doc).

    Returns:
        The same result type as :func:`spectracli.gate.evaluate.evaluate`.

    Raises:
        SpectraError: the track report has no steps.
    """
    steps = report.get("steps") or []
    if not steps:
        raise SpectraError(f"{source or 'the track report'} has no steps to gate")
    last = steps[-1]
    acc = _Collected()
    below = [r for r in config.rules if r.max_steps_below is not None]
    plain = [r for r in config.rules if r.max_steps_below is None]
    trend = [dataclasses.replace(r, min=None, max=None) for r in plain if r.needs_baseline]

    _gate_last_step(acc, config, plain, report, baseline, source, baseline_source)
    if trend:
        _gate_consecutive(acc, dataclasses.replace(config, rules=trend), report, source)
    for rule in below:
        _steps_below(rule, report, steps, acc.findings, acc.checks, acc.applied)
    acc.settle_unmatched()

    n_layers = len(subjects(analyze_view(report, last)))
    n_layers += isinstance(last.get("hessian"), dict)
    acc.findings.sort(key=Finding.sort_key)
    return GateResult(
        findings=acc.findings,
        checks=list(acc.checks.values()),
        rules=list(acc.applied.values()),
        not_applicable=[r for r in config.rules if r.id not in acc.applied],
        report_kind="track",
        n_layers=n_layers,
        with_hessian=isinstance(last.get("hessian"), dict),
        source=source,
        baseline_source=baseline_source,
    )


@dataclasses.dataclass
class _Collected:
    """Findings, checks (one per rule and layer) and the rules applied, over sub-evaluations."""

    findings: list[Finding] = dataclasses.field(default_factory=list)
    checks: dict[tuple[str, str | None], Check] = dataclasses.field(default_factory=dict)
    applied: dict[str, Rule] = dataclasses.field(default_factory=dict)
    # A rule that matched nothing in one view (a layer glob in the Hessian's view, "hessian" in
    # the weights' view) or in one pair of steps is said once, at the end, and only when it
    # matched nothing anywhere: rule id -> its first "matched nothing" finding and check.
    unmatched: dict[str, tuple[Finding, Check]] = dataclasses.field(default_factory=dict)

    def merge(self, result: GateResult) -> None:
        """Add a sub-result; a check seen before keeps its worst status and all messages."""
        missed = {f.rule_id: f for f in result.findings if f.kind == "unmatched"}
        self.findings.extend(f for f in result.findings if f.kind != "unmatched")
        for rule in result.rules:
            self.applied.setdefault(rule.id, rule)
        for c in result.checks:
            if c.layer is None and c.rule_id in missed:
                self.unmatched.setdefault(c.rule_id, (missed[c.rule_id], c))
                continue
            key = (c.rule_id, c.layer)
            old = self.checks.get(key)
            if old is None:
                self.checks[key] = c
                continue
            old.messages += [m for m in c.messages if m not in old.messages]
            if _STATUS_ORDER[c.status] > _STATUS_ORDER[old.status]:
                old.status, old.severity, old.value = c.status, c.severity, c.value

    def settle_unmatched(self) -> None:
        """The "matched nothing" notes of rules that matched nothing in any view or step."""
        matched = {rule_id for rule_id, _ in self.checks}
        for rule_id, (finding, check) in self.unmatched.items():
            if rule_id not in matched:
                self.findings.append(finding)
                self.checks[(rule_id, None)] = check


def _gate_last_step(
    acc: _Collected, config: GateConfig, plain: list[Rule], report: dict[str, Any],
    baseline: dict[str, Any] | None, source: str, baseline_source: str | None,
) -> None:
    """Limits on the last step, and drift from the baseline where one is given for its view."""
    last = report["steps"][-1]
    base_views = _baseline_views(baseline)
    for view in _views(report, last):
        with_base = view["kind"] in base_views
        rules = [r if with_base else dataclasses.replace(r, max_rel_increase=None,
                                                         max_abs_change=None) for r in plain]
        rules = [r for r in rules if r.min is not None or r.max is not None or r.needs_baseline]
        if not rules:
            continue
        sub = dataclasses.replace(config, rules=rules)
        acc.merge(_prefixed(evaluate(sub, view, base_views.get(view["kind"]), source=source,
                                     baseline_source=baseline_source), f"step {last['step']}"))


def _gate_consecutive(acc: _Collected, config: GateConfig, report: dict[str, Any],
                      source: str) -> None:
    """Drift rules between consecutive steps (``config`` holds the drift rules only)."""
    steps = report["steps"]
    for prev, cur in zip(steps, steps[1:], strict=False):
        before = {v["kind"]: v for v in _views(report, prev)}
        for view in _views(report, cur):
            if view["kind"] not in before:
                continue
            acc.merge(_prefixed(evaluate(config, view, before[view["kind"]], source=source,
                                         baseline_source=f"step {prev['step']}"),
                                f"steps {prev['step']} -> {cur['step']}"))


def _steps_below(
    rule: Rule,
    report: dict[str, Any],
    steps: list[dict[str, Any]],
    findings: list[Finding],
    checks: dict[tuple[str, str | None], Check],
    applied: dict[str, Rule],
) -> None:
    """``rule.min`` held for at most ``rule.max_steps_below`` consecutive steps, per layer."""
    from spectracli.gate.evaluate import applies, fit_status_of, rule_matches

    series: dict[str, list[tuple[int, float | None]]] = {}
    for step in steps:
        for view in _views(report, step):
            if not applies(rule, view["kind"]):
                continue
            for subject in subjects(view):
                if not rule_matches(rule, subject):
                    continue
                value = subject.value(rule.metric)
                if fit_status_of(subject, rule.metric) is not None:
                    value = None  # a number from a failed fit is not judged
                series.setdefault(subject.name, []).append((int(step["step"]), value))
    if not series:
        return
    applied.setdefault(rule.id, rule)
    assert rule.min is not None and rule.max_steps_below is not None
    for name, values in series.items():
        length, first, last = steps_below(values, rule.min)
        status = "pass"
        messages: list[str] = []
        if length > rule.max_steps_below:
            status = "fail" if rule.severity == "error" else "warning"
            text = (f"{name}: {rule.metric} below {fmt(rule.min)} for {length} consecutive "
                    f"steps ({first} to {last}; at most {rule.max_steps_below} allowed)")
            messages.append(text)
            lowest = min(v for s, v in values if first <= s <= last and v is not None)
            findings.append(Finding(
                rule.id, rule.severity, "max_steps_below", text, layer=name,
                metric=rule.metric, value=float(length), threshold=float(rule.max_steps_below),
                excess=excess_of(lowest, rule.min, "min"),
                how_far=f"{length} steps below ({first} to {last}), lowest {fmt(lowest)}",
            ))
        present = [v for _, v in values if v is not None]
        checks[(rule.id, name)] = Check(rule.id, name, rule.metric,
                                        present[-1] if present else None, status, messages,
                                        rule.severity)
