"""Figures a reader can read: integer ticks where the axis counts, at least three numbers on a
log axis, ESD panels on the tail and the bulk, fit lines for ok fits only, legends off the data.

Truths: the tick positions and text matplotlib lays out, the axes' and legends' pixel boxes."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from spectracli.report import plots


def _drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig


def _labelled_ticks(axis) -> list[str]:
    lo, hi = sorted(axis.get_view_interval())
    ticks = [t for t in axis.get_major_ticks() + axis.get_minor_ticks()
             if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]
    return [t.label1.get_text() for t in ticks]


def test_hessian_eigenvalue_plot_counts_k_in_integers(hessian_report):
    fig = _drawn(plots.hessian_eigenvalues_figure(hessian_report))
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    ks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ks and all(float(k).is_integer() for k in ks)


@pytest.mark.parametrize("lo, hi", [(1.6, 4.9), (1.1, 1.5), (0.15, 1.4), (0.02, 1.5), (1e-6, 10.0)])
def test_a_log_axis_carries_at_least_three_numbers(lo, hi):
    fig = plots.new_figure(6, 4)
    ax = fig.add_subplot()
    ax.plot([lo, hi], [1, 2])
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    plots.plain_log_axis(ax.xaxis, hi / lo)
    _drawn(fig)
    labels = _labelled_ticks(ax.xaxis)
    assert len(labels) >= 3, labels
    assert all("+" not in t and "e0" not in t for t in labels), labels  # 1e6, not 1e+06


def _panel(lam, fit, mp_edge=None):
    fig = plots.new_figure(6, 4)
    ax = fig.add_subplot()
    plots.esd_panel(ax, {"values": list(map(float, lam)), "count": len(lam),
                         "quantiles": False}, fit, "test", mp_edge)
    return _drawn(fig), ax


def test_esd_panel_shows_the_tail_and_bulk_and_counts_the_near_zero_mass():
    rng = np.random.default_rng(0)
    bulk = rng.uniform(0.01, 1.0, 300)
    near_zero = np.full(40, 1e-11)
    lam = np.concatenate([near_zero, bulk, [3.0, 5.0, 8.0]])
    fit = {"alpha": 3.0, "xmin": 0.5, "tail_size": 80, "fit_status": "ok"}
    _, ax = _panel(lam, fit, mp_edge=1.2)
    lo, hi = ax.get_xlim()
    assert lo > 1e-5 and lo < 0.01 and hi > 8.0  # the bulk and the tail, not 12 decades
    assert "40 near-zero" in ax.get_xlabel()
    assert any(str(line.get_label()).startswith("power law") for line in ax.lines)


def test_the_fit_line_is_drawn_for_ok_fits_only():
    lam = np.geomspace(0.01, 10, 200)
    fit = {"alpha": 2.5, "xmin": 0.3, "tail_size": 60, "fit_status": "no_power_law"}
    _, ax = _panel(lam, fit)
    assert not any(str(line.get_label()).startswith("power law") for line in ax.lines)
    assert "no_power_law (not drawn)" in ax.get_title(loc="left")


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_are_placed_outside_the_data(analyze_report, hessian_report):
    figures = [plots.esd_figure(analyze_report["layers"][:3]),
               plots.alpha_figure(analyze_report["layers"]),
               plots.hessian_eigenvalues_figure(hessian_report),
               plots.hessian_density_figure(hessian_report)]
    checked = 0
    for fig in figures:
        renderer = _drawn(fig).canvas.get_renderer()
        boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert not any(_overlaps(box, axbox) for axbox in boxes), fig
            assert box.x1 <= fig.bbox.x1 + 1 and box.y1 <= fig.bbox.y1 + 1  # inside the image
            checked += 1
    assert checked >= 4
