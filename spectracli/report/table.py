"""The per-layer table of an analyze report: a summary first, then the table.

The table is fitted to the terminal (rich), or plain aligned text when piped.

On a terminal the columns come in priority order (name, kind, shape, sigma_max, condition
number, alpha, FARMS alpha, status, then the rest); what does not fit the width wraps into a
second table (the priority columns) or is left out with a note (the others); numbers are never
cut and names are shortened in the middle (report/layout.py). Skipped tensors and warnings are
counted by reason; ``verbose`` lists every one.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from typing import Any

from spectracli.report.layout import Column, layout
from spectracli.report.numbers import fmt_alpha, fmt_num
from spectracli.report.text import display_path, plural, printable

# (column, key): priority order; wrap=False columns are left out when they do not fit.
COLUMNS = (
    (Column("layer"), "name"),
    (Column("kind"), "kind"),
    (Column("shape"), "shape"),
    (Column("sigma_max", right=True), "sigma_max"),
    (Column("cond", right=True), "condition_number"),
    (Column("alpha", right=True), "alpha"),
    (Column("farms_alpha", right=True), "farms.alpha"),
    (Column("status"), "status"),
    (Column("stable_rank", right=True, wrap=False), "stable_rank"),
    (Column("ks_D", right=True, wrap=False), "ks_distance"),
    (Column("spikes", right=True, wrap=False), "num_spikes"),
)


def _cell(layer: dict[str, Any], key: str) -> str:
    if key == "shape":  # a part of a tensor (q, a gate, an expert) shows its own matrix
        dims = layer.get("matrix_shape") if layer.get("part") else layer.get("shape")
        return "x".join(str(d) for d in dims or [])
    if key == "kind" and layer.get("conv_view"):  # which view the kernel was read in
        return f"{layer.get('kind')} {layer['conv_view']}"
    if key in ("alpha", "farms.alpha"):  # alpha ± half-width of alpha_ci; (..) if not ok
        return fmt_alpha(layer.get("farms") if key == "farms.alpha" else layer)
    if key.startswith("farms."):
        return fmt_num((layer.get("farms") or {}).get(key[6:]))
    if key == "status":
        status = layer.get("status", "?")
        if status == "ok" and not str(layer.get("fit_status") or "ok").startswith("ok"):
            status = "fit failed"
        n = len(layer.get("warnings") or [])
        return status + (f" ({n} warn)" if n else "")
    return fmt_num(layer.get(key))


def table_layers(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The layers as the table shows them, the experts of one stacked tensor pooled.

    The experts of one stacked tensor (results with a ``group``) become one row of pooled
    figures (worst cond, max sigma_max, mean alpha), in place of the first member; every expert
    stays in the JSON/CSV report.

    Returns:
        The layer dicts of the table rows, in report order.
    """
    pooled = {g["name"]: g for g in report.get("groups") or []}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for layer in report.get("layers", []):
        group = layer.get("group")
        if not group or group not in pooled:
            out.append(layer)
            continue
        if group in seen:
            continue
        seen.add(group)
        g = pooled[group]
        members = [x for x in report["layers"] if x.get("group") == group]
        out.append({
            "name": f"{group}[*] ({g['n_members']} experts, pooled)",
            "kind": layer.get("kind"),
            "shape": layer.get("shape"),
            "sigma_max": g.get("max_sigma_max"),
            "condition_number": g.get("worst_condition_number"),
            "stable_rank": g.get("mean_stable_rank"),
            "alpha": g.get("mean_alpha"),
            "farms": {"alpha": g.get("mean_farms_alpha")},
            "status": "ok" if not g.get("n_not_ok") else f"{g['n_not_ok']} not ok",
            "warnings": [w for x in members for w in x.get("warnings") or []],
        })
    return out


def rows(report: dict[str, Any]) -> list[list[str]]:
    """The table's cells as text, one list per row of :func:`table_layers`."""
    return [[_cell(layer, key) for _, key in COLUMNS] for layer in table_layers(report)]


def flagged(layer: dict[str, Any]) -> bool:
    """A layer worth a look: not ok, a failed fit, or any warning."""
    return (layer.get("status") != "ok" or bool(layer.get("warnings"))
            or not str(layer.get("fit_status") or "ok").startswith("ok"))


_SHAPES = re.compile(r"\s*(\b\d+(?:x\d+)+\b|\[[\d, ]*\])")
_VALUE = re.compile(r" -?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?= is )")


def reason_group(reason: str) -> str:
    """A skip reason without the shapes it quotes, so reasons group.

    Returns:
        The reason, e.g. ``matrix 32x1 has fewer than ...`` -> ``matrix has fewer than ...``.
    """
    return " ".join(_SHAPES.sub("", reason).split())


def warning_group(warning: str) -> str:
    """A warning without its value and explanation, so warnings group.

    Returns:
        The group: ``alpha 6.57 is above 6 (light tail...); heuristic ...`` -> ``alpha is
        above 6``; ``rank deficient: numerical rank 3`` -> ``rank deficient``.
    """
    short = warning.split(";")[0].split(" (")[0].split(": ")[0]
    return _VALUE.sub("", short).strip()


def skipped_lines(report: dict[str, Any], verbose: bool = False) -> list[str]:
    """Skipped tensors counted by reason (largest group first), or every one with ``verbose``."""
    skipped = report.get("skipped", [])
    if verbose:
        return [f"{s['name']}: {s['reason']}" for s in skipped]
    counts = Counter(reason_group(s["reason"]) for s in skipped)
    width = len(str(max(counts.values(), default=0)))
    return [f"{n:>{width}}  {reason}" for reason, n in counts.most_common()]


def warning_lines(report: dict[str, Any], verbose: bool = False) -> list[str]:
    """Warnings counted by kind (with the layers they concern), or every one with ``verbose``."""
    layers = report.get("layers", [])
    if verbose:
        return [f"{layer['name']}: {w}" for layer in layers for w in layer.get("warnings") or []]
    groups: dict[str, list[str]] = {}
    for layer in layers:
        for w in layer.get("warnings") or []:
            groups.setdefault(warning_group(w), []).append(layer["name"])
    out = []
    for what, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3
                                         else "")
        out.append(f"{what}: {plural(len(names), 'layer')} ({shown})")
    return out


def summary_line(report: dict[str, Any]) -> str:
    """``path (format): 3 layers analysed, 15 tensors skipped; 1 layer flagged``."""
    s = report.get("summary", {})
    src = report.get("source", {})
    n_flagged = sum(flagged(layer) for layer in report.get("layers", []))
    base = (src.get("base") or {}).get("path") if isinstance(src.get("base"), dict) else None
    return (
        f"{display_path(src.get('path'))} ({src.get('format')})"
        + (f" minus base {display_path(base)}" if base else "")
        + f": {plural(s.get('n_layers') or 0, 'layer')} analysed, "
        f"{plural(s.get('n_skipped') or 0, 'tensor')} skipped; "
        f"{plural(n_flagged, 'layer')} flagged"
    )


def means_line(report: dict[str, Any]) -> str:
    """The fit method, mean alpha, mean FARMS alpha and worst condition number, in one line."""
    s = report.get("summary", {})
    settings = report.get("settings", {})
    return (
        f"fit {settings.get('fit')}: mean alpha {fmt_num(s.get('mean_alpha'), 3)}, "
        f"mean FARMS alpha {fmt_num(s.get('mean_farms_alpha'), 3)}, "
        f"max condition number {fmt_num(s.get('max_condition_number'), 3)}"
    )


def _sections(report: dict[str, Any], verbose: bool, hidden: list[str]) -> tuple[
        list[str], list[tuple[str, list[str]]]]:
    """The lines before the table, and the titled sections after it."""
    head = [summary_line(report), means_line(report)]
    after: list[tuple[str, list[str]]] = []
    warnings = warning_lines(report, verbose)
    if warnings:
        after.append(("warnings" + ("" if verbose else " (-v lists each)"), warnings))
    if report.get("skipped"):
        after.append(("skipped" + ("" if verbose else " (-v lists each)"),
                      skipped_lines(report, verbose)))
    if hidden:
        after.append(("", [f"not shown at this width: {', '.join(hidden)} "
                           "(a wider terminal, or -f csv/json, shows them)"]))
    return [printable(h) for h in head], [(t, [printable(x) for x in lines]) for t, lines in after]


def _wrap(line: str, width: int | None, indent: str = "") -> list[str]:
    if width is None or len(line) <= width:
        return [line]
    return textwrap.wrap(line, width, subsequent_indent=indent + "    ",
                         break_long_words=True, break_on_hyphens=False) or [""]


def render_plain(report: dict[str, Any], width: int | None = None,
                 verbose: bool = False) -> str:
    """The analyze report as plain text.

    Returns:
        The summary, the layer table (fitted to ``width`` when given), warnings and skipped
        tensors (counted by reason unless ``verbose``).
    """
    table = layout([c for c, _ in COLUMNS], rows(report), width)
    head, after = _sections(report, verbose, table.hidden)
    out = [w for line in head for w in _wrap(line, width)]
    out += ["", *(line.text for line in table.lines())]
    for title, lines in after:
        out.append("")
        if title:
            out.append(f"{title}:")
        out += [w for line in lines for w in _wrap(f"  {line}" if title else line, width, "  ")]
    return "\n".join(out) + "\n"


def print_rich(report: dict[str, Any], console: Any, verbose: bool = False) -> None:
    """The content of :func:`render_plain` on a terminal, fitted to ``console.width``.

    Layers that need a look are in yellow.
    """
    from rich.text import Text

    layers = table_layers(report)
    table = layout([c for c, _ in COLUMNS], rows(report), console.width)
    head, after = _sections(report, verbose, table.hidden)
    for line in head:
        console.print(line, markup=False, highlight=False)
    console.print()
    for line in table.lines():
        style = "bold" if line.header else ""
        if line.row is not None and flagged(layers[line.row]):
            style = "yellow"
        console.print(Text(line.text, style=style), no_wrap=True, crop=False)
    for title, lines in after:
        console.print()
        if title:
            console.print(f"{title}:", markup=False, highlight=False, style="dim")
        for line in lines:
            console.print(f"  {line}" if title else line, markup=False, highlight=False)
