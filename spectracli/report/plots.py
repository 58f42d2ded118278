"""Figures of a report, drawn with matplotlib's object API (``Figure`` + Agg canvas, no pyplot).

Analyze reports give:

- ``esd_NN.png``: per-layer ESDs on log-log axes, ``ESD_LAYERS_PER_FIGURE`` layers per file, one
  row per layer: the full-matrix ESD on the left and the pooled FARMS ESD on the right. Each panel
  is a histogram density over log-spaced bins of the eigenvalues lambda = sigma^2 stored in the
  report, with the fitted power law drawn from xmin on, xmin marked (dashed) and, on the full
  ESD, the Marchenko-Pastur bulk edge lambda_+ (dotted). The fitted line is the tail's share of
  the ESD times the Pareto density,
  p(lambda) = (n_tail / N) (alpha - 1) / xmin (lambda / xmin)^-alpha,
  so it sits on the histogram when the fit is good.
- ``alpha_by_depth.png``: alpha (filled) and FARMS alpha (hollow) against layer depth, with
  their alpha_ci as bars beside the markers, one marker shape and colour per layer kind, the
  heuristic band [2, 6] shaded, fits that are not ok marked as failed.
- ``norms_by_depth.png``: sigma_max and the condition number against depth on log axes; infinite
  condition numbers (rank-deficient layers) are drawn as red triangles at the top, not dropped.

Hessian reports give ``hessian_eigenvalues.png`` (the top eigenvalues, log scale, symlog when
some are negative; unconverged ones hollow) and ``hessian_density.png`` (the SLQ density on a log
scale with the bulk edge and the outliers marked).

Matplotlib is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spectracli.errors import SpectraError
from spectracli.fileio import check_writable_dir, write_bytes_atomic
from spectracli.options import ImageFormat
from spectracli.report.hessian import eigen_title, outlier_count, outlier_lists
from spectracli.report.markdown import ALPHA_BAND, check_renderable

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

IMAGE_FORMATS = ImageFormat.values()
DPI = 100
WIDTH_IN = 11.0
ESD_LAYERS_PER_FIGURE = 6
ESD_ROW_IN = 2.9
MAX_NAMED_TICKS = 40

KIND_STYLE = {  # marker, colour: kinds stay distinguishable without relying on colour alone
    "linear": ("o", "#1f77b4"),
    "conv1d": ("v", "#ff7f0e"),
    "conv2d": ("s", "#2ca02c"),
    "conv3d": ("D", "#9467bd"),
    "embedding": ("^", "#8c564b"),
    "matrix": ("P", "#e377c2"),
}
OTHER_STYLE = ("X", "#7f7f7f")


@dataclass
class RenderedFigure:
    """One figure as image bytes, with the file name it is written under and a caption."""

    filename: str
    title: str
    caption: str
    data: bytes
    image_format: str
    width_px: int
    height_px: int

    @property
    def mime(self) -> str:
        """The MIME type of ``data``."""
        return "image/png" if self.image_format == "png" else "image/svg+xml"


def _check_format(image_format: str) -> str:
    fmt = str(image_format).lower()
    if fmt not in IMAGE_FORMATS:
        raise SpectraError(f"image format must be png or svg, got {image_format!r}")
    return fmt


def new_figure(width_in: float, height_in: float, layout: str | None = "constrained") -> Figure:
    """A pyplot-free figure with the Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def figure_bytes(fig: Figure, image_format: str = "png") -> bytes:
    """The figure as PNG or SVG bytes at its own size (no tight bounding box: sizes are exact)."""
    import matplotlib as mpl

    fmt = _check_format(image_format)
    buf = io.BytesIO()
    # A fixed SVG hash salt and no date keep SVG output reproducible.
    metadata = {"Date": None} if fmt == "svg" else {"Software": "spectracli"}
    with mpl.rc_context({"svg.hashsalt": "spectracli", "font.size": 10}):
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
    return buf.getvalue()


def _finite_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "\u2026" + name[-(width - 1):]


# ---------------------------------------------------------------------------------------------
# ESD panels


def log_tick_text(value: float) -> str:
    """A log-axis tick in plain short text: ``0.001``, ``50``, ``1e6``, ``1e-9``."""
    text = f"{value:g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{int(exp)}"
    return text


def plain_log_axis(axis: Any, span: float) -> None:
    """At most ~6 labelled decades on a log axis, labelled in plain text ("0.001", "1e-5").

    Plain text is readable, and fast to lay out (mathtext superscripts cost more than the plot
    itself). An axis spanning less than two decades (``span`` = max / min) also labels minor
    ticks (at 2 and 5; at 2, 3, 5 and 7 within a decade; at every integer within a factor 4;
    round numbers within a factor 2) so that it always carries at least three numbers.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    plain = FuncFormatter(lambda v, _pos: log_tick_text(v))
    if span < 2:  # less than a factor 2: evenly spaced round numbers read best
        axis.set_major_locator(MaxNLocator(nbins=4))
        axis.set_major_formatter(plain)
        axis.set_minor_locator(NullLocator())
        return
    axis.set_major_locator(LogLocator(base=10, numticks=6))
    axis.set_major_formatter(plain)
    if span < 100:
        subs = ((2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if span < 4 else
                (2.0, 3.0, 5.0, 7.0) if span < 10 else (2.0, 5.0))
        axis.set_minor_locator(LogLocator(base=10, subs=subs, numticks=12))
        axis.set_minor_formatter(plain)
    else:  # unlabelled minor ticks cost as much to build as labelled ones: leave them out
        axis.set_minor_locator(NullLocator())


def _few_log_ticks(ax: Axes, x_span: float) -> None:
    y_lo, y_hi = ax.get_ylim()
    plain_log_axis(ax.xaxis, x_span)
    plain_log_axis(ax.yaxis, y_hi / y_lo if y_lo > 0 else 1.0)


# An ESD panel shows this many decades below lambda_max (more when xmin or the MP edge lies
# lower): the tail and the bulk; the near-zero mass below is counted in a note, not drawn.
ESD_DECADES = 4.0


def _fit_ok(fit: dict[str, Any]) -> bool:
    return str(fit.get("fit_status") or "ok").startswith("ok")


def esd_values_text(fit: dict[str, Any] | None, mp_edge: float | None = None) -> str:
    """The fitted numbers of a panel, for its title: ``α=2.47, xmin=0.349, MP edge=1.04``."""
    fit = fit or {}
    alpha, xmin = _finite_float(fit.get("alpha")), _finite_float(fit.get("xmin"))
    parts = []
    if not _fit_ok(fit):
        parts.append(f"fit {fit.get('fit_status')} (not drawn)")
    elif alpha is not None:
        parts.append(f"\u03b1={alpha:.3g}")
    if xmin is not None and _fit_ok(fit):
        parts.append(f"xmin={xmin:.3g}")
    edge = _finite_float(mp_edge)
    if edge is not None:
        parts.append(f"MP edge={edge:.3g}")
    return ", ".join(parts)


def esd_panel(
    ax: Axes,
    esd: dict[str, Any] | None,
    fit: dict[str, Any] | None,
    title: str,
    mp_edge: float | None = None,
    legend: bool = True,
) -> None:
    """One ESD on log-log axes: density histogram, fitted power law from xmin, xmin, MP edge.

    The power law is drawn for ok fits only. The x range is the top ``ESD_DECADES`` decades
    (extended down to xmin and the MP edge): the tail and the bulk; the eigenvalues below are
    counted in a note. ``legend``: a legend outside the axes on the right (a figure of panels
    draws one shared legend).
    """
    import numpy as np

    values_text = esd_values_text(fit, mp_edge)
    if isinstance(esd, dict) and esd.get("quantiles"):
        values_text += f"; {len(esd.get('values') or [])} quantiles of {esd.get('count')}"
    ax.set_title(title + (f"\n{values_text}" if values_text else ""), fontsize=9, loc="left")
    values = (esd or {}).get("values") if isinstance(esd, dict) else None
    if not values:
        _panel_note(ax, "ESD not stored in the report")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    lam = np.asarray([v for v in values if isinstance(v, (int, float))], dtype=float)
    lam = lam[np.isfinite(lam)]
    pos = lam[lam > 0]
    if pos.size == 0:
        _panel_note(ax, "no positive eigenvalues")
        return
    fit = fit or {}
    floor, lo, hi = _shown_range(pos, fit, mp_edge)
    n_tiny = int(np.sum(pos < floor))
    pos = pos[pos >= floor]
    n_bins = int(min(60, max(10, 2 * math.sqrt(pos.size))))
    edges = np.logspace(math.log10(lo), math.log10(hi), n_bins + 1)
    counts, _ = np.histogram(pos, bins=edges)
    # Density of the whole ESD (zeros included in the total), so the power law's tail share fits.
    dens = counts / (lam.size * np.diff(edges))
    # One stairs artist rather than a bar per bin: far cheaper to draw; empty bins are gaps.
    ax.stairs(np.where(dens > 0, dens, np.nan), edges, fill=True, color="#9ecae1",
              label="ESD")
    ax.stairs(np.where(dens > 0, dens, np.nan), edges, color="#4a90c2", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue \u03bb = \u03c3\u00b2", fontsize=9)
    ax.set_ylabel("density", fontsize=9)
    ax.set_xlim(lo / 1.3, hi * 1.3)
    notes = _draw_fit(ax, fit, mp_edge, int(lam.size), lo, hi)
    n_zero = int(lam.size - pos.size) - n_tiny
    if n_zero or n_tiny:
        notes.append(f"{n_zero + n_tiny} near-zero (< {log_tick_text(float(f'{floor:.2g}'))}) "
                     "not shown")
    if notes:  # in the x label: never over the data
        ax.set_xlabel("\u03bb = \u03c3\u00b2  (" + "; ".join(notes) + ")", fontsize=9)
    if legend:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.tick_params(labelsize=8)
    _few_log_ticks(ax, hi / lo)


def _panel_note(ax: Axes, text: str) -> None:
    """A grey note in the middle of an empty panel."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10,
            color="#555555")


def _shown_range(pos: Any, fit: dict[str, Any],
                 mp_edge: float | None) -> tuple[float, float, float]:
    """The part of a positive ESD ``pos`` that an ESD panel shows.

    The top ``ESD_DECADES`` decades, reaching down to xmin and the MP edge. Below it is
    near-zero mass (rank deficiency, small FARMS windows, float rounding) that would stretch the
    axis over up to a dozen decades and shrink the tail.

    Returns:
        ``(floor, lo, hi)``: eigenvalues below ``floor`` are not drawn; ``[lo, hi]`` is the
        range of the histogram (widened by 2x each way for a single value).
    """
    hi = float(pos.max())
    floor = hi * 10.0 ** -ESD_DECADES
    for anchor in (_finite_float(fit.get("xmin")), _finite_float(mp_edge)):
        if anchor is not None and 0 < anchor < floor * 3:
            floor = anchor / 3
    lo = float(pos[pos >= floor].min())
    if hi <= lo * (1 + 1e-12):
        lo, hi = lo / 2, hi * 2
    return floor, lo, hi


def _draw_fit(ax: Axes, fit: dict[str, Any], mp_edge: float | None, n: int, lo: float,
              hi: float) -> list[str]:
    """The fitted power law (ok fits only), xmin and the MP edge on an ESD panel.

    The law is the fitted density ``(alpha - 1) / xmin (x / xmin)^-alpha`` (Clauset et al.
    2009) scaled by the tail's share ``tail_size / n`` of the ``n`` eigenvalues.

    Returns:
        Notes for the x label (a marker outside ``[lo, hi]``).
    """
    import numpy as np

    alpha, xmin = _finite_float(fit.get("alpha")), _finite_float(fit.get("xmin"))
    tail = fit.get("tail_size")
    notes = []
    if not _fit_ok(fit):  # a fit that is not ok is no law to draw: its status is in the title
        alpha = xmin = None
    if alpha is not None and xmin is not None and xmin > 0 and alpha > 1 and tail:
        start = max(xmin, lo)
        x = np.logspace(math.log10(start), math.log10(max(hi, start * 1.01)), 60)
        share = float(tail) / n
        ax.plot(x, share * (alpha - 1) / xmin * (x / xmin) ** (-alpha), color="#d62728", lw=1.8,
                label=f"power law \u03b1={alpha:.3g}")
    for value, style, label in (
        (xmin, dict(color="#d62728", ls="--", lw=1.0), "xmin"),
        (_finite_float(mp_edge), dict(color="#2ca02c", ls=":", lw=1.5), "MP edge"),
    ):
        if value is None or value <= 0:
            continue
        if lo / 1.3 <= value <= hi * 1.3:
            ax.axvline(value, label=f"{label}={value:.3g}", **style)
        else:
            notes.append(f"{label}={value:.3g} outside the shown range")
    return notes


def esd_figure(layers: list[dict[str, Any]]) -> Figure:
    """One row per layer: full-matrix ESD (left) and FARMS ESD (right)."""
    rows = max(1, len(layers))
    height = ESD_ROW_IN * rows
    # A fixed layout in inches: constrained layout costs ~40% more time on a grid of log axes.
    fig = new_figure(WIDTH_IN, height, layout=None)
    axes = fig.subplots(rows, 2, squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.985, wspace=0.18, top=1 - 0.75 / height,
                        bottom=0.55 / height, hspace=1.0 / (ESD_ROW_IN - 1.0))
    for row, layer in zip(axes, layers, strict=False):
        name = _short(str(layer.get("name")), 48)
        shape = layer.get("matrix_shape") or []
        shape_txt = "x".join(str(d) for d in shape)
        esd_panel(row[0], layer.get("esd"), layer, f"{name}  ({shape_txt}) full matrix",
                  layer.get("mp_bulk_edge"), legend=False)
        farms = layer.get("farms")
        if isinstance(farms, dict):
            n_win = farms.get("n_windows")
            title = (f"{name}  FARMS {n_win} window{'s' * (n_win != 1)} "
                     f"{farms.get('window_rows')}x{farms.get('window_cols')}")
            esd_panel(row[1], farms.get("esd"), farms, title, legend=False)
        else:
            row[1].set_title(f"{name}  FARMS", fontsize=10, loc="left")
            row[1].text(0.5, 0.5, "FARMS not computed", ha="center", va="center",
                        transform=row[1].transAxes, fontsize=10, color="#555555")
            row[1].set_xticks([])
            row[1].set_yticks([])
    _esd_legend(fig)
    return fig


def _esd_legend(fig: Figure) -> None:
    """One legend for every panel, above them (outside the data).

    The numbers are in the panel titles.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color="#9ecae1", label="ESD (density histogram)"),
               Line2D([], [], color="#d62728", lw=1.8, label="power law from xmin (ok fits)"),
               Line2D([], [], color="#d62728", ls="--", lw=1.0, label="xmin"),
               Line2D([], [], color="#2ca02c", ls=":", lw=1.5, label="MP bulk edge")]
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1.0))


# ---------------------------------------------------------------------------------------------
# By-depth figures


def _depth_axis(ax: Axes, names: list[str]) -> None:
    n = len(names)
    if n <= MAX_NAMED_TICKS:
        ax.set_xticks(range(n))
        ax.set_xticklabels([_short(s) for s in names], rotation=60, ha="right", fontsize=8)
    else:
        ax.set_xlabel("layer depth (index in the report's layer table)", fontsize=9)
    ax.set_xlim(-0.7, n - 0.3)
    ax.grid(True, axis="y", alpha=0.3)


def _fit_alpha(block: dict[str, Any] | None) -> float | None:
    """alpha of a fit block whose status is ok (or unrecorded); None for a fit that is not ok."""
    block = block or {}
    status = block.get("fit_status")
    return _finite_float(block.get("alpha")) if status in (None, "ok") else None


def _alpha_range(layers: list[dict[str, Any]]) -> tuple[float, float]:
    """The y range of the alpha figure: every ok alpha and interval end, and the [2, 6] band.

    Returns:
        ``(bottom, top)``; top is capped at 20 (a few wild fits should not flatten the rest:
        they are clipped and marked).
    """
    values = []
    for layer in layers:
        for block in (layer, layer.get("farms") or {}):
            if _fit_alpha(block) is not None:
                ci = block.get("alpha_ci")
                ends = list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else []
                values += [_fit_alpha(block)] + [_finite_float(v) for v in ends]
    finite = [v for v in values if v is not None]
    top = max([ALPHA_BAND[1] + 1.0] + finite) * 1.05
    top = min(top, 20.0)
    bottom = min([1.0] + finite) * 0.95
    return bottom, top


def _alpha_marker(ax: Axes, x_bar: float, i: int, value: float, block: dict[str, Any] | None,
                  style: tuple[str, str], filled: bool, y_range: tuple[float, float],
                  clipped: list[tuple[int, float]]) -> None:
    """One alpha marker at layer ``i`` with its ``alpha_ci`` bar at ``x_bar``.

    Both are clipped to ``y_range``; a clipped value is appended to ``clipped``, to be annotated.
    """
    (marker, colour), (bottom, top) = style, y_range
    ci = (block or {}).get("alpha_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        # alpha_ci as an error bar beside the marker (full left, FARMS right), clipped
        lo_ci, hi_ci = max(float(ci[0]), bottom), min(float(ci[1]), top * 0.98)
        if lo_ci < hi_ci:
            ax.plot([x_bar, x_bar], [lo_ci, hi_ci], color=colour, lw=1.2,
                    alpha=0.8 if filled else 0.5, solid_capstyle="butt")
    y = min(value, top * 0.98)
    if value > top:
        clipped.append((i, value))
    ax.plot([i], [y], marker=marker, ms=8, ls="none", color=colour,
            mfc=colour if filled else "white", mew=1.6)


def alpha_figure(layers: list[dict[str, Any]]) -> Figure:
    """alpha (filled) and FARMS alpha (hollow) by depth, markers per kind, [2, 6] band."""
    from matplotlib.lines import Line2D

    fig = new_figure(WIDTH_IN, 5.5)
    ax = fig.add_subplot()
    names = [str(layer.get("name")) for layer in layers]
    ax.axhspan(*ALPHA_BAND, color="#2ca02c", alpha=0.10, lw=0)
    bottom, top = _alpha_range(layers)
    kinds_seen: dict[str, tuple[str, str]] = {}
    failed_x: list[int] = []
    clipped: list[tuple[int, float]] = []
    for i, layer in enumerate(layers):
        kind = str(layer.get("kind"))
        marker, colour = KIND_STYLE.get(kind, OTHER_STYLE)
        kinds_seen[kind] = (marker, colour)
        a = _fit_alpha(layer)  # a fit that is not ok is drawn as failed, not as a number
        fa = _fit_alpha(layer.get("farms"))
        for value, filled, block, dx in ((a, True, layer, -0.12),
                                         (fa, False, layer.get("farms"), 0.12)):
            if value is not None:
                _alpha_marker(ax, i + dx, i, value, block, (marker, colour), filled,
                              (bottom, top), clipped)
        if a is not None and fa is not None:
            ax.plot([i, i], [min(a, top * 0.98), min(fa, top * 0.98)], color=colour, lw=0.8,
                    alpha=0.5)
        if a is None:
            failed_x.append(i)
    if failed_x:
        ax.plot(failed_x, [bottom + 0.05 * (top - bottom)] * len(failed_x), "x", color="#d62728",
                ms=9, mew=2)
    for i, value in clipped:
        ax.annotate(f"{value:.3g}", (i, top * 0.98), textcoords="offset points", xytext=(4, -4),
                    fontsize=8, color="#d62728")
    ax.set_ylim(bottom, top)
    ax.set_ylabel("power-law \u03b1", fontsize=10)
    ax.set_title("\u03b1 by layer depth (filled: full matrix, hollow: FARMS; bars: alpha_ci)",
                 fontsize=11, loc="left")
    _depth_axis(ax, names)
    handles = [Line2D([], [], marker=m, color=c, ls="none", ms=8, label=k)
               for k, (m, c) in kinds_seen.items()]
    handles.append(Line2D([], [], marker="o", color="#444444", mfc="white", ls="none", ms=8,
                          label="FARMS \u03b1 (hollow)"))
    from matplotlib.patches import Patch

    handles.append(Patch(color="#2ca02c", alpha=0.2, label="[2, 6] heuristic range"))
    if failed_x:
        handles.append(Line2D([], [], marker="x", color="#d62728", ls="none", ms=9, mew=2,
                              label="fit failed"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def norms_figure(layers: list[dict[str, Any]]) -> Figure:
    """sigma_max and condition number by depth on log axes; inf condition numbers marked."""
    fig = new_figure(WIDTH_IN, 7.0)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    names = [str(layer.get("name")) for layer in layers]
    for ax, key, label, colour in (
        (ax1, "sigma_max", "\u03c3_max (spectral norm)", "#1f77b4"),
        (ax2, "condition_number", "condition number \u03c3_max / \u03c3_min", "#9467bd"),
    ):
        xs, ys, inf_x, missing = [], [], [], 0
        for i, layer in enumerate(layers):
            raw = layer.get(key)
            value = _finite_float(raw)
            if isinstance(raw, float) and math.isinf(raw) and raw > 0:
                inf_x.append(i)
            elif value is None or value <= 0:
                missing += 1
            else:
                xs.append(i)
                ys.append(value)
        if ys:
            # NaN where a layer has no finite value, so the line breaks there instead of
            # bridging over it.
            line = [math.nan] * len(layers)
            for i, y in zip(xs, ys, strict=True):
                line[i] = y
            ax.plot(range(len(layers)), line, "-", color=colour, lw=1, alpha=0.6)
            ax.plot(xs, ys, "o", color=colour, ms=5)
            ax.set_yscale("log")
            lo, hi = min(ys), max(ys)
        else:
            ax.set_yscale("log")
            lo, hi = 1.0, 10.0
        if inf_x:
            top = hi * 10 ** max(0.5, 0.15 * math.log10(max(hi / lo, 10.0)))
            ax.set_ylim(lo / 2, top * 2)
            ax.plot(inf_x, [top] * len(inf_x), "^", color="#d62728", ms=10,
                    label="inf (rank deficient)")
            for i in inf_x:
                ax.annotate("inf", (i, top), textcoords="offset points", xytext=(0, -16),
                            ha="center", fontsize=8, color="#d62728")
            ax.legend(fontsize=8, loc="upper left")
        y_lo, y_hi = ax.get_ylim()
        plain_log_axis(ax.yaxis, y_hi / y_lo if y_lo > 0 else 1.0)
        title = label
        if missing:
            title += f"  ({missing} layer{'s' * (missing != 1)} without a value)"
        ax.set_title(title, fontsize=11, loc="left")
        ax.set_ylabel(key, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    _depth_axis(ax2, names)
    ax1.tick_params(labelbottom=False)
    return fig


# ---------------------------------------------------------------------------------------------
# Hessian figures


def hessian_eigenvalues_figure(report: dict[str, Any]) -> Figure:
    """The computed eigenvalues (descending) on a log scale; symlog when some are <= 0."""
    eig = [float(v) for v in report.get("eigenvalues") or []]
    conv = list(report.get("converged") or [])
    fig = new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    ks = list(range(1, len(eig) + 1))
    if eig:
        done = [i for i in range(len(eig)) if i >= len(conv) or conv[i]]
        not_done = [i for i in range(len(eig)) if i < len(conv) and not conv[i]]
        ax.plot([ks[i] for i in done], [eig[i] for i in done], "o", color="#1f77b4", ms=7,
                label="converged")
        if not_done:
            ax.plot([ks[i] for i in not_done], [eig[i] for i in not_done], "o", mfc="white",
                    color="#d62728", ms=8, mew=1.6, label="not converged")
        if min(eig) > 0:
            ax.set_yscale("log")
            y_lo, y_hi = ax.get_ylim()
            plain_log_axis(ax.yaxis, y_hi / y_lo)
        else:
            ax.set_yscale("symlog", linthresh=max(abs(v) for v in eig) * 1e-3 or 1.0)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k (eigenvalues in descending order)", fontsize=10)
    ax.set_ylabel("eigenvalue", fontsize=10)
    ax.set_title(f"{eigen_title(report)}, {report.get('operator') or 'Hessian'}", fontsize=11,
                 loc="left")
    ax.grid(True, alpha=0.3)
    return fig


def hessian_density_figure(report: dict[str, Any]) -> Figure:
    """SLQ spectral density with log-scaled density, bulk edge and outliers marked."""
    import numpy as np

    density = report.get("density") or {}
    grid = np.asarray(density.get("grid") or [], dtype=float)
    values = np.asarray(density.get("values") or [], dtype=float)
    fig = new_figure(WIDTH_IN, 5.0)
    ax = fig.add_subplot()
    ok = np.isfinite(grid) & np.isfinite(values) & (values > 0)
    if ok.any():
        ax.plot(grid[ok], values[ok], color="#1f77b4", lw=1.4, label="SLQ density")
        ax.set_yscale("log")
        # Ten decades below the peak is where SLQ's Gaussian smoothing tails stop meaning much.
        peak = float(values[ok].max())
        floor = max(peak * 1e-10, float(values[ok].min()) / 2)
        ax.set_ylim(floor, peak * 3)
        plain_log_axis(ax.yaxis, peak * 3 / floor)
    edge = _finite_float(density.get("bulk_edge"))
    if edge is not None:
        ax.axvline(edge, color="#2ca02c", ls=":", lw=1.6, label=f"bulk edge={edge:.3g}")
    low = _finite_float(density.get("bulk_edge_low"))
    if low is not None:
        ax.axvline(low, color="#2ca02c", ls=":", lw=1.6, label=f"lower bulk edge={low:.3g}")
    above, below = outlier_lists(density)
    drawn = sorted({float(v) for v in above + below if _finite_float(v) is not None})
    for j, v in enumerate(drawn):
        ax.axvline(v, color="#d62728", ls="--", lw=1.0, label="outliers" if j == 0 else None)
    ax.set_xlabel("eigenvalue", fontsize=10)
    ax.set_ylabel("density (log scale)", fontsize=10)
    n_out = outlier_count(density)
    ax.set_title(f"Spectral density (stochastic Lanczos quadrature), "
                 f"{n_out} outlier{'s' if n_out != 1 else ''}", fontsize=11, loc="left")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# ---------------------------------------------------------------------------------------------
# All figures of a report


def _render(fig: Figure, filename: str, title: str, caption: str, fmt: str) -> RenderedFigure:
    width, height = fig.get_size_inches()
    return RenderedFigure(
        filename=filename,
        title=title,
        caption=caption,
        data=figure_bytes(fig, fmt),
        image_format=fmt,
        width_px=int(round(width * DPI)),
        height_px=int(round(height * DPI)),
    )


def esd_groups(layers: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The layers with stored eigenvalues, ``ESD_LAYERS_PER_FIGURE`` per ESD figure."""
    with_esd = [
        layer for layer in layers
        if layer.get("esd") or (isinstance(layer.get("farms"), dict) and layer["farms"].get("esd"))
    ]
    step = ESD_LAYERS_PER_FIGURE
    return [with_esd[i:i + step] for i in range(0, len(with_esd), step)]


def render_figures(report: dict[str, Any], image_format: str = "png") -> list[RenderedFigure]:
    """Every figure of an analyze or Hessian report, rendered in memory."""
    fmt = _check_format(image_format)
    kind = check_renderable(report)
    out: list[RenderedFigure] = []
    if kind == "track":
        from spectracli.report.track import track_figures

        return track_figures(report, fmt)
    if kind == "hessian":
        if report.get("eigenvalues"):
            out.append(_render(hessian_eigenvalues_figure(report), f"hessian_eigenvalues.{fmt}",
                               "Top eigenvalues", "Computed top eigenvalues; hollow red: the "
                               "residual did not reach the tolerance.", fmt))
        if isinstance(report.get("density"), dict) and report["density"].get("grid"):
            out.append(_render(hessian_density_figure(report), f"hessian_density.{fmt}",
                               "Spectral density", "SLQ density on a log scale; dotted: bulk "
                               "edge, dashed: outliers.", fmt))
        return out

    layers = [layer for layer in report.get("layers") or [] if isinstance(layer, dict)]
    if layers:
        out.append(_render(alpha_figure(layers), f"alpha_by_depth.{fmt}", "alpha by depth",
                           "Power-law alpha of each layer (filled) and its FARMS alpha (hollow); "
                           "the shaded band [2, 6] is a heuristic range, not a verdict.", fmt))
        out.append(_render(norms_figure(layers), f"norms_by_depth.{fmt}",
                           "sigma_max and condition number by depth",
                           "Spectral norm and condition number on log axes; red triangles: "
                           "infinite condition number (rank deficient).", fmt))
    for g, group in enumerate(esd_groups(layers)):
        first = layers.index(group[0])
        last = layers.index(group[-1])
        out.append(_render(
            esd_figure(group), f"esd_{g + 1:02d}.{fmt}",
            f"ESDs of layers {first}-{last}",
            "Full-matrix ESD (left) and FARMS ESD (right) on log-log axes; red: fitted power law "
            "from xmin (dashed); green dotted: Marchenko-Pastur bulk edge.", fmt))
    return out


def write_plots(report: dict[str, Any], out_dir: Path, image_format: str = "png") -> list[Path]:
    """Render every figure of ``report`` and write them into ``out_dir`` (created if missing).

    All figures are rendered before anything is written and each file is written atomically; a
    directory that cannot be created or written raises :class:`SpectraError` before any file
    lands, and a failure midway removes the files this call wrote.

    Args:
        report: an analyze, Hessian or track report dict.
        out_dir: the directory to write into.
        image_format: ``png`` or ``svg``.

    Returns:
        The paths written, in figure order.

    Raises:
        SpectraError: an unknown format, a report of no known kind, or a directory that cannot
            be created or written.
    """
    out_dir = Path(out_dir)
    fmt = _check_format(image_format)
    check_renderable(report)
    check_writable_dir(out_dir)
    figures = render_figures(report, fmt)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpectraError(f"cannot create plot directory {out_dir}: {exc.strerror}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise SpectraError(f"cannot write plots to {out_dir}: permission denied")
    written: list[Path] = []
    try:
        for figure in figures:
            path = out_dir / figure.filename
            write_bytes_atomic(path, figure.data)
            written.append(path)
    except (OSError, SpectraError) as exc:
        for path in written:
            path.unlink(missing_ok=True)
        message = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise SpectraError(f"cannot write plots to {out_dir}: {message}") from None
    return written
