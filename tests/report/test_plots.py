"""Plots: every figure is a readable image of the size it claims, drawn without pyplot, and the
drawn quantities are the report's (power law normalised to the ESD, inf marked, kinds apart)."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spectracli.cli.app import app
from spectracli.errors import SpectraError
from spectracli.report import plots
from spectracli.results import dumps_report


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk (independent of matplotlib)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def decode_png(data: bytes) -> np.ndarray:
    import io

    from matplotlib.image import imread

    return imread(io.BytesIO(data), format="png")


def _figures(analyze: dict, hessian: dict):
    layers = analyze["layers"]
    return [
        ("alpha", plots.alpha_figure(layers), (11.0, 5.5)),
        ("norms", plots.norms_figure(layers), (11.0, 7.0)),
        ("esd", plots.esd_figure(layers[:2]), (11.0, 2 * plots.ESD_ROW_IN)),
        ("hessian_eig", plots.hessian_eigenvalues_figure(hessian), (8.0, 5.0)),
        ("hessian_density", plots.hessian_density_figure(hessian), (11.0, 5.0)),
    ]


def test_every_plot_function_gives_a_readable_png_of_the_expected_size(
    analyze_report, hessian_report
):
    for name, fig, (w_in, h_in) in _figures(analyze_report, hessian_report):
        data = plots.figure_bytes(fig, "png")
        assert png_size(data) == (round(w_in * plots.DPI), round(h_in * plots.DPI)), name
        pixels = decode_png(data)
        assert pixels.shape[:2] == (round(h_in * plots.DPI), round(w_in * plots.DPI))
        # Not a blank canvas: a real figure has ink (dark pixels) on a light background.
        grey = pixels[..., :3].mean(axis=2)
        assert (grey < 0.5).mean() > 0.002, name
        assert pixels[..., :3].std() > 0.05, name


def test_svg_output_is_well_formed_with_the_figure_size(analyze_report):
    data = plots.figure_bytes(plots.alpha_figure(analyze_report["layers"]), "svg")
    root = ET.fromstring(data)
    assert root.tag.endswith("svg")
    assert root.attrib["width"] == "792pt"  # 11 in x 72 pt/in
    assert root.attrib["height"] == "396pt"


def test_power_law_line_is_normalised_to_the_esd_histogram():
    # Exact Pareto sample with alpha = 3, xmin = 1 as the whole ESD: the drawn line must follow
    # the histogram density (law of large numbers: 200k samples, bins with >= 2000 counts have
    # a relative standard error <= 1/sqrt(2000) = 2.2%; 10% is over 4 standard errors).
    rng = np.random.default_rng(1)
    alpha, n = 3.0, 200_000
    lam = np.sort((1 - rng.random(n)) ** (-1 / (alpha - 1)))
    fit = {"alpha": alpha, "xmin": 1.0, "tail_size": n, "fit_status": "ok"}
    fig = plots.new_figure(6, 4)
    ax = fig.add_subplot()
    plots.esd_panel(ax, {"values": lam.tolist(), "count": n, "quantiles": False}, fit, "pareto")
    line = next(ln for ln in ax.lines if str(ln.get_label()).startswith("power law"))
    xs, ys = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    values, edges, _ = ax.patches[0].get_data()  # the filled ESD histogram (a StepPatch)
    checked = 0
    for height, left, right in zip(values, edges[:-1], edges[1:], strict=True):
        width = right - left
        if not height * n * width >= 2000:  # NaN for empty bins
            continue
        centre = math.sqrt(left * right)
        # Mean density of the law over the bin = (F(right) - F(left)) / width.
        expected = (left ** (1 - alpha) - right ** (1 - alpha)) / width
        assert height == pytest.approx(expected, rel=0.1)
        drawn = np.interp(math.log(centre), np.log(xs), np.log(ys))
        assert math.exp(drawn) == pytest.approx(expected, rel=0.1)
        checked += 1
    assert checked >= 5


def test_infinite_condition_numbers_are_marked_not_dropped(analyze_report):
    layers = analyze_report["layers"]
    inf_idx = [i for i, la in enumerate(layers) if la.get("condition_number") == math.inf]
    assert inf_idx, "the fixture has a rank-deficient layer"
    fig = plots.norms_figure(layers)
    cond_ax = fig.axes[1]
    marks = [ln for ln in cond_ax.lines if ln.get_marker() == "^"]
    assert len(marks) == 1
    assert list(marks[0].get_xdata()) == inf_idx
    texts = [t.get_text() for t in cond_ax.texts]
    assert texts.count("inf") == len(inf_idx)


def test_layer_kinds_get_distinct_markers(analyze_report):
    fig = plots.alpha_figure(analyze_report["layers"])
    legend = fig.axes[0].get_legend()
    markers = {t.get_text(): getattr(h, "get_marker", lambda: None)() for t, h in
               zip(legend.get_texts(), legend.legend_handles, strict=True)}
    assert markers["linear"] != markers["conv2d"]


def test_write_plots_analyze_writes_the_documented_files(tmp_path, analyze_report, monkeypatch):
    # Two layers per ESD figure instead of six keeps the test fast; the grouping is the same code.
    monkeypatch.setattr(plots, "ESD_LAYERS_PER_FIGURE", 2)
    report = dict(analyze_report, layers=analyze_report["layers"][:3])
    with_esd = sum(1 for la in report["layers"] if la.get("esd"))
    paths = plots.write_plots(report, tmp_path / "new" / "plots")
    names = [p.name for p in paths]
    n_esd = math.ceil(with_esd / plots.ESD_LAYERS_PER_FIGURE)
    assert n_esd == 2
    assert names == ["alpha_by_depth.png", "norms_by_depth.png"] + [
        f"esd_{i:02d}.png" for i in range(1, n_esd + 1)
    ]
    for path in paths:
        width, height = png_size(path.read_bytes())
        assert width == 1100
    assert png_size(paths[2].read_bytes())[1] == round(
        plots.ESD_LAYERS_PER_FIGURE * plots.ESD_ROW_IN * plots.DPI
    )
    leftovers = [p for p in (tmp_path / "new" / "plots").iterdir() if p not in paths]
    assert leftovers == []  # no temporary files left behind


def test_write_plots_hessian_svg(tmp_path, hessian_report):
    paths = plots.write_plots(hessian_report, tmp_path, image_format="svg")
    assert [p.name for p in paths] == ["hessian_eigenvalues.svg", "hessian_density.svg"]
    for path in paths:
        assert ET.fromstring(path.read_bytes()).tag.endswith("svg")


def test_unwritable_plot_directory_is_refused_before_writing(tmp_path, analyze_report):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(SpectraError, match="not a directory"):
        plots.write_plots(analyze_report, blocker / "plots")
    with pytest.raises(SpectraError, match="not a directory"):
        plots.write_plots(analyze_report, blocker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_bad_image_format_and_bad_report(tmp_path, analyze_report):
    with pytest.raises(SpectraError, match="png or svg"):
        plots.write_plots(analyze_report, tmp_path, image_format="jpg")
    with pytest.raises(SpectraError, match="kind"):
        plots.write_plots({"kind": "other"}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_plotting_never_imports_pyplot():
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from report_fixtures import build_analyze_report\n"
        "from spectracli.report.plots import render_figures\n"
        "assert 'matplotlib' not in sys.modules\n"
        "report = build_analyze_report()\n"
        "render_figures(dict(report, layers=report['layers'][:1]))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_plot_command_writes_figures_and_lists_them(tmp_path, hessian_report):
    report = tmp_path / "h.json"
    report.write_text(dumps_report(hessian_report))
    result = CliRunner().invoke(app, ["plot", str(report), "--out", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert written == ["hessian_density.png", "hessian_eigenvalues.png"]
    for name in written:
        assert name in result.output


def test_plot_command_bad_inputs_exit_2_with_one_line(tmp_path, analyze_report):
    truncated = tmp_path / "t.json"
    truncated.write_text(dumps_report(analyze_report)[:200])
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    good = tmp_path / "good.json"
    good.write_text(dumps_report(analyze_report))
    for args in (
        ["plot", str(truncated), "--out", str(tmp_path / "a")],
        ["plot", str(tmp_path / "missing.json"), "--out", str(tmp_path / "b")],
        ["plot", str(good), "--out", str(blocker / "c")],
        ["plot", str(good), "--out", str(tmp_path / "d"), "--image-format", "gif"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = [ln for ln in result.stderr.strip().splitlines() if ln]
        assert len(lines) == 1 and lines[0].startswith("spectracli: error:"), result.stderr
        assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "good.json", "t.json"]


def test_written_files_get_the_usual_permissions(tmp_path, hessian_report):
    # Atomic writes go through mkstemp (mode 0600); the final file must be readable like any
    # file the user creates (0666 minus the umask), e.g. by a web server serving the plots.
    import os

    mask = os.umask(0o022)
    try:
        paths = plots.write_plots(hessian_report, tmp_path)
    finally:
        os.umask(mask)
    for path in paths:
        assert path.stat().st_mode & 0o777 == 0o644


def test_depth_axis_names_layers_up_to_40_then_uses_indices():
    def layers(n):
        return [{"name": f"block.{i}.weight", "kind": "linear", "alpha": 3.0,
                 "farms": {"alpha": 2.5}} for i in range(n)]

    named = plots.alpha_figure(layers(plots.MAX_NAMED_TICKS)).axes[0]
    assert [t.get_text() for t in named.get_xticklabels()][:2] == ["block.0.weight",
                                                                  "block.1.weight"]
    many = plots.alpha_figure(layers(plots.MAX_NAMED_TICKS + 1)).axes[0]
    assert "layer depth" in many.get_xlabel()
    assert not any(t.get_text().startswith("block") for t in many.get_xticklabels())


def test_hessian_eigenvalues_with_negative_values_use_symlog(hessian_report):
    report = dict(hessian_report, eigenvalues=[5.0, 1.0, -0.5, -2.0],
                  converged=[True, True, True, False])
    ax = plots.hessian_eigenvalues_figure(report).axes[0]
    assert ax.get_yscale() == "symlog"
    ys = sorted(y for line in ax.lines for y in line.get_ydata())
    assert ys == [-2.0, -0.5, 1.0, 5.0]  # every eigenvalue drawn, negatives included
    assert plots.hessian_eigenvalues_figure(hessian_report).axes[0].get_yscale() == "log"
