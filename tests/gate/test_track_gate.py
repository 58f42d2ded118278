"""gate on track reports: min/max on the last step, trends between consecutive steps, stretches
of steps below a threshold (max_steps_below). Truths: hand-made series with known answers."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spectracli.cli.app import app
from spectracli.gate.evaluate import evaluate
from spectracli.gate.render import verdict
from spectracli.gate.rules import ConfigError, GateConfig, build_rule
from spectracli.gate.trends import steps_below


def _layer(name: str, **metrics) -> dict:
    out = {"name": name, "kind": "linear", "shape": [8, 8], "status": "ok", "warnings": [],
           "aliases": [], "fit_status": "ok", "farms": None}
    out.update(metrics)
    return out


def _track(series: dict[str, dict[str, list]], steps: list[int], hessian=None) -> dict:
    out = []
    for i, step in enumerate(steps):
        layers = [_layer(name, **{m: v[i] for m, v in metrics.items()})
                  for name, metrics in series.items()]
        h = None
        if hessian is not None:
            h = {"kind": "hessian", "eigenvalues": [hessian[i]], "residuals": [1e-9],
                 "lambda_max": hessian[i], "n_params": 100, "settings": {}}
        out.append({"step": step, "source": {"path": f"ckpt-{step}"}, "layers": layers,
                    "skipped": [], "summary": {}, "hessian": h})
    return {"schema_version": 1, "kind": "track", "settings": {"analyze": {}}, "steps": out,
            "source": {"run": "run"}}


def _rules(*raws: dict) -> GateConfig:
    return GateConfig(rules=[build_rule(r, f"rule {i}") for i, r in enumerate(raws)])


def test_min_and_max_apply_to_the_last_step():
    report = _track({"a": {"alpha": [1.5, 3.0, 3.0]}, "b": {"alpha": [3.0, 3.0, 1.0]}},
                    [10, 20, 30])
    result = evaluate(_rules({"metric": "alpha", "min": 2.0}), report)
    assert result.report_kind == "track"
    assert [(f.layer, f.kind) for f in result.findings] == [("b", "min")]
    assert result.findings[0].message.startswith("step 30: b: alpha = 1")
    assert {c.layer: c.status for c in result.checks} == {"a": "pass", "b": "fail"}
    assert result.exit_code() == 1


def test_max_rel_increase_compares_consecutive_steps():
    report = _track({"a": {"sigma_max": [1.0, 1.1, 2.0, 2.1]}}, [1, 2, 3, 4])
    result = evaluate(_rules({"metric": "sigma_max", "max_rel_increase": 0.5}), report)
    assert [f.kind for f in result.findings] == ["max_rel_increase"]
    assert result.findings[0].message.startswith("steps 2 -> 3: a: sigma_max rose from 1.1 to 2")
    assert [(c.layer, c.status) for c in result.checks] == [("a", "fail")]
    ok = evaluate(_rules({"metric": "sigma_max", "max_rel_increase": 0.9}), report)
    assert ok.findings == [] and ok.exit_code() == 0


def test_hessian_trend_on_the_pseudo_layer():
    report = _track({"a": {"alpha": [3.0, 3.0, 3.0]}}, [1, 2, 3], hessian=[1.0, 1.2, 3.0])
    result = evaluate(_rules({"metric": "lambda_max", "match": "hessian",
                              "max_rel_increase": 0.5, "max": 2.5}), report)
    kinds = sorted((f.kind, f.message.split(":")[0]) for f in result.findings)
    assert kinds == [("max", "step 3"), ("max_rel_increase", "steps 2 -> 3")]
    assert result.n_layers == 2  # the last step's layer and its Hessian


def test_steps_below_counts_the_longest_stretch():
    values = [(1, 1.9), (2, 1.8), (3, 3.0), (4, 1.5), (5, 1.4), (6, 1.3), (7, None), (8, 1.0)]
    assert steps_below(values, 2.0) == (3, 4, 6)
    assert steps_below([(1, 3.0)], 2.0) == (0, 0, 0)


@pytest.mark.parametrize("allowed, failed", [(2, True), (3, False)])
def test_max_steps_below_over_the_run(allowed, failed):
    alpha = [1.9, 1.8, 3.0, 1.5, 1.4, 1.3, 3.0]
    report = _track({"a": {"alpha": alpha}, "b": {"alpha": [3.0] * 7}}, list(range(0, 70, 10)))
    result = evaluate(_rules({"metric": "alpha", "min": 2.0, "max_steps_below": allowed}), report)
    statuses = {c.layer: c.status for c in result.checks}
    assert statuses == {"a": "fail" if failed else "pass", "b": "pass"}
    if failed:
        (f,) = result.findings
        assert f.kind == "max_steps_below"
        assert f.message == ("a: alpha below 2 for 3 consecutive steps (30 to 50; at most 2 "
                             "allowed)")
    else:
        assert result.findings == []  # the last step (3.0) is above min too


def test_a_failed_fit_ends_a_stretch():
    report = _track({"a": {"alpha": [1.0, 1.0, 1.0, 1.0],
                           "fit_status": ["ok", "ok", "failed: tail too short", "ok"]}},
                    [1, 2, 3, 4])
    result = evaluate(_rules({"metric": "alpha", "min": 2.0, "max_steps_below": 2}), report)
    assert [c.status for c in result.checks] == ["pass"]


def test_max_steps_below_needs_min_and_is_only_for_track_reports(analyze_report):
    with pytest.raises(ConfigError, match="needs 'min'"):
        build_rule({"metric": "alpha", "max": 5, "max_steps_below": 2}, "r")
    with pytest.raises(ConfigError, match="integer >= 0"):
        build_rule({"metric": "alpha", "min": 2, "max_steps_below": 1.5}, "r")
    result = evaluate(_rules({"metric": "alpha", "min": 2.0, "max_steps_below": 2}),
                      analyze_report)
    assert [r.id for r in result.not_applicable] == ["alpha"] and result.checks == []


def test_cli_gate_on_a_saved_track_report(tmp_path):
    report = _track({"fc1.weight": {"alpha": [3.0, 1.5, 1.4, 1.3]}}, [5, 10, 20, 40])
    path = tmp_path / "track.json"
    path.write_text(json.dumps(report))
    config = tmp_path / "spectracli.toml"
    config.write_text('[[gate.rules]]\nmetric = "alpha"\nmin = 1.0\nmax_steps_below = 2\n')
    runner = CliRunner()
    res = runner.invoke(app, ["gate", str(path), "--config", str(config), "-f", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["report_kind"] == "track"
    assert data["findings"] == []  # never below 1.0
    config.write_text('[[gate.rules]]\nmetric = "alpha"\nmin = 2.0\nmax_steps_below = 2\n')
    res = runner.invoke(app, ["gate", str(path), "--config", str(config), "--junit",
                              str(tmp_path / "j.xml")])
    assert res.exit_code == 1, res.output
    assert "3 steps below (10 to 40), lowest 1.3" in res.output
    junit = (tmp_path / "j.xml").read_text()
    assert "<failure" in junit and "3 consecutive steps (10 to 40" in junit


def _with_hessian_settings(report: dict, outcomes: list[dict]) -> dict:
    for step, extra in zip(report["steps"], outcomes, strict=True):
        step["hessian"]["settings"] = {"tol": 1e-6, "k": 1, **extra}
    return report


def test_solver_outcomes_are_not_differing_settings():
    """deflation_hvps, n_restarts, n_deflations say what Lanczos did, not what was asked."""
    report = _with_hessian_settings(
        _track({"a": {"sigma_max": [1.0, 1.0, 1.0]}}, [1, 2, 3], hessian=[1.0, 1.0, 1.0]),
        [{"deflation_hvps": d, "n_restarts": r, "n_deflations": r} for d, r in
         ((17, 0), (23, 1), (17, 2))])
    rules = _rules({"metric": "lambda_max", "match": "hessian", "max_rel_increase": 0.5})
    result = evaluate(rules, report)
    assert [f.kind for f in result.findings] == []
    assert [(c.layer, c.status) for c in result.checks] == [("hessian", "pass")]
    report["steps"][2]["hessian"]["settings"]["tol"] = 1e-4  # a real setting still differs
    result = evaluate(rules, report)
    assert [f.kind for f in result.findings] == ["settings_differ"]
    assert "tol: 1e-06 in the baseline, 0.0001 now" in result.findings[0].message


def test_a_rule_matching_in_one_view_is_not_unmatched_and_counts_its_checks():
    """A layer glob on a metric both views have (condition_number) matches the weights, not the
    Hessian pseudo-layer: no 'matched nothing' note, one check per matched layer; a glob that
    matches nothing anywhere gives one note, not one per view or pair of steps."""
    report = _track({"fc1": {"condition_number": [1.0, 1.0, 1.0]},
                     "fc2": {"condition_number": [1.0, 1.0, 1.0]},
                     "head": {"condition_number": [1.0, 1.0, 1.0]}}, [1, 2, 3],
                    hessian=[1.0, 1.0, 1.0])
    for raw in ({"metric": "condition_number", "match": "fc*", "max": 10.0},
                {"metric": "condition_number", "match": "fc*", "max_rel_increase": 0.5}):
        rule = build_rule(raw, "r")
        rule.report = "any"  # as --max condition_number@fc*=10 builds it
        result = evaluate(GateConfig(rules=[rule]), report)
        assert result.findings == []
        assert sorted(c.layer for c in result.checks) == ["fc1", "fc2"]
        # the count names the Hessian pseudo-layer apart (it read as one layer too many)
        assert "(2 checks on 3 layers and the Hessian, 1 rule)" in verdict(result)
    rule = build_rule({"metric": "condition_number", "match": "nope*",
                       "max_rel_increase": 0.5}, "r")
    rule.report = "any"
    result = evaluate(GateConfig(rules=[rule]), report)
    assert [f.kind for f in result.findings] == ["unmatched"]
    assert [c.layer for c in result.checks] == [None]


def test_cli_default_drift_checks_of_a_track_baseline(tmp_path):
    report = _track({"a": {"sigma_max": [1.0, 1.0], "condition_number": [2.0, 2.0],
                           "alpha": [3.0, 3.0]}}, [1, 2], hessian=[1.0, 1.0])
    base, now = tmp_path / "base.json", tmp_path / "now.json"
    base.write_text(json.dumps(report))
    report["steps"][-1]["layers"][0]["sigma_max"] = 2.0
    now.write_text(json.dumps(report))
    res = CliRunner().invoke(app, ["gate", str(now), "--baseline", str(base), "-f", "json"])
    assert res.exit_code == 0, res.output  # drift defaults are warnings
    assert ("drift of sigma_max +10%, condition_number +25%, alpha +-0.5, lambda_max +10%"
            in res.stderr)
    data = json.loads(res.stdout)
    assert {f["rule"] for f in data["findings"]} == {"default.sigma_max-drift"}
    # one check per rule and layer: three on layer a, lambda_max on the Hessian
    assert data["counts"]["checks"] == 4 and data["counts"]["layers"] == 2
