"""compare: per-layer deltas and ratios, largest change first, one-sided layers, and the command
on real checkpoints (itself -> zero change; one layer scaled by 2 -> exactly that layer)."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
from report_fixtures import build_analyze_report, build_hessian_report
from typer.testing import CliRunner

from spectracli.cli.app import app
from spectracli.compare import COMPARE_METRICS, MetricChange, compare_reports
from spectracli.errors import SpectraError
from spectracli.report.comparison import (
    render_comparison_json,
    render_comparison_markdown,
    render_comparison_plain,
)
from spectracli.results import dumps_report, layer_metric

MLP = "sample_models/digits_mlp.safetensors"


@pytest.fixture(scope="module")
def report_a() -> dict:
    return build_analyze_report()


def _layer(report: dict, name: str) -> dict:
    return next(la for la in report["layers"] if la["name"] == name)


def test_identical_reports_have_zero_deltas(report_a):
    result = compare_reports(report_a, copy.deepcopy(report_a))
    assert result.changed == [] and result.only_a == [] and result.only_b == []
    assert len(result.layers) == len(report_a["layers"])
    for layer in result.layers:
        for metric, change in layer.changes.items():
            if change.a is None:
                assert change.b is None and change.delta is None, (layer.name, metric)
            else:
                assert change.delta == 0 and change.ratio == 1 and change.rel_change == 0
    # inf condition number on both sides (rank-deficient layer) is no change, not NaN.
    low = next(la for la in result.layers if la.name == "low_rank.weight")
    assert low.changes["condition_number"].a == math.inf
    assert low.changes["condition_number"].delta == 0


def test_changes_are_ordered_largest_relative_change_first(report_a):
    b = copy.deepcopy(report_a)
    _layer(b, "fc1.weight")["sigma_max"] *= 2.0  # relative change 1
    _layer(b, "fc2.weight")["stable_rank"] *= 1.1  # 0.1
    _layer(b, "head.weight")["farms"]["alpha"] += 0.5 * _layer(b, "head.weight")["farms"][
        "alpha"]  # 0.5
    result = compare_reports(report_a, b)
    assert [la.name for la in result.changed] == ["fc1.weight", "head.weight", "fc2.weight"]
    assert [la.name for la in result.layers[:3]] == ["fc1.weight", "head.weight", "fc2.weight"]
    fc1 = result.layers[0]
    assert fc1.largest_metric == "sigma_max"
    s = fc1.changes["sigma_max"]
    assert s.ratio == 2.0 and s.delta == _layer(report_a, "fc1.weight")["sigma_max"]
    assert result.layers[1].largest_metric == "farms.alpha"
    assert result.layers[1].max_rel_change == pytest.approx(0.5, rel=1e-12)
    assert result.layers[2].changes["stable_rank"].ratio == pytest.approx(1.1, rel=1e-12)
    # Unchanged layers keep A's depth order after the changed ones.
    rest = [la.name for la in result.layers[3:]]
    order = [la["name"] for la in report_a["layers"]]
    assert rest == [n for n in order if n in rest]


def test_infinite_and_missing_values():
    assert MetricChange.of("c", 10.0, math.inf).rel_change == math.inf
    inf_to_finite = MetricChange.of("c", math.inf, 10.0)
    assert inf_to_finite.delta == -math.inf and inf_to_finite.rel_change == math.inf
    missing = MetricChange.of("alpha", None, 2.5)
    assert (missing.delta, missing.ratio, missing.rel_change) == (None, None, None)
    zero = MetricChange.of("x", 0.0, 1.0)
    assert zero.ratio is None and zero.rel_change == math.inf
    assert MetricChange.of("x", float("nan"), 1.0).a is None


def test_rank_deficiency_appearing_or_fit_failing_counts_as_change(report_a):
    b = copy.deepcopy(report_a)
    _layer(b, "fc2.weight")["condition_number"] = math.inf
    _layer(b, "fc1.weight")["alpha"] = None  # the fit failed in B
    result = compare_reports(report_a, b)
    assert {la.name for la in result.changed} == {"fc1.weight", "fc2.weight"}
    assert result.layers[0].name == "fc2.weight"  # infinite relative change sorts first


def test_layers_only_on_one_side_and_shape_changes(report_a):
    b = copy.deepcopy(report_a)
    removed = b["layers"].pop(0)
    b["layers"].append(dict(copy.deepcopy(b["layers"][0]), name="new.weight"))
    _layer(b, "fc2.weight")["shape"] = [64, 49]
    result = compare_reports(report_a, b)
    assert result.only_a == [removed["name"]]
    assert result.only_b == ["new.weight"]
    fc2 = next(la for la in result.layers if la.name == "fc2.weight")
    assert fc2.changed and fc2.shape_changed
    assert any("fc2.weight: shape" in w for w in result.warnings)


def test_differing_settings_are_warned(report_a):
    b = copy.deepcopy(report_a)
    b["settings"]["fit"] = "ks"
    result = compare_reports(report_a, b)
    assert any("setting 'fit' differs" in w for w in result.warnings)


def test_nothing_in_common_and_wrong_kinds_are_errors(report_a):
    b = copy.deepcopy(report_a)
    for layer in b["layers"]:
        layer["name"] = "other." + layer["name"]
    with pytest.raises(SpectraError, match="no layer in common"):
        compare_reports(report_a, b)
    with pytest.raises(SpectraError, match="hessian"):
        compare_reports(report_a, build_hessian_report())
    with pytest.raises(SpectraError, match="rtol"):
        compare_reports(report_a, report_a, rtol=-1)


def test_json_markdown_and_plain_renderings(report_a):
    b = copy.deepcopy(report_a)
    _layer(b, "head.weight")["sigma_max"] *= 3.0
    _layer(b, "head.weight")["alpha"] += 0.25
    result = compare_reports(report_a, b)

    data = json.loads(render_comparison_json(result))
    assert data["n_changed"] == 1 and data["layers"][0]["name"] == "head.weight"
    sig = data["layers"][0]["metrics"]["sigma_max"]
    assert sig["ratio"] == pytest.approx(3.0, rel=1e-12)
    low = next(la for la in data["layers"] if la["name"] == "low_rank.weight")
    assert low["metrics"]["condition_number"]["a"] == "inf"  # strict JSON

    md = render_comparison_markdown(result)
    rows = [r for r in md.splitlines() if r.startswith("| head.weight | ")]
    detail = {r.split(" | ")[1]: r for r in rows[1:]}
    assert set(detail) == {"sigma_max", "alpha"}
    cells = [c.strip() for c in detail["alpha"].strip("|").split("|")]
    a_val = _layer(report_a, "head.weight")["alpha"]
    assert float(cells[2]) == pytest.approx(a_val, rel=5e-6)
    assert float(cells[3]) == pytest.approx(a_val + 0.25, rel=5e-6)
    assert float(cells[4]) == pytest.approx(0.25, rel=5e-6)

    plain = render_comparison_plain(result)
    table_names = [ln.split()[0] for ln in plain.splitlines()[6:] if ln and
                   not ln.startswith(("warning", "only"))]
    assert table_names == [la.name for la in result.layers]


# ---------------------------------------------------------------------------------------------
# The command, on the shipped checkpoint


@pytest.fixture(scope="module")
def scaled_copy(tmp_path_factory):
    """digits_mlp with fc2.weight multiplied by 2 (exact in floating point)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(MLP)
    tensors["fc2.weight"] = tensors["fc2.weight"] * 2
    path = tmp_path_factory.mktemp("ckpt") / "scaled.safetensors"
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def mlp_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "mlp.json"
    result = CliRunner().invoke(app, ["analyze", MLP, "-f", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_checkpoint_against_itself_gives_zero_deltas(mlp_report):
    result = CliRunner().invoke(app, ["compare", MLP, str(mlp_report), "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_common"] == 3 and data["n_changed"] == 0
    assert data["only_a"] == [] and data["only_b"] == []
    for layer in data["layers"]:
        for metric in COMPARE_METRICS:
            m = layer["metrics"][metric]
            assert m["a"] is not None, (layer["name"], metric)
            assert m["delta"] == 0 and m["ratio"] == 1, (layer["name"], metric)


def test_checkpoint_with_one_layer_scaled_by_two_flags_exactly_that_layer(mlp_report,
                                                                         scaled_copy):
    result = CliRunner().invoke(app, ["compare", str(mlp_report), str(scaled_copy), "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [la["name"] for la in data["layers"] if la["changed"]] == ["fc2.weight"]
    first = data["layers"][0]
    assert first["name"] == "fc2.weight" and first["largest_metric"] == "sigma_max"
    m = first["metrics"]
    # W -> 2W: singular values double; condition number, alpha (scale-free MLE of lambda/xmin),
    # FARMS alpha and stable rank are scale invariant. Float64 solves of float32 weights
    # scaled by an exact power of two agree to rounding: 1e-9 relative is generous.
    assert m["sigma_max"]["ratio"] == pytest.approx(2.0, rel=1e-9)
    assert m["condition_number"]["ratio"] == pytest.approx(1.0, rel=1e-9)
    assert m["stable_rank"]["ratio"] == pytest.approx(1.0, rel=1e-9)
    assert m["alpha"]["delta"] == pytest.approx(0.0, abs=1e-9)
    assert m["farms.alpha"]["delta"] == pytest.approx(0.0, abs=1e-9)
    report = json.loads(mlp_report.read_text())
    fc2 = next(la for la in report["layers"] if la["name"] == "fc2.weight")
    assert m["sigma_max"]["a"] == layer_metric(fc2, "sigma_max")


def test_compare_markdown_to_file_and_table(mlp_report, scaled_copy, tmp_path):
    out = tmp_path / "cmp.md"
    result = CliRunner().invoke(app, ["compare", str(mlp_report), str(scaled_copy),
                                      "-f", "markdown", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "**1 changed**" in text
    num = r"[0-9.e+-]+"
    assert re.search(rf"\| fc2\.weight \| sigma_max \| {num} \| {num} \| {num} \| 2 \|", text)
    table = CliRunner().invoke(app, ["compare", str(mlp_report), str(mlp_report)])
    assert table.exit_code == 0 and "0 changed" in table.stdout


def test_compare_bad_inputs_one_line_exit_2(tmp_path, mlp_report):
    truncated = tmp_path / "t.json"
    truncated.write_text(mlp_report.read_text()[:100])
    hessian = tmp_path / "h.json"
    hessian.write_text(dumps_report(build_hessian_report()))
    other = json.loads(mlp_report.read_text())
    for layer in other["layers"]:
        layer["name"] = "x." + layer["name"]
    disjoint = tmp_path / "disjoint.json"
    disjoint.write_text(json.dumps(other))
    out = tmp_path / "out.txt"
    for args, message in (
        ([str(truncated), str(mlp_report)], "not valid JSON"),
        ([str(mlp_report), str(hessian)], "hessian"),
        ([str(mlp_report), str(disjoint)], "no layer in common"),
        ([str(tmp_path / "missing.safetensors"), str(mlp_report)], "missing.safetensors"),
        ([str(mlp_report), str(mlp_report), "-f", "xml"], "--format"),
    ):
        result = CliRunner().invoke(app, ["compare", *args, "-o", str(out)])
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("spectracli: error:"), result.stderr
        assert message in lines[0]
        assert not out.exists()


def test_two_checkpoints_with_no_layer_in_common(tmp_path):
    from safetensors.torch import load_file, save_file

    renamed = {f"encoder.{k}": v for k, v in load_file(MLP).items()}
    other = tmp_path / "renamed.safetensors"
    save_file(renamed, str(other))
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(app, ["compare", MLP, str(other), "--no-farms", "-f", "json",
                                      "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no layer in common" in lines[0]
    assert "A (3 layers)" in lines[0] and "B (3 layers)" in lines[0]
    assert not out.exists()


def test_changes_within_rtol_are_zero_and_print_as_zero(report_a):
    b = copy.deepcopy(report_a)
    layer = b["layers"][0]
    layer["alpha"] = layer["alpha"] * (1 + 4e-16) if layer["alpha"] else layer["alpha"]
    layer["sigma_max"] = layer["sigma_max"] * (1 - 3e-16)
    result = compare_reports(report_a, b)
    assert result.changed == []
    for change in result.layers[0].changes.values():
        assert change.delta in (0.0, None)
    assert "e-16" not in render_comparison_plain(result)
    assert MetricChange.of("alpha", 3.0, 3.0 * (1 + 1e-7), rtol=1e-6).delta == 0.0
    assert MetricChange.of("alpha", 3.0, 3.1, rtol=1e-6).delta == pytest.approx(0.1)
