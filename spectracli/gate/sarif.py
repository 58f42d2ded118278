"""SARIF 2.1.0 log of a gate run, for GitHub code scanning and other SARIF readers.

One run; ``tool.driver.rules`` lists every rule that applied plus the built-in layer-set checks
that fired, with stable ids (the config's rule ``id``, or ``spectracli/...`` for built-ins) so
that results line up across runs. Each finding is a result located at the input file
(``physicalLocation``) and the layer (``logicalLocations``); ``partialFingerprints`` holds
rule, layer and kind (not the value) so a finding that persists is recognised as the same.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spectracli import __version__
from spectracli.gate.evaluate import BUILTIN_RULES, GateResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def artifact_uri(path: str) -> str:
    """A repository-relative URI when the file lies under the working directory."""
    if not path:
        return ""
    p = Path(path)
    try:
        rel = os.path.relpath(p.resolve(), Path.cwd().resolve())
    except ValueError:  # another drive on Windows
        return p.resolve().as_uri()
    if rel.startswith(".."):
        return p.resolve().as_uri()
    return Path(rel).as_posix()


def to_sarif(result: GateResult) -> dict[str, Any]:
    """The findings as a SARIF 2.1.0 log (one run; rule ids stable across runs)."""
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for rule in result.rules:
        index[rule.id] = len(rules)
        rules.append({
            "id": rule.id,
            "name": rule.metric,
            "shortDescription": {"text": rule.describe()},
            "fullDescription": {"text": rule.description or rule.describe()},
            "defaultConfiguration": {"level": rule.severity},
            "properties": {"metric": rule.metric, "match": list(rule.match)},
        })
    for f in result.findings:
        if f.rule_id not in index and f.rule_id in BUILTIN_RULES:
            index[f.rule_id] = len(rules)
            rules.append({
                "id": f.rule_id,
                "name": f.rule_id.split("/", 1)[1],
                "shortDescription": {"text": BUILTIN_RULES[f.rule_id]},
                "defaultConfiguration": {"level": f.severity},
                })

    uri = artifact_uri(result.source)
    results = []
    for f in result.findings:
        location: dict[str, Any] = {}
        if uri:
            # GitHub code scanning places results only with region.startLine; a checkpoint
            # has no lines, so line 1 stands for the whole file.
            location["physicalLocation"] = {
                "artifactLocation": {"uri": uri},
                "region": {"startLine": 1},
            }
        if f.layer:
            location["logicalLocations"] = [
                {"name": f.layer, "fullyQualifiedName": f.layer, "kind": "member"}
            ]
        item: dict[str, Any] = {
            "ruleId": f.rule_id,
            "level": f.severity,
            "message": {"text": f.message},
            "partialFingerprints": {
                "spectracliFinding/v1": f"{f.rule_id}|{f.layer or ''}|{f.kind}"
            },
            "properties": {
                "kind": f.kind,
                "metric": f.metric,
                "value": f.value,
                "threshold": f.threshold,
                "baseline": f.baseline,
            },
        }
        if f.rule_id in index:
            item["ruleIndex"] = index[f.rule_id]
        if location:
            item["locations"] = [location]
        results.append(item)

    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "spectracli",
                "version": __version__,
                "rules": rules,
            }
        },
        "results": results,
    }
    if uri:
        run["artifacts"] = [{"location": {"uri": uri}}]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def to_sarif_json(result: GateResult) -> str:
    """:func:`to_sarif` as JSON text."""
    from spectracli.report_file import json_safe

    return json.dumps(json_safe(to_sarif(result)), indent=2, allow_nan=False)
