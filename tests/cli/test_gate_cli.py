"""`spectracli gate` / `baseline` end to end on the shipped sample model, through CliRunner.

The sample MLP is analysed once per module (by `spectracli baseline`, whose output is itself a
report), plus once a copy whose fc2.weight is scaled by 2: its sigma_max doubles exactly, an
independent answer for the baseline drift rules. Most tests gate the saved reports.
"""

import json
import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spectracli.cli.app import app
from spectracli.gate.evaluate import fmt
from spectracli.results import load_report

SAMPLE = Path(__file__).resolve().parents[2] / "sample_models" / "digits_mlp.safetensors"
ANNOTATION = re.compile(r"^::(error|warning|notice)( [a-z]+=[^,:\n]*(,[a-z]+=[^,:\n]*)*)?::[^\n]+$")
runner = CliRunner()


def gate(*args):
    return runner.invoke(app, ["gate", *map(str, args)])


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    from safetensors.torch import load_file, save_file

    d = tmp_path_factory.mktemp("gate")
    base = d / "baseline.json"
    res = runner.invoke(app, ["baseline", str(SAMPLE), "--output", str(base), "--no-config",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.stderr
    tensors = load_file(str(SAMPLE))
    tensors["fc2.weight"] = tensors["fc2.weight"] * 2
    scaled_ckpt = d / "scaled.safetensors"
    save_file(tensors, str(scaled_ckpt))
    scaled = d / "scaled.json"
    res = runner.invoke(app, ["baseline", str(scaled_ckpt), "-o", str(scaled), "--no-config",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.stderr
    return {"base": base, "scaled": scaled, "scaled_ckpt": scaled_ckpt, "dir": d}


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    # Config discovery walks up from the working directory: keep it inside tmp_path.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


def layers(path):
    return {layer["name"]: layer for layer in load_report(path)["layers"]}


def write_config(directory, body):
    path = directory / "spectracli.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_baseline_file_is_a_report_without_esd_samples(reports):
    data = load_report(reports["base"])
    assert data["kind"] == "analyze" and data["baseline"]["from"] == str(SAMPLE)
    assert set(layers(reports["base"])) == {"fc1.weight", "fc2.weight", "head.weight"}
    assert all(layer["esd"] is None for layer in data["layers"])


def test_passing_config_exits_0(reports, workdir):
    lay = layers(reports["base"])
    worst = max(layer["condition_number"] for layer in lay.values())
    write_config(workdir, f"""
        [[gate.rules]]
        id = "cond"
        metric = "condition_number"
        max = {worst * 1.01}
        [[gate.rules]]
        metric = "sigma_max"
        min = 0
    """)
    res = gate(reports["base"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "gate passed: 0 errors, 0 warnings (6 checks on 3 layers, 2 rules)" in res.stdout


def test_failing_config_exits_1_naming_layer_and_numbers(reports, workdir):
    lay = layers(reports["base"])
    cond = {name: layer["condition_number"] for name, layer in lay.items()}
    worst = max(cond, key=cond.get)
    limit = round(cond[worst] * 0.9, 3)  # only the worst layer is above it
    assert sorted(cond.values())[-2] < limit
    write_config(workdir, f"""
        [[gate.rules]]
        id = "cond"
        metric = "condition_number"
        max = {limit}
    """)
    res = gate(reports["base"])
    assert res.exit_code == 1
    row = next(line for line in res.stdout.splitlines() if line.startswith("error"))
    assert worst in row and fmt(cond[worst]) in row and f"<= {fmt(limit)}" in row
    assert "(+11%)" in row  # 1/0.9 - 1 = 11.1%
    assert "gate FAILED: 1 error" in res.stdout
    assert gate(reports["base"], "--exit-zero").exit_code == 0


def test_quick_rules_without_a_config_file(reports, workdir):
    res = gate(reports["base"], "--max", "condition_number=1e9", "--min", "farms.alpha@fc*=0")
    assert res.exit_code == 0, res.stderr
    res = gate(reports["base"], "--max", "sigma_max@head.*=1e-3")
    assert res.exit_code == 1 and "head.weight" in res.stdout and "fc1" not in res.stdout


@pytest.mark.parametrize(
    "body, expected",
    [
        ('[[gate.rules]]\nmetric = "alpha"\nmaxx = 3\n', "unknown key 'maxx'"),
        ('[[gate.rules]]\nmetric = "alhpa"\nmax = 3\n', "key 'metric': unknown metric 'alhpa'"),
        ('[[gate.rules]]\nmetric = "alpha"\nmin = 5\nmax = 3\n', "min 5 is above max 3"),
        ('[[gate.rules]\nmetric = "alpha"\n', "malformed TOML"),
        ('[analyze]\nfit = 3\n[[gate.rules]]\nmetric = "alpha"\nmax = 3\n', "key 'fit'"),
    ],
)
def test_broken_config_exits_2_naming_the_key(reports, workdir, body, expected):
    path = write_config(workdir, body)
    res = gate(reports["base"])
    assert res.exit_code == 2
    assert res.stderr.startswith("spectracli: error: ")
    assert str(path) in res.stderr and expected in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_no_rules_and_missing_baseline_exit_2(reports, workdir):
    res = gate(reports["base"])
    assert res.exit_code == 2 and "no rules to check" in res.stderr
    res = gate(reports["base"], "--max-rel-increase", "sigma_max=0.1")
    assert res.exit_code == 2 and "compares with a baseline" in res.stderr
    res = gate(reports["base"], "--max", "alpha=9", "--baseline", workdir / "nope.json")
    assert res.exit_code == 2 and "nope.json: no such report file" in res.stderr


def test_unreadable_inputs_exit_2_with_one_line(reports, workdir):
    (workdir / "notes.json").write_text('{"hello": 1}')
    (workdir / "broken.safetensors").write_bytes(b"\x00" * 12)
    for target, expected in (("missing.safetensors", "missing.safetensors"),
                             ("notes.json", "not a spectracli report"),
                             ("broken.safetensors", "broken.safetensors")):
        res = gate(workdir / target, "--max", "alpha=9")
        assert res.exit_code == 2, res.stdout
        assert expected in res.stderr and res.stderr.count("\n") == 1
    res = gate(reports["base"], "--max", "alpha=9", "--baseline", SAMPLE)
    assert res.exit_code == 2 and "is not a saved report (.json)" in res.stderr
    res = gate(reports["base"], "--max", "alpha=9", "--format", "xml")
    assert res.exit_code == 2 and "--format must be one of 'table', 'json'" in res.stderr
    res = gate(reports["base"], "--max", "alpha=9", "--format", "json", "--github")
    assert res.exit_code == 2 and "write the JSON with --output FILE" in res.stderr


def test_baseline_drift_beyond_the_ratio_fails_and_within_passes(reports, workdir):
    before, after = layers(reports["base"]), layers(reports["scaled"])
    # Scaling W by 2 doubles sigma_max exactly; other layers are untouched.
    assert after["fc2.weight"]["sigma_max"] == pytest.approx(2 * before["fc2.weight"]["sigma_max"],
                                                             rel=1e-9)
    assert after["fc1.weight"]["sigma_max"] == pytest.approx(before["fc1.weight"]["sigma_max"],
                                                             rel=1e-12)
    res = gate(reports["scaled"], "--baseline", reports["base"], "--max-rel-increase",
               "sigma_max=0.5")
    assert res.exit_code == 1
    errors = [line for line in res.stdout.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "fc2.weight" in errors[0]
    assert "+100.0% vs +50.0% allowed" in errors[0]
    res = gate(reports["scaled"], "--baseline", reports["base"], "--max-rel-increase",
               "sigma_max=1.5", "--format", "json")
    assert res.exit_code == 0, res.stdout
    assert json.loads(res.stdout)["passed"] is True


def test_gate_on_the_checkpoint_uses_the_configs_analyze_settings(reports, workdir):
    # The config names the baseline (relative to itself) and the analysis settings.
    (workdir / "ci").mkdir()
    (workdir / "ci" / "baseline.json").write_text(reports["base"].read_text())
    write_config(workdir, """
        [analyze]
        device = "cpu"
        [gate]
        baseline = "ci/baseline.json"
        [[gate.rules]]
        id = "sigma-drift"
        metric = "sigma_max"
        max_rel_increase = 0.5
    """)
    res = gate(reports["scaled_ckpt"], "--format", "json")
    assert res.exit_code == 1, res.stderr
    out = json.loads(res.stdout)
    (finding,) = out["findings"]
    assert (finding["rule"], finding["layer"], finding["kind"]) == (
        "sigma-drift", "fc2.weight", "max_rel_increase")
    assert finding["value"] == pytest.approx(2 * finding["baseline"], rel=1e-9)


def test_baseline_from_another_model_exits_2_and_shape_change_is_an_error(reports, workdir):
    data = load_report(reports["base"])
    for layer in data["layers"]:
        layer["name"] = "encoder." + layer["name"]
    other = workdir / "other.json"
    other.write_text(json.dumps(data))
    res = gate(reports["base"], "--baseline", other, "--max", "alpha=100")
    assert res.exit_code == 2 and "shares no layer" in res.stderr
    data = load_report(reports["base"])
    data["layers"][0]["shape"] = [128, 64]
    reshaped = workdir / "reshaped.json"
    reshaped.write_text(json.dumps(data))
    res = gate(reports["base"], "--baseline", reshaped, "--max", "alpha=100")
    assert res.exit_code == 1
    assert "spectracli/shape-change" in res.stdout and "[128, 64] -> [256, 64]" in res.stdout


def test_ci_outputs_junit_sarif_github(reports, workdir, monkeypatch):
    summary = workdir / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_config(workdir, """
        [[gate.rules]]
        id = "sigma"
        metric = "sigma_max"
        max = 1e-3
        [[gate.rules]]
        id = "alpha-band"
        metric = "alpha"
        min = 0
        max = 100
        severity = "warning"
        [[gate.rules]]
        id = "attention"
        metric = "farms.alpha"
        min = 2
        match = "blocks.*.attn.*"
    """)
    res = gate(reports["base"], "--junit", workdir / "gate.xml", "--sarif",
               workdir / "gate.sarif", "--github")
    assert res.exit_code == 1, res.stderr
    annotations = [line for line in res.stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == 4  # 3 sigma errors + the unmatched-glob warning
    for line in annotations:
        assert ANNOTATION.match(line), line

    root = ET.parse(workdir / "gate.xml").getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["sigma", "alpha-band", "attention"]
    cases = suites["sigma"].findall("testcase")
    assert [c.get("name") for c in cases] == ["fc1.weight", "fc2.weight", "head.weight"]
    assert all(c.find("failure") is not None for c in cases)
    sigma = layers(reports["base"])["fc1.weight"]["sigma_max"]
    assert f"sigma_max = {fmt(sigma)} > max 0.001" in cases[0].find("failure").get("message")
    assert suites["alpha-band"].get("failures") == "0"

    log = json.loads((workdir / "gate.sarif").read_text())
    assert log["version"] == "2.1.0"
    rule_ids = [r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]]
    assert rule_ids == ["sigma", "alpha-band", "attention"]
    assert {r["ruleId"] for r in log["runs"][0]["results"]} == {"sigma", "attention"}
    assert "gate FAILED: 3 errors, 1 warning" in summary.read_text()
    # --strict: the unmatched glob's warning fails the build too.
    quick = ("--no-config", "--max", "alpha=100", "--max", "sigma_max@nothing=1")
    assert gate(reports["base"], *quick, "--strict").exit_code == 1
    assert gate(reports["base"], *quick).exit_code == 0


def test_hessian_report_is_gateable(workdir):
    report = {
        "schema_version": 1, "kind": "hessian", "eigenvalues": [12.5, 4.0, 1.0],
        "residuals": [1e-9, 1e-8, 1e-7], "hvp_count": 30, "n_params": 50890, "loss": 0.2,
        "grad_norm": 0.01, "condition_number": None, "edge_of_stability": 0.4,
        "trace": {"estimate": 40.0, "stderr": 1.0}, "density": None,
    }
    path = workdir / "h.json"
    path.write_text(json.dumps(report))
    res = gate(path, "--max", "lambda_max=10")
    assert res.exit_code == 1 and "hessian" in res.stdout and "12.5" in res.stdout
    assert gate(path, "--max", "lambda_max=20", "--max", "edge_of_stability=1").exit_code == 0


def test_a_real_hessian_report_is_gated_on_its_closed_form(workdir):
    # Linear regression with the MSE (1/n) sum 1/2 (f(x) - y)^2 (spectracli.hessian.losses):
    # H = A^T A / n with A = [X, 1], known exactly.
    import numpy as np
    import torch

    from spectracli.hessian import HessianConfig, analyze
    from spectracli.results import dumps_report

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(64, 1, generator=gen, dtype=torch.float64)
    model = torch.nn.Linear(4, 1).double()
    a = np.hstack([x.numpy(), np.ones((64, 1))])
    exact = np.linalg.eigvalsh(a.T @ a / 64)  # ascending
    result = analyze(model, (x, y), "mse",
                     HessianConfig(k=1, which="both", dtype="float64", device="cpu"))
    path = workdir / "h.json"
    path.write_text(dumps_report(result.to_dict()))
    hi, lo = exact[-1], exact[0]
    res = gate(path, "--format", "json", "--max", f"lambda_max={hi * 0.99}",
               "--min", f"lambda_min={lo * 0.5}", "--max", f"condition_number={hi / lo * 1.01}")
    assert res.exit_code == 1, res.stderr
    (finding,) = json.loads(res.stdout)["findings"]
    assert (finding["layer"], finding["metric"]) == ("hessian", "lambda_max")
    assert finding["value"] == pytest.approx(hi, rel=1e-8)  # Lanczos on a 5x5 operator is exact
    res = gate(path, "--max", f"lambda_max={hi * 1.01}", "--min", f"lambda_min={lo * 0.99}")
    assert res.exit_code == 0, res.stdout
