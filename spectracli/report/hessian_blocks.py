"""The block-diagonal Hessian by depth: each block's lambda_max and trace, in model order.

One figure with two panels sharing the x axis (block index = depth): the extreme eigenvalue of
each diagonal block at the asked end (lambda_max, lambda_min, or a line for each with
``which="both"``; linear, or symlog when the values are signed or span over 1e3) and its trace
with the Hutch++ error bar (exact blocks have none).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from spectracli.errors import SpectraError
from spectracli.fileio import write_bytes_atomic
from spectracli.report.hessian import by_end
from spectracli.report.plots import _depth_axis, figure_bytes, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def blocks_figure(report: dict[str, Any]) -> Figure:
    """Figure of ``report["blocks"]`` (a Hessian report run with blocks).

    Returns:
        Two panels over the blocks: the top eigenvalue of each, and its trace with a two
        standard-error bar.

    Raises:
        SpectraError: when the report has no blocks.
    """
    blocks = report.get("blocks") or []
    if not blocks:
        raise SpectraError("the report has no blocks (run the Hessian with blocks)")
    names = [b["name"] for b in blocks]
    xs = list(range(len(blocks)))
    which = (report.get("settings") or {}).get("which") or "largest"
    ends = [by_end(b["eigenvalues"], which) for b in blocks]
    fig = new_figure(max(6.0, 0.35 * len(blocks) + 2.5), 6.0)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    finite: list[float] = []
    for j, label in ((0, "lambda_max"), (1, "lambda_min")):  # each asked end its own line
        line = [e[j][0] if e[j] else float("nan") for e in ends]
        if all(v != v for v in line):
            continue
        ax1.plot(xs, line, "o-" if j == 0 else "v-", color=f"C{j}", label=label)
        finite += [v for v in line if v == v]
    ax1.set_ylabel("block " + {"largest": "lambda_max", "smallest": "lambda_min"}.get(
        which, "lambda_max, lambda_min"))
    if which == "both":
        ax1.legend(fontsize=8)
    if finite and (min(finite) <= 0 or max(finite) > 1e3 * min(finite)):
        # Wide or signed ranges: symmetric log, linear within 1e-3 of the largest magnitude.
        ax1.set_yscale("symlog", linthresh=max(1e-12, 1e-3 * max(abs(v) for v in finite)))
    ax1.grid(True, axis="y", alpha=0.3)
    ax1.set_title(f"{report.get('operator', 'hessian')} diagonal blocks "
                  f"({report.get('settings', {}).get('blocks', '')}) by depth")
    ax2.errorbar(xs, [b["trace"] for b in blocks], yerr=[2 * b["trace_stderr"] for b in blocks],
                 fmt="s-", color="C1", capsize=3)
    ax2.set_ylabel("block trace (+- 2 stderr)")
    _depth_axis(ax2, names)
    return fig


def save_blocks_plot(report: dict[str, Any], path: Path) -> None:
    """Write :func:`blocks_figure` to ``path`` (``.png`` or ``.svg``), atomically.

    Raises:
        SpectraError: for another suffix or a report without blocks.
    """
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise SpectraError(f"the blocks plot must be a .png or .svg file, got {path}")
    write_bytes_atomic(path, figure_bytes(blocks_figure(report), fmt))
