"""JUnit XML of a gate run: one testsuite per rule, one testcase per (rule, layer).

Uses only the elements and attributes that GitLab and Jenkins read: ``testsuites`` >
``testsuite`` (name, tests, failures, errors, skipped, time) > ``testcase`` (classname, name,
file, time) with a ``failure`` (message, type, text), ``skipped`` or ``system-out`` child.
GitLab collapses test cases with the same classname and name, so names are made unique.
A warning is a passing case with the warning in ``system-out``, or a failure under ``--strict``.
Layer-set checks against a baseline (shape changes, missing and new layers) get their own
suites named by the built-in ids, e.g. ``spectracli/shape-change``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict

from spectracli.gate.evaluate import Check, GateResult, fmt


def _case_name(check: Check) -> str:
    if check.layer is not None:
        return check.layer
    # A rule that matched nothing carries its metric; a settings note carries none.
    return "(no matching layer)" if check.metric is not None else "(settings)"


def _case_outcome(case: ET.Element, check: Check, strict: bool) -> str | None:
    """Fill a test case from its check: a failure, a skip, or the value / warning as output.

    Returns:
        ``failures`` or ``skipped`` for the suite's counts, else None.
    """
    text = "\n".join(check.messages)
    if check.status == "fail" or (strict and check.status == "warning"):
        failure = ET.SubElement(case, "failure", message="; ".join(check.messages),
                                type=check.severity)
        failure.text = text
        return "failures"
    if check.status == "skipped":
        ET.SubElement(case, "skipped", message="; ".join(check.messages))
        return "skipped"
    if check.status == "warning":
        ET.SubElement(case, "system-out").text = "warning: " + text
    elif check.metric is not None:
        ET.SubElement(case, "system-out").text = f"{check.metric} = {fmt(check.value)}"
    return None


def to_junit(result: GateResult, strict: bool = False) -> str:
    """The XML document as a string (UTF-8 declaration included)."""
    by_rule: dict[str, list[Check]] = defaultdict(list)
    for check in result.checks:
        by_rule[check.rule_id].append(check)
    descriptions = {r.id: r.describe() for r in result.rules}

    root = ET.Element("testsuites", name="spectracli gate")
    totals = dict(tests=0, failures=0, skipped=0)
    for rule_id, checks in by_rule.items():
        suite = ET.SubElement(root, "testsuite", name=rule_id)
        if rule_id in descriptions:
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="rule", value=descriptions[rule_id])
        counts = dict(tests=0, failures=0, skipped=0)
        seen: dict[str, int] = {}
        for check in checks:
            name = _case_name(check)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name} #{seen[name]}"
            case = ET.SubElement(
                suite, "testcase",
                classname=f"spectracli.gate.{rule_id}", name=name,
                file=result.source or "", time="0",
            )
            counts["tests"] += 1
            outcome = _case_outcome(case, check, strict)
            if outcome:
                counts[outcome] += 1
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", "0")
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", "0")
        for key in totals:
            totals[key] += counts[key]
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    root.set("time", "0")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=False).join(
        ['<?xml version="1.0" encoding="UTF-8"?>\n', "\n"]
    )
