"""Gate evaluation on report dicts built here: findings, numbers, order, baselines, Hessian."""

import math

import pytest

from spectracli.gate.baseline import BaselineError, make_baseline
from spectracli.gate.evaluate import (
    MISSING_LAYER,
    NEW_LAYER,
    SETTINGS_DIFFER,
    SHAPE_CHANGE,
    absolute_change,
    evaluate,
    relative_increase,
)
from spectracli.gate.rules import ConfigError, GateConfig, build_rule
from spectracli.gate.subjects import hessian_metrics


def layer(name, shape=(64, 32), aliases=(), farms_alpha=3.0, **metrics):
    out = {"name": name, "shape": list(shape), "aliases": list(aliases), "fit_status": "ok",
           "farms": {"alpha": farms_alpha, "fit_status": "ok"}}
    out.update(metrics)
    return out


def report(*layers, settings=None):
    return {"schema_version": 1, "kind": "analyze", "settings": settings or {"fit": "ks"},
            "layers": list(layers)}


def config(*rules, **kw):
    return GateConfig(rules=[build_rule(r, f"test rule {i}") for i, r in enumerate(rules)], **kw)


MODEL = report(
    layer("fc1.weight", condition_number=50.0, alpha=2.5),
    layer("fc2.weight", condition_number=400.0, alpha=1.6),
    layer("head.weight", shape=(10, 32), aliases=["embed.weight"], condition_number=math.inf,
          alpha=1.9, fit_status="too_few_eigenvalues", farms_alpha=1.2),
)


def test_min_and_max_violations_carry_the_numbers_and_sort_worst_first():
    cfg = config(
        {"id": "cond", "metric": "condition_number", "max": 100},
        {"id": "alpha", "metric": "alpha", "min": 2},
        {"id": "farms", "metric": "farms.alpha", "min": 2, "severity": "warning"},
    )
    result = evaluate(cfg, MODEL)
    rows = [(f.rule_id, f.layer, f.kind, f.value, f.threshold, f.severity)
            for f in result.findings]
    assert rows == [
        ("cond", "head.weight", "max", math.inf, 100, "error"),  # infinitely beyond: first
        ("cond", "fc2.weight", "max", 400.0, 100, "error"),  # 400/100 - 1 = 3
        ("alpha", "fc2.weight", "min", 1.6, 2, "error"),  # 2/1.6 - 1 = 0.25
        ("farms", "head.weight", "min", 1.2, 2, "warning"),
        # a fit that is not ok: its alpha 1.9 neither fails min 2 nor passes, a finding of its own
        ("alpha", "head.weight", "fit_not_ok", 1.9, None, "warning"),
    ]
    by = {(f.rule_id, f.layer): f for f in result.findings}
    assert by[("cond", "fc2.weight")].excess == pytest.approx(3.0)
    assert by[("alpha", "fc2.weight")].excess == pytest.approx(0.25)
    assert "fc2.weight: condition_number = 400 > max 100" in by[("cond", "fc2.weight")].message
    assert "not checked: the fit is too_few_eigenvalues" in by[("alpha", "head.weight")].message
    assert result.n_errors == 3 and result.n_warnings == 2
    assert result.exit_code() == 1 and result.exit_code(exit_zero=True) == 0
    # One check per (rule, layer): 3 rules x 3 layers.
    assert len(result.checks) == 9
    statuses = {(c.rule_id, c.layer): c.status for c in result.checks}
    assert statuses[("cond", "fc1.weight")] == "pass"
    assert statuses[("alpha", "head.weight")] == "warning"


def test_globs_exclude_and_tied_weight_aliases():
    cfg = config(
        {"id": "fc", "metric": "condition_number", "max": 1, "match": "fc*",
         "exclude": "fc2.*"},
        {"id": "tied", "metric": "condition_number", "max": 1, "match": "embed.*"},
    )
    result = evaluate(cfg, MODEL)
    assert {(f.rule_id, f.layer) for f in result.findings} == {
        ("fc", "fc1.weight"), ("tied", "head.weight")}


def test_a_glob_matching_nothing_is_a_listed_warning_that_fails_only_when_strict():
    cfg = config({"id": "attn", "metric": "alpha", "min": 2, "match": "blocks.*.attn"})
    result = evaluate(cfg, MODEL)
    (finding,) = result.findings
    assert (finding.kind, finding.severity) == ("unmatched", "warning")
    assert "no layer matches blocks.*.attn among 3 layers" in finding.message
    assert result.exit_code() == 0
    assert result.exit_code(strict=True) == 1


def test_a_layer_with_nonfinite_weights_says_so():
    rep = report(layer("bad", status="nonfinite", condition_number=None, alpha=None))
    result = evaluate(config({"metric": "condition_number", "max": 10}), rep)
    (finding,) = result.findings
    assert finding.kind == "no_value" and "(layer status: nonfinite)" in finding.message
    # NaN/Inf weights fail the gate whatever missing_value says (a fresh user's NaN checkpoint
    # passed with warnings).
    assert finding.severity == "error" and result.exit_code() == 1
    lenient = evaluate(config({"metric": "condition_number", "max": 10}, missing_value="ignore"),
                       rep)
    assert [f.severity for f in lenient.findings] == ["error"]


@pytest.mark.parametrize("policy, kinds", [("ignore", []), ("error", ["error"]),
                                           ("warning", ["warning"])])
def test_missing_value_policy(policy, kinds):
    model = report(layer("head.weight", alpha=None, fit_status="ok"))
    cfg = config({"metric": "alpha", "min": 0, "match": "head.*"}, missing_value=policy)
    result = evaluate(cfg, model)
    assert [(f.kind, f.severity) for f in result.findings] == [("no_value", k) for k in kinds]
    if policy == "ignore":
        assert [c.status for c in result.checks] == ["skipped"]


@pytest.mark.parametrize("policy, kinds", [("ignore", []), ("error", ["error"]),
                                           ("warning", ["warning"])])
def test_fit_not_ok_policy_never_judges_the_number(policy, kinds):
    # alpha 1.9 from a too_few_eigenvalues fit: neither fails min 2 nor passes max 5
    cfg = config({"id": "lo", "metric": "alpha", "min": 2, "match": "head.*"},
                 {"id": "hi", "metric": "alpha", "max": 5, "match": "head.*"},
                 fit_not_ok=policy)
    result = evaluate(cfg, MODEL)
    assert [(f.kind, f.severity) for f in result.findings] == [("fit_not_ok", k) for k in kinds]*2
    statuses = [c.status for c in result.checks]
    assert "pass" not in statuses
    if policy == "ignore":
        assert statuses == ["skipped", "skipped"]
        assert "is not judged (fit too_few_eigenvalues)" in result.checks[0].messages[0]


def test_baseline_fit_not_ok_is_its_own_finding():
    base = report(layer("a", alpha=3.0, fit_status="no_power_law"))
    now = report(layer("a", alpha=3.5))
    cfg = config({"id": "drift", "metric": "alpha", "max_abs_change": 0.1})
    (finding,) = evaluate(cfg, now, base).findings
    assert finding.kind == "fit_not_ok" and "the baseline's fit is no_power_law" in finding.message


def test_relative_and_absolute_change_against_a_baseline():
    base = report(layer("a", condition_number=100.0, alpha=4.0),
                  layer("b", condition_number=100.0, alpha=4.0))
    now = report(layer("a", condition_number=140.0, alpha=3.5),  # +40%, alpha -0.5
                 layer("b", condition_number=160.0, alpha=2.9))  # +60%, alpha -1.1
    cfg = config(
        {"id": "cond-drift", "metric": "condition_number", "max_rel_increase": 0.5},
        {"id": "alpha-drift", "metric": "alpha", "max_abs_change": 1.0},
    )
    result = evaluate(cfg, now, base)
    assert [(f.rule_id, f.layer) for f in result.findings] == [
        ("cond-drift", "b"), ("alpha-drift", "b")]
    cond, alpha = result.findings
    assert (cond.value, cond.baseline, cond.threshold) == (160.0, 100.0, 0.5)
    assert cond.excess == pytest.approx(0.6 / 0.5 - 1)
    assert "rose from 100 to 160 (+60.0%; at most +50.0% allowed)" in cond.message
    assert cond.limit_text == "<= 150 (+50% of 100)"
    assert alpha.baseline == 4.0 and "by 1.1; at most 1 allowed" in alpha.message
    # The same report against itself passes every baseline rule.
    assert evaluate(cfg, now, now).findings == []


def test_change_formulas():
    assert relative_increase(160.0, 100.0) == pytest.approx(0.6)
    assert relative_increase(-50.0, -100.0) == pytest.approx(0.5)  # relative to |base|
    assert relative_increase(1.0, 0.0) == math.inf
    assert relative_increase(math.inf, 10.0) == math.inf
    assert relative_increase(math.inf, math.inf) == 0.0
    assert absolute_change(2.9, 4.0) == pytest.approx(1.1)
    assert absolute_change(math.inf, math.inf) == 0.0


def test_layer_set_changes_against_a_baseline():
    base = report(layer("a", condition_number=1.0), layer("b", condition_number=1.0),
                  layer("gone", condition_number=1.0))
    now = report(layer("a", condition_number=1.0), layer("b", shape=(64, 48),
                                                         condition_number=9.0),
                 layer("added", condition_number=1.0))
    cfg = config({"id": "drift", "metric": "condition_number", "max_rel_increase": 0.1})
    result = evaluate(cfg, now, base)
    kinds = [(f.rule_id, f.layer, f.severity) for f in result.findings]
    assert kinds == [
        (SHAPE_CHANGE, "b", "error"),  # errors of the layer-set group, by layer name
        (MISSING_LAYER, "gone", "error"),
        (NEW_LAYER, "added", "warning"),
    ]  # no drift finding for b: a reshaped layer is not compared
    shape = result.findings[0]
    assert "shape [64, 32] in the baseline, [64, 48] now" in shape.message
    relaxed = config({"id": "drift", "metric": "condition_number", "max_rel_increase": 0.1},
                     missing_layers="ignore", new_layers="ignore")
    assert [f.rule_id for f in evaluate(relaxed, now, base).findings] == [SHAPE_CHANGE]


def test_baseline_of_another_model_or_kind_is_refused():
    cfg = config({"metric": "alpha", "min": 1})
    other = report(layer("encoder.0.weight", alpha=3.0))
    with pytest.raises(BaselineError, match="shares no layer with the input.*another model"):
        evaluate(cfg, MODEL, other, baseline_source="b.json")
    with pytest.raises(BaselineError, match="is a hessian report but the input is an analyze"):
        evaluate(cfg, MODEL, {"kind": "hessian", "eigenvalues": [1.0]})


def test_baseline_rule_without_baseline_is_a_config_error():
    cfg = config({"id": "d", "metric": "alpha", "max_abs_change": 1})
    with pytest.raises(ConfigError, match="rule 'd' compares with a baseline.*--baseline"):
        evaluate(cfg, MODEL)


def test_different_analysis_settings_are_a_warning():
    cfg = config({"metric": "alpha", "max": 100})
    base = dict(MODEL, settings={"fit": "median", "device": "cuda"})
    result = evaluate(cfg, MODEL, base)
    (differ,) = [f for f in result.findings if f.kind not in ("no_value", "fit_not_ok")]
    assert (differ.rule_id, differ.severity) == (SETTINGS_DIFFER, "warning")
    assert "fit: 'median' in the baseline, 'ks' now" in differ.message
    assert "device" not in differ.message  # the device changes no number


def test_make_baseline_drops_esd_samples_and_records_provenance():
    rep = report(dict(layer("a", alpha=3.0), esd={"values": [1.0, 2.0]}))
    rep["layers"][0]["farms"]["esd"] = {"values": [1.0]}
    out = make_baseline(rep, "ckpt.safetensors")
    assert out["layers"][0]["esd"] is None and out["layers"][0]["farms"]["esd"] is None
    assert out["baseline"]["from"] == "ckpt.safetensors"
    assert rep["layers"][0]["esd"] == {"values": [1.0, 2.0]}  # the input is not modified


HESSIAN = {
    "schema_version": 1, "kind": "hessian", "eigenvalues": [42.0, 17.0, 3.0, -0.5],
    "residuals": [1e-9, 3e-8, 2e-7, 1e-6], "hvp_count": 40, "n_params": 50890, "loss": 0.12,
    "grad_norm": 0.03, "condition_number": None, "edge_of_stability": 1.05,
    "trace": {"estimate": 123.0, "stderr": 4.0}, "density": {"bulk_edge": 2.5, "n_outliers": 3},
}


def test_hessian_report_is_one_pseudo_layer():
    metrics = hessian_metrics(HESSIAN)
    assert metrics["lambda_max"] == 42.0 and metrics["lambda_min"] == -0.5
    assert metrics["trace"] == 123.0 and metrics["trace_stderr"] == 4.0
    assert metrics["n_outliers"] == 3 and metrics["bulk_edge"] == 2.5
    assert metrics["max_residual"] == 1e-6 and metrics["edge_of_stability"] == 1.05
    cfg = config(
        {"id": "sharp", "metric": "lambda_max", "max": 40, "match": "hessian"},
        {"id": "eos", "metric": "edge_of_stability", "max": 1.0, "severity": "warning"},
        {"id": "cond-layers", "metric": "condition_number", "max": 10},  # analyze rule
    )
    result = evaluate(cfg, HESSIAN)
    assert [(f.rule_id, f.layer, f.value) for f in result.findings] == [
        ("sharp", "hessian", 42.0), ("eos", "hessian", 1.05)]
    assert [r.id for r in result.not_applicable] == ["cond-layers"]
    # The report's own null wins: the top-k's smallest must not pose as the Hessian's lambda_min.
    assert hessian_metrics(dict(HESSIAN, lambda_min=None))["lambda_min"] is None
    # A Hessian baseline of a model with another parameter count is a shape change.
    base = dict(HESSIAN, n_params=1000)
    shapes = [f for f in evaluate(cfg, HESSIAN, base).findings if f.rule_id == SHAPE_CHANGE]
    assert shapes and shapes[0].layer == "hessian"
