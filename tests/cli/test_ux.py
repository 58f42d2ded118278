"""What a new user sees: tables that fit the terminal, --help, one-line errors, wording.

Truths: the terminal width (no line may exceed it), the numbers of the report (each printed
whole), the choices defined in spectracli.options, and the AnalyzeConfig dataclass fields.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import re

import pytest
import torch
from report_fixtures import build_analyze_report
from rich.console import Console
from safetensors.torch import save_file
from typer.testing import CliRunner

from spectracli.analyze import AnalyzeConfig, analyze_checkpoint
from spectracli.cli.app import app
from spectracli.errors import SpectraError
from spectracli.options import (
    BuiltinLoss,
    Dtype,
    FitMethod,
    HvpMode,
    Operator,
    Which,
    check_device,
)
from spectracli.report.numbers import fmt_num
from spectracli.report.text import display_path, plural, shorten_middle
from spectracli.results import summarize

SAMPLE = "sample_models/digits_mlp.safetensors"
runner = CliRunner()
WIDTHS = (60, 80, 120)
LONG = "model.encoder.layers.11.self_attention.query_key_value.weight"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _console(width: int) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, no_color=True, highlight=False,
                   force_terminal=False), buf


def _report() -> dict:
    report = build_analyze_report(n_extra=2)
    report["layers"][0]["name"] = LONG
    report["summary"] = summarize(report["layers"], len(report["skipped"]))
    return report


def _assert_fits(text: str, width: int) -> None:
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[\s,;()]+", text))


# ---------------------------------------------------------------------------------------------
# Tables at 60, 80 and 120 columns


@pytest.mark.parametrize("width", WIDTHS)
def test_analyze_table_fits_and_prints_every_priority_number_whole(width):
    from spectracli.report.table import print_rich

    report = _report()
    console, buf = _console(width)
    print_rich(report, console)
    text = buf.getvalue()
    _assert_fits(text, width)
    tokens = _tokens(text)
    for layer in report["layers"]:
        for value in (layer.get("sigma_max"), layer.get("condition_number"), layer.get("alpha"),
                      (layer.get("farms") or {}).get("alpha")):
            assert fmt_num(value) in tokens, (fmt_num(value), layer["name"])
    # The 61-character name is shortened in the middle (both ends kept); short names are whole.
    assert LONG not in text
    assert any(t.startswith("model.enc") and t.endswith("weight") for t in tokens)
    assert "extra.1.weight" in tokens
    console, buf = _console(200)
    print_rich(report, console)
    assert LONG in buf.getvalue()


@pytest.mark.parametrize("width", WIDTHS)
def test_gate_table_fits_and_prints_numbers_whole(width):
    from spectracli.gate import render
    from spectracli.gate.evaluate import evaluate, fmt
    from spectracli.gate.rules import GateConfig, parse_quick_rule

    report = _report()
    cfg = GateConfig(rules=[parse_quick_rule("max", "condition_number=1.5"),
                            parse_quick_rule("min", "alpha=9")])
    result = evaluate(cfg, report, source="r.json")
    assert result.findings
    console, buf = _console(width)
    render.print_table(result, console)
    text = buf.getvalue()
    _assert_fits(text, width)
    tokens = _tokens(text)
    for f in result.findings:
        if f.value is not None:
            assert fmt(f.value) in tokens
    assert "gate FAILED" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_table_fits_and_prints_numbers_whole(width):
    from spectracli.compare import compare_reports
    from spectracli.report.comparison import _summary_row, print_comparison

    a = _report()
    b = copy.deepcopy(a)
    for layer in b["layers"]:
        if layer.get("sigma_max"):
            layer["sigma_max"] *= 1.5
    result = compare_reports(a, b)
    console, buf = _console(width)
    print_comparison(result, console)
    text = buf.getvalue()
    _assert_fits(text, width)
    tokens = _tokens(text)
    for layer in result.layers:
        row = _summary_row(layer)
        assert row[4] in tokens  # sigma_max B/A, a priority column


def test_plain_output_without_a_width_keeps_every_column():
    from spectracli.report.table import render_plain

    text = render_plain(_report())
    header = next(line for line in text.splitlines() if line.startswith("layer"))
    assert header.split() == ["layer", "kind", "shape", "sigma_max", "cond", "alpha",
                              "farms_alpha", "status", "stable_rank", "ks_D", "spikes"]
    assert LONG in text


def test_summary_first_with_skipped_counted_by_reason_and_verbose_lists():
    from spectracli.report.table import render_plain

    report = _report()
    report["skipped"] = [{"name": f"l{i}.bias", "shape": [8], "reason": "1-D tensor"}
                         for i in range(5)] + [
        {"name": "conv1.weight", "shape": [32, 1], "reason": "matrix 32x1 has fewer than "
         "min_size 10 rows or columns"},
        {"name": "conv0.weight", "shape": [16, 1], "reason": "matrix 16x1 has fewer than "
         "min_size 10 rows or columns"}]
    report["summary"] = summarize(report["layers"], len(report["skipped"]))
    text = render_plain(report)
    first = text.splitlines()[0]
    assert "layers analysed, 7 tensors skipped" in first and "flagged" in first
    assert "5  1-D tensor" in text and "2  matrix has fewer than min_size 10" in text
    assert "l0.bias" not in text
    verbose = render_plain(report, verbose=True)
    assert "l0.bias: 1-D tensor" in verbose and "conv1.weight: matrix 32x1" in verbose


def test_wording_plurals_articles_paths():
    assert plural(1, "layer") + " analysed" == "1 layer analysed"
    assert plural(0, "check") == "0 checks" and plural(1, "check") == "1 check"
    from spectracli.report.text import article

    assert article("analyze") == "an analyze" and article("hessian") == "a hessian"
    assert display_path("cfg/../baseline.json") == "baseline.json"
    assert display_path("./a/b.json") == "a/b.json"
    assert display_path("../repo/x.json") == "../repo/x.json"  # as typed, not absolute
    assert shorten_middle("abcdefghij", 5) == "ab…ij" and shorten_middle("abc", 5) == "abc"


def test_one_layer_report_says_1_layer(tmp_path):
    save_file({"w": torch.randn(20, 12, dtype=torch.float64)}, str(tmp_path / "one.safetensors"))
    res = run("analyze", tmp_path / "one.safetensors", "--no-farms")
    assert res.exit_code == 0, res.output
    assert "1 layer analysed, 0 tensors skipped" in res.stdout


# ---------------------------------------------------------------------------------------------
# Options: one definition, shown in --help, any case


def test_config_file_keys_are_the_analyze_config_fields():
    from spectracli.gate.rules import ANALYZE_CHECKS, NOT_IN_CONFIG_FILES

    fields = {f.name for f in dataclasses.fields(AnalyzeConfig)}
    assert set(ANALYZE_CHECKS) == fields - set(NOT_IN_CONFIG_FILES)


def test_library_and_config_accept_the_enum_values_in_any_case(tmp_path):
    from spectracli.gate.rules import ConfigError, validate_analyze
    from spectracli.hessian.api import HessianConfig
    from spectracli.spectral.powerlaw import XMIN_METHODS

    assert XMIN_METHODS == FitMethod.values() == ("ks", "median", "peak")
    # The library takes the exact values (the CLI and config files accept any case).
    cfg = AnalyzeConfig(fit=FitMethod.MEDIAN, dtype="float32")
    cfg.validate()
    assert (cfg.fit, cfg.dtype) == ("median", "float32") and type(cfg.fit) is str
    with pytest.raises(SpectraError, match="^fit must be one of 'ks', 'median', 'peak'; "
                       "got 'mle'$"):
        AnalyzeConfig(fit="mle").validate()
    assert validate_analyze({"fit": "Peak", "device": "cuda:1"}, "f") == {
        "fit": "peak", "device": "cuda:1"}
    with pytest.raises(ConfigError, match='expected "float64" or "float32"'):
        validate_analyze({"dtype": "half"}, "f")
    h = HessianConfig(which="both", operator=Operator.GGN, dtype="float64",
                      hvp_mode="forward-over-reverse")
    h.validate()
    assert (h.which, h.operator, h.hvp_mode) == ("both", "ggn", "forward-over-reverse")
    from spectracli.layers import CONV_VIEWS
    from spectracli.options import ConvView

    assert set(ConvView.values()) == set(CONV_VIEWS)
    assert check_device("CUDA:0") == "cuda:0"
    with pytest.raises(SpectraError):
        check_device("tpu")
    from spectracli.hessian.losses import BUILTIN_LOSSES
    from spectracli.hessian.operators import HVP_MODES, OPERATORS

    assert BuiltinLoss.values() == BUILTIN_LOSSES and set(HvpMode.values()) == set(HVP_MODES)
    assert Operator.values() == tuple(OPERATORS)
    assert f"{Which.BOTH}" == "both" and str(HvpMode.FORWARD_OVER_REVERSE) == (
        "forward-over-reverse") and Dtype.parse("FLOAT64", case_sensitive=False) is Dtype.FLOAT64


@pytest.mark.parametrize("command, shown", [
    ("analyze", ["CHECKPOINT", "<table|json|csv|markdown|html>", "<ks|median|peak>",
                 "<float64|float32>", "--jobs", "auto|cpu|cuda[:N]", "<png|svg>"]),
    ("compare", ["A B", "<table|json|markdown>"]),
    ("report", ["REPORT", "<table|json|csv|markdown|html>"]),
    ("plot", ["REPORT", "DIR"]),
    ("track", ["RUN..."]),
    ("gate", ["TARGET", "<table|json|markdown>"]),
    ("hessian", ["<largest|smallest|both>", "<hessian|ggn>",
                 "<reverse-over-reverse|forward-over-reverse>",
                 "cross_entropy | token_cross_entropy | mse | model", "<module|parameter>"]),
])
def test_help_shows_plain_metavars_and_choices(command, shown):
    res = run(command, "--help")
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())
    for piece in shown:
        assert piece in text, piece
    assert "{" not in res.stdout
    if command != "track":  # (track's own choice options are still plain strings)
        assert "<str>" not in res.stdout
    if command == "analyze":
        assert "--threads" not in text  # the old spelling is a hidden alias


def test_choices_are_case_insensitive_and_old_threads_spelling_works(tmp_path):
    out = tmp_path / "r.json"
    res = run("analyze", SAMPLE, "-f", "JSON", "-o", out, "--fit", "Median", "--no-farms",
              "--threads", "1", "--dtype", "FLOAT64")
    assert res.exit_code == 0, res.output
    assert '"fit": "median"' in out.read_text()


@pytest.mark.parametrize("args, message", [
    (["analyze", SAMPLE, "--threads", "abc"], "--threads must be an integer, got 'abc'"),
    (["analyze", SAMPLE, "-j", "0"], "--jobs must be >= 1, got '0'"),
    (["analyze", SAMPLE, "-f", "xml"], "--format must be one of 'table', 'json', 'csv', "
     "'markdown', 'html'; got 'xml'"),
    (["analyze", SAMPLE, "--bogus"], "No such option: --bogus"),
    (["analyze"], "Missing argument 'CHECKPOINT'"),
    (["hessian", "--model", "m.py:f", "--data", "d.npz", "--which", "middle"],
     "--which must be one of 'largest', 'smallest', 'both'; got 'middle'"),
])
def test_every_parsing_error_is_one_line_exit_2(args, message):
    res = run(*args)
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("spectracli: error: ")
    assert message in res.stderr and "Traceback" not in res.stderr


def test_gate_markdown_format_matches_o_file(tmp_path):
    report = tmp_path / "r.json"
    assert run("analyze", SAMPLE, "-f", "json", "-o", report, "--no-farms").exit_code == 0
    md = run("gate", report, "--no-config", "--max", "alpha=100", "-f", "markdown")
    assert md.exit_code == 0 and md.stdout.startswith("### ")
    out = tmp_path / "g.md"
    res = run("gate", report, "--no-config", "--max", "alpha=100", "-o", out)
    assert res.exit_code == 0 and out.read_text() == md.stdout


# ---------------------------------------------------------------------------------------------
# Selections, wrong inputs, binary output


def test_selection_matching_nothing_is_an_error(tmp_path):
    res = run("analyze", SAMPLE, "--include", "nomatch*")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "no weight matrix of" in res.stderr and "include ['nomatch*']" in res.stderr


def test_base_matching_under_half_of_the_layers_is_an_error(tmp_path):
    g = torch.Generator().manual_seed(0)
    model = {f"l{i}.weight": torch.randn(20, 12, generator=g) for i in range(3)}
    save_file(model, str(tmp_path / "m.safetensors"))
    save_file({"l0.weight": model["l0.weight"] * 0.5, "other.weight": torch.randn(4, 4)},
              str(tmp_path / "b.safetensors"))
    with pytest.raises(SpectraError, match="matches only 1 of the 3 weight matrices"):
        analyze_checkpoint(tmp_path / "m.safetensors",
                           AnalyzeConfig(base=tmp_path / "b.safetensors"))


@pytest.mark.parametrize("command, hint", [("report", "spectracli analyze"),
                                           ("plot", "--plots")])
def test_report_and_plot_on_a_checkpoint_say_what_to_run(command, hint):
    res = run(command, SAMPLE)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "is a checkpoint" in res.stderr and hint in res.stderr


def test_html_to_a_terminal_is_refused_with_a_hint(monkeypatch, tmp_path):
    import spectracli.cli.common as common

    monkeypatch.setattr(common, "stdout_is_terminal", lambda: True)
    res = run("analyze", SAMPLE, "-f", "html")
    assert res.exit_code == 2 and "--output FILE" in res.stderr and res.stdout == ""
    out = tmp_path / "r.html"
    assert run("analyze", SAMPLE, "-f", "html", "-o", out, "--no-farms").exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_hvp_progress_expects_the_hvps_of_a_geometric_residual_decay():
    from spectracli.cli.hessian import HvpEstimate

    est = HvpEstimate(tol=1e-6)
    # residual 10^-(k/2) after k HVPs: reaches 1e-6 at k = 12, far below the cap of 300.
    totals = [est.total("lanczos", k, 300, 10 ** (-k / 2)) for k in range(1, 8)]
    assert totals[:2] == [300, 300]  # too few points to estimate
    assert all(t == 12 for t in totals[2:]), totals
    assert HvpEstimate(1e-6).total("trace", 5, 60, None) == 60


def test_hessian_without_weights_warns(tmp_path):
    res = run("hessian", "--model", "sample_models/digits.py:build_mlp", "--data",
              "sample_models/digits.npz", "--max-samples", "64", "-k", "1", "--device", "cpu",
              "-f", "json")
    assert res.exit_code == 0, res.output
    assert "warning: no --weights" in res.stderr and "initialisation" in res.stderr


def test_the_readme_gate_example_runs(tmp_path, monkeypatch):
    """The README's gate lines, with the shipped model as ckpt.safetensors and its
    `analyze -f json` report as report.json: quick rules, a baseline, the baseline's default
    checks (no rules configured) - none is a usage error."""
    import shlex
    import shutil
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## CI gate", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line.split("#")[0].split() for line in block.splitlines() if line.strip()]
    assert all(c[0] == "spectracli" for c in commands)
    assert ["spectracli", "baseline"] in [c[:2] for c in commands]
    assert commands[-1][:2] == ["spectracli", "gate"] and "--baseline" in commands[-1]
    shutil.copy(Path(__file__).resolve().parents[2] / SAMPLE, tmp_path / "ckpt.safetensors")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert run("analyze", "ckpt.safetensors", "-f", "json", "-o", "report.json").exit_code == 0
    codes = []
    for argv in commands:
        res = runner.invoke(app, argv[1:])
        assert res.exit_code in (0, 1), (shlex.join(argv), res.stderr)
        codes.append(res.exit_code)
    last = res
    assert "default checks against the baseline" in last.stderr
    assert "gate passed" in last.stdout  # the same model: no drift
    assert (tmp_path / "gate.xml").is_file() and (tmp_path / "gate.sarif").is_file()
    assert (tmp_path / "baseline.json").is_file()


def test_gate_without_rules_or_baseline_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / SAMPLE
    assert run("analyze", sample, "-f", "json", "-o", "r.json", "--no-farms").exit_code == 0
    res = run("gate", "r.json")
    assert res.exit_code == 2 and "--baseline FILE for the default drift checks" in res.stderr


def test_default_drift_checks_flag_a_scaled_layer(tmp_path):
    from spectracli.gate.evaluate import evaluate
    from spectracli.gate.rules import GateConfig, default_rules

    base = _report()
    now = copy.deepcopy(base)
    now["layers"][1]["sigma_max"] *= 1.5  # +50% > +10%
    result = evaluate(GateConfig(rules=default_rules("analyze")), now, base)
    flagged = {(f.rule_id, f.layer) for f in result.findings if f.severity == "warning"}
    assert ("default.sigma_max-drift", now["layers"][1]["name"]) in flagged
    # Drift is warnings only; the errors are the fixture's layer with NaN/Inf weights, which
    # fails a gate whatever the policy.
    errors = {f.layer for f in result.findings if f.severity == "error"}
    assert errors == {"broken.weight"} and result.exit_code() == 1


def test_report_paths_are_as_typed_and_normalised(tmp_path, monkeypatch):
    """`cfg/../baseline.json` in a config, `./x/../ckpt` on the command line: the reports name
    `baseline.json` and `ckpt.safetensors`, relative as typed, not made absolute."""
    import json
    import shutil
    from pathlib import Path

    from spectracli.gate.rules import load_config

    shutil.copy(Path(__file__).resolve().parents[2] / SAMPLE, tmp_path / "ckpt.safetensors")
    (tmp_path / "cfg").mkdir()
    monkeypatch.chdir(tmp_path)
    res = run("analyze", "./cfg/../ckpt.safetensors", "-f", "json", "-o", "r.json", "--no-farms")
    assert res.exit_code == 0, res.stderr
    assert json.loads(Path("r.json").read_text())["source"]["path"] == "ckpt.safetensors"
    (tmp_path / "cfg" / "spectracli.toml").write_text('[gate]\nbaseline = "../baseline.json"\n')
    cfg = load_config(Path("cfg/spectracli.toml"))
    assert str(cfg.baseline) == "baseline.json"
    res = run("baseline", "r.json", "-o", "cfg/../baseline.json", "--no-config")
    assert res.exit_code == 0 and "wrote baseline.json: an analyze baseline of r.json (3 layers)" \
        in res.stderr
