"""What CI systems read: JUnit XML, SARIF 2.1.0, GitHub annotations and the step summary."""

import json
import re
import xml.etree.ElementTree as ET

from spectracli.gate.evaluate import SHAPE_CHANGE, evaluate
from spectracli.gate.github import (
    annotations,
    append_step_summary,
    escape_data,
    escape_property,
)
from spectracli.gate.junit import to_junit
from spectracli.gate.rules import GateConfig, build_rule
from spectracli.gate.sarif import to_sarif, to_sarif_json

ANNOTATION = re.compile(r"^::(error|warning|notice)( [a-z]+=[^,:\n]*(,[a-z]+=[^,:\n]*)*)?::[^\n]+$")


def _report(n=3, cond=None, shapes=None):
    cond = cond or [10.0 * (i + 1) for i in range(n)]
    shapes = shapes or [[8, 8]] * n
    return {"schema_version": 1, "kind": "analyze", "settings": {}, "layers": [
        {"name": f"blocks.{i}.w", "shape": shapes[i], "condition_number": cond[i],
         "alpha": 2.0 + i, "fit_status": "ok"} for i in range(n)]}


def _config(*rules):
    return GateConfig(rules=[build_rule(r, "t") for r in rules])


RULES = (
    {"id": "cond", "metric": "condition_number", "max": 15},
    {"id": "alpha", "metric": "alpha", "min": 2.5, "severity": "warning"},
    {"id": "attn", "metric": "alpha", "max": 9, "match": "attn*"},
)


def test_junit_has_one_suite_per_rule_and_one_case_per_layer():
    result = evaluate(_config(*RULES), _report(), source="model.json")
    root = ET.fromstring(to_junit(result))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["cond", "alpha", "attn"]
    cond = suites["cond"]
    cases = cond.findall("testcase")
    assert [c.get("name") for c in cases] == ["blocks.0.w", "blocks.1.w", "blocks.2.w"]
    assert all(c.get("classname") == "spectracli.gate.cond" and c.get("file") == "model.json"
               for c in cases)
    assert (cond.get("tests"), cond.get("failures"), cond.get("errors")) == ("3", "2", "0")
    failure = cases[1].find("failure")
    assert cases[0].find("failure") is None
    assert "condition_number = 20 > max 15" in failure.get("message")
    # Warnings pass (with the warning in system-out) unless strict.
    alpha_cases = suites["alpha"].findall("testcase")
    assert alpha_cases[0].find("failure") is None
    assert "warning" in alpha_cases[0].find("system-out").text
    strict = ET.fromstring(to_junit(result, strict=True))
    assert strict.find("testsuite[@name='alpha']").get("failures") == "1"
    # The rule that matched nothing is one case, not a silent empty suite.
    (attn,) = suites["attn"].findall("testcase")
    assert attn.get("name") == "(no matching layer)"
    assert root.get("tests") == "7" and root.get("failures") == "2"
    names = [(c.get("classname"), c.get("name")) for c in root.iter("testcase")]
    assert len(names) == len(set(names))  # GitLab collapses duplicates


def test_junit_names_stay_unique_for_repeated_layer_names_and_layer_set_suites():
    rep = _report(2)
    rep["layers"][1]["name"] = "blocks.0.w"
    base = _report(2, shapes=[[8, 4], [8, 4]])
    base["layers"][1]["name"] = "blocks.0.w"
    result = evaluate(_config(RULES[0]), rep, base)
    root = ET.fromstring(to_junit(result))
    names = [c.get("name") for c in root.find("testsuite[@name='cond']").findall("testcase")]
    assert names == ["blocks.0.w", "blocks.0.w #2"]
    assert root.find(f"testsuite[@name='{SHAPE_CHANGE}']") is not None


def test_sarif_has_the_required_keys_and_stable_rule_ids():
    base = _report(shapes=[[8, 4], [8, 8], [8, 8]])
    result = evaluate(_config(*RULES), _report(), base, source="model.json")
    log = json.loads(to_sarif_json(result))
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "spectracli"
    ids = [r["id"] for r in driver["rules"]]
    assert ids == ["cond", "alpha", "attn", SHAPE_CHANGE]
    assert run["results"]
    for res in run["results"]:
        assert set(res) >= {"ruleId", "level", "message"}
        assert res["level"] in ("error", "warning")
        assert res["message"]["text"]
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
    cond = [r for r in run["results"] if r["ruleId"] == "cond"]
    physical = cond[0]["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "model.json"
    assert physical["region"]["startLine"] == 1
    assert cond[0]["locations"][0]["logicalLocations"][0]["name"] == "blocks.2.w"  # worst first
    # Ids and fingerprints do not depend on the values: the same finding next run matches.
    again = to_sarif(evaluate(_config(*RULES), _report(cond=[10, 99, 30]), base,
                              source="model.json"))
    def prints(results):
        return sorted(r["partialFingerprints"]["spectracliFinding/v1"] for r in results)

    assert prints(again["runs"][0]["results"]) == prints(run["results"])


def test_annotations_are_well_formed_escaped_and_capped_worst_first():
    n = 25
    rep = _report(n, cond=[100.0 + i for i in range(n)])
    result = evaluate(_config({"id": "cond", "metric": "condition_number", "max": 15},
                              {"id": "a", "metric": "alpha", "max": 1, "severity": "warning"}),
                      rep, source="ckpt, v2: final.safetensors")
    lines = annotations(result)
    for line in lines:
        assert ANNOTATION.match(line), line
    errors = [x for x in lines if x.startswith("::error")]
    warnings = [x for x in lines if x.startswith("::warning")]
    assert len(errors) == 10 and len(warnings) == 10  # GitHub shows 10 per type per step
    assert "blocks.24.w" in errors[0]  # the worst (largest condition number) first
    assert lines[-1].startswith("::notice") and "30 more findings" in lines[-1]
    assert "file=ckpt%2C v2%3A final.safetensors" in errors[0]


def test_workflow_command_escaping():
    assert escape_data("50% done\nnext") == "50%25 done%0Anext"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"


def test_step_summary_is_appended_as_markdown(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = evaluate(_config(RULES[0]), _report(), source="m.json")
    assert append_step_summary(result) == summary
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n")  # appended, not overwritten
    assert "gate FAILED: 2 errors" in text
    assert "| error | cond | blocks.2.w | condition_number | 30 | <= 15 |" in text
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert append_step_summary(result) is None
