"""Gate rules with confidence = true: a min/max on alpha fails only when the whole alpha_ci is
past the limit; CLI --confident; configuration errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spectracli.cli.app import app
from spectracli.gate.evaluate import evaluate
from spectracli.gate.rules import ConfigError, GateConfig, build_rule, parse_quick_rule


def layer(name, alpha, ci, farms=None):
    return {"name": name, "shape": [64, 32], "status": "ok", "fit_status": "ok",
            "alpha": alpha, "alpha_ci": ci, "ci_level": 0.95,
            "farms": {"alpha": alpha, "alpha_ci": farms or ci, "fit_status": "ok"}}


REPORT = {"schema_version": 1, "kind": "analyze", "settings": {"fit": "ks"}, "layers": [
    layer("straddles_min", 1.8, [1.5, 2.2]),  # below 2, but the interval reaches above it
    layer("below_min", 1.5, [1.2, 1.9]),  # the whole interval below 2
    layer("straddles_max", 7.0, [5.5, 9.0]),
    layer("above_max", 8.0, [6.5, 9.5]),
    layer("no_interval", 1.0, None),
]}


def config(**rule):
    return GateConfig(rules=[build_rule(rule, "test rule")])


def test_confident_min_and_max_judge_the_whole_interval():
    lo = evaluate(config(metric="alpha", min=2, confidence=True), REPORT)
    kinds = {(f.layer, f.kind) for f in lo.findings}
    assert kinds == {("below_min", "min"), ("no_interval", "no_value")}
    (below,) = [f for f in lo.findings if f.kind == "min"]
    assert "whole interval [1.2, 1.9] < min 2" in below.message and below.value == 1.5
    hi = evaluate(config(metric="alpha", max=6, confidence=True), REPORT)
    assert {f.layer for f in hi.findings if f.kind == "max"} == {"above_max"}
    # Without confidence the point value decides: both straddling layers fail too.
    plain = evaluate(config(metric="alpha", min=2), REPORT)
    assert {f.layer for f in plain.findings if f.kind == "min"} == {
        "straddles_min", "below_min", "no_interval"}


def test_confidence_uses_the_farms_interval_for_farms_alpha():
    report = {**REPORT, "layers": [layer("x", 1.5, [1.2, 1.9], farms=[1.4, 2.5])]}
    assert evaluate(config(metric="alpha", min=2, confidence=True), report).findings
    assert not evaluate(config(metric="farms.alpha", min=2, confidence=True), report).findings


def test_confidence_only_where_an_interval_exists():
    with pytest.raises(ConfigError, match="confidence"):
        build_rule({"metric": "condition_number", "max": 10, "confidence": True}, "r")
    with pytest.raises(ConfigError, match="neither"):
        build_rule({"metric": "alpha", "max_abs_change": 1, "confidence": True}, "r")
    with pytest.raises(ConfigError, match="true or false"):
        build_rule({"metric": "alpha", "min": 2, "confidence": "yes"}, "r")
    assert parse_quick_rule("min", "alpha=2", confident=True).confidence
    assert not parse_quick_rule("max", "condition_number=9", confident=True).confidence


def test_cli_confident_flag(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**REPORT, "layers": REPORT["layers"][:1]}))
    runner = CliRunner()
    plain = runner.invoke(app, ["gate", str(path), "--no-config", "--min", "alpha=2"])
    assert plain.exit_code == 1, plain.output
    sure = runner.invoke(app, ["gate", str(path), "--no-config", "--min", "alpha=2",
                               "--confident"])
    assert sure.exit_code == 0, sure.output
    bad = runner.invoke(app, ["gate", str(path), "--no-config", "--max",
                              "condition_number=2", "--confident"])
    assert bad.exit_code == 2 and "--confident" in bad.output
