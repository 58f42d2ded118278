"""Gate config: TOML layouts, discovery, one-line errors naming file, key and expectation."""

import math
import re
import textwrap
from pathlib import Path

import pytest

from spectracli.gate.rules import (
    ANALYZE_KEYS,
    GATE_KEYS,
    HESSIAN_METRICS,
    RULE_KEYS,
    ConfigError,
    find_config,
    load_config,
    parse_quick_rule,
    valid_metrics,
)
from spectracli.results import LAYER_METRICS


def _write(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_pyproject_layout_reads_rules_policies_and_analyze_settings(tmp_path):
    cfg = load_config(_write(tmp_path / "pyproject.toml", """
        [project]
        name = "x"

        [tool.spectracli.analyze]
        fit = "median"
        farms = false
        base = "base.safetensors"

        [tool.spectracli.gate]
        baseline = "ci/baseline.json"
        missing_layers = "warning"
        new_layers = "ignore"

        [[tool.spectracli.gate.rules]]
        id = "cond"
        match = ["fc*", "head.*"]
        exclude = "fc3*"
        metric = "condition_number"
        max = 1e4
        max_rel_increase = 0.5

        [[tool.spectracli.gate.rules]]
        metric = "farms.alpha"
        min = 2
        max = 6
        severity = "warning"
    """))
    cond, alpha = cfg.rules
    assert (cond.id, cond.match, cond.exclude, cond.max, cond.max_rel_increase) == (
        "cond", ("fc*", "head.*"), ("fc3*",), 1e4, 0.5)
    assert cond.needs_baseline and cond.severity == "error" and cond.report == "analyze"
    # Without an id a rule is named by its metric (and its globs when not "*").
    assert (alpha.id, alpha.min, alpha.max, alpha.severity) == ("farms.alpha", 2, 6, "warning")
    assert cfg.baseline == tmp_path / "ci" / "baseline.json"  # relative to the config file
    assert (cfg.missing_layers, cfg.new_layers, cfg.missing_value) == ("warning", "ignore",
                                                                       "warning")
    assert cfg.analyze == {"fit": "median", "farms": False,
                           "base": str(tmp_path / "base.safetensors")}


def test_spectracli_toml_layout_and_hessian_rules(tmp_path):
    cfg = load_config(_write(tmp_path / "spectracli.toml", """
        [gate]
        strict = true
        [[gate.rules]]
        metric = "lambda_max"
        match = "hessian"
        max = 50
        [[gate.rules]]
        metric = "edge_of_stability"
        max = 1.0
        [[gate.rules]]
        id = "layer-lambda"
        metric = "lambda_max"
        max = 1e3
    """))
    sharp, eos, layer = cfg.rules
    assert cfg.strict
    assert sharp.report == "hessian" and eos.report == "hessian"  # by glob / hessian-only metric
    assert layer.report == "analyze"  # a metric both kinds have defaults to the layers


@pytest.mark.parametrize(
    "body, expected",
    [
        ('[[gate.rules]]\nmetric = "cond_number"\nmax = 1', [
            "spectracli.toml: [[gate.rules]] #1 key 'metric'", "unknown metric 'cond_number'",
            "did you mean 'condition_number'", "valid: sigma_max"]),
        ('[[gate.rules]]\nmetric = "alpha"\nmin = 6\nmax = 2', [
            "keys 'min'/'max'", "min 6 is above max 2"]),
        ('[[gate.rules]]\nmetric = "alpha"\nmax = "lots"', [
            "key 'max': expected a number, got 'lots'"]),
        ('[[gate.rules]]\nmetric = "alpha"', ["needs at least one of min, max"]),
        ('[[gate.rules]]\nmetric = "alpha"\nmax = 3\nseverity = "fatal"', [
            "key 'severity': expected \"error\" or \"warning\", got 'fatal'"]),
        ('[[gate.rules]]\nmetric = "alpha"\nmax = 3\nmaximum = 4', [
            "unknown key 'maximum'", "valid: id, match"]),
        ('[[gate.rules]]\nmetric = "alpha"\nmax = 3\nmatch = 7', ["key 'match': expected a glob"]),
        ('[[gate.rules]]\nmetric = "alpha"\nmax_rel_increase = -1', [
            "key 'max_rel_increase': expected a number >= 0"]),
        ('[[gate.rules]]\nmax = 3', ["missing key 'metric'"]),
        ('[[gate.rules]]\nmetric = "alpha"\nmax = 3\nreport = "hessian"', [
            "'alpha' is not a metric of hessian reports"]),
        ('[[gate.rules]]\nid = "spectracli/x"\nmetric = "alpha"\nmax = 3', ["reserved"]),
        ('[gate]\nmissing_layers = "fail"', [
            "[gate] key 'missing_layers': expected \"error\", \"warning\" or \"ignore\""]),
        ('[gate]\nrules = 3', ["[gate] key 'rules': expected an array of tables"]),
        ('[gate]\nbasline = "b.json"', ["unknown key 'basline'", "did you mean 'baseline'"]),
        ('[analyze]\nfit = "mle"', ["[analyze] key 'fit': expected \"ks\", \"median\" or"]),
        ('[analyze]\nfarms_window = 0', ["key 'farms_window': expected a positive integer"]),
        ('[analyze]\ntrust_pickle = true', ["unknown key 'trust_pickle'"]),
        ('[reports]\nx = 1', ["unknown table 'reports'"]),
        ('[[gate.rules]]\nmetric = "alpha"\nmax = 3\n[[gate.rules]]\nmetric = "alpha"\nmin = 1',
         ["duplicate rule id 'alpha'", "give each rule its own 'id'"]),
        ('[[gate.rules]]\nid = "lo"\nmetric = "alpha"\nmin = 6\n'
         '[[gate.rules]]\nid = "hi"\nmetric = "alpha"\nmax = 2',
         ["min 6 of rule 'lo' is above max 2 of rule 'hi'", "no value could pass both"]),
    ],
)
def test_config_errors_name_file_key_and_expectation(tmp_path, body, expected):
    path = _write(tmp_path / "spectracli.toml", body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for part in expected:
        assert part in message


def test_malformed_toml_names_file_and_line(tmp_path):
    text = '[gate]\nstrict = true\n[[gate.rules]\nmetric = 1\n'
    path = _write(tmp_path / "spectracli.toml", text)
    with pytest.raises(ConfigError, match=r"spectracli.toml: malformed TOML: .*line 3"):
        load_config(path)


def test_discovery_prefers_spectracli_toml_and_skips_foreign_pyproject(tmp_path):
    root = tmp_path / "repo"
    sub = root / "src" / "pkg"
    sub.mkdir(parents=True)
    _write(root / "pyproject.toml", '[tool.ruff]\nline-length = 100\n')
    assert find_config(sub) is None  # a pyproject without [tool.spectracli] is not ours
    _write(root / "pyproject.toml", '[tool.spectracli.gate]\nstrict = true\n')
    assert find_config(sub) == root / "pyproject.toml"
    _write(root / "src" / "spectracli.toml", '[gate]\n')
    assert find_config(sub) == root / "src" / "spectracli.toml"


def test_quick_rules_from_the_command_line():
    rule = parse_quick_rule("max", "condition_number=1e4")
    assert (rule.id, rule.metric, rule.max, rule.match, rule.report) == (
        "cli.max.condition_number", "condition_number", 1e4, ("*",), "any")
    rule = parse_quick_rule("min", "farms.alpha@blocks.*.attn*=2")
    assert (rule.match, rule.min) == (("blocks.*.attn*",), 2.0)
    assert parse_quick_rule("max", "condition_number=inf").max == math.inf
    with pytest.raises(ConfigError, match="--max 'condition_number': expected METRIC=VALUE"):
        parse_quick_rule("max", "condition_number")
    with pytest.raises(ConfigError, match="--min alpha=two key 'min': expected a number"):
        parse_quick_rule("min", "alpha=two")


def test_every_report_metric_is_gateable():
    assert set(LAYER_METRICS) <= set(valid_metrics())
    for name in ("lambda_max", "lambda_min", "condition_number", "trace", "grad_norm", "loss",
                 "edge_of_stability", "n_outliers"):
        assert name in valid_metrics()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def test_docs_reference_every_key_and_metric():
    text = DOCS.read_text(encoding="utf-8")
    for key in (*RULE_KEYS, *GATE_KEYS, *ANALYZE_KEYS, *HESSIAN_METRICS, *LAYER_METRICS):
        assert f"`{key}`" in text, key


def test_docs_example_config_is_valid(tmp_path):
    text = DOCS.read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    cfg = load_config(_write(tmp_path / "pyproject.toml", example))
    assert [r.id for r in cfg.rules] == ["conditioning", "alpha-band", "sigma-drift", "sharpness"]
    assert cfg.rules[-1].report == "hessian"
