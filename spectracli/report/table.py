"""The per-layer table of an analyze report: rich on a terminal, plain aligned text otherwise."""

from __future__ import annotations

from collections import Counter
from typing import Any

from spectracli.report.numbers import fmt_num

COLUMNS = (
    ("layer", "name"),
    ("kind", "kind"),
    ("shape", "shape"),
    ("sigma_max", "sigma_max"),
    ("cond", "condition_number"),
    ("stable_rank", "stable_rank"),
    ("alpha", "alpha"),
    ("farms_alpha", "farms.alpha"),
    ("ks_D", "ks_distance"),
    ("spikes", "num_spikes"),
    ("status", "status"),
)


def _cell(layer: dict[str, Any], key: str) -> str:
    if key == "shape":
        return "x".join(str(d) for d in layer.get("shape") or [])
    if key == "kind" and layer.get("conv_view"):  # which view the kernel was read in
        return f"{layer.get('kind')} {layer['conv_view']}"
    if key.startswith("farms."):
        return fmt_num((layer.get("farms") or {}).get(key[6:]))
    if key == "status":
        status = layer.get("status", "?")
        if status == "ok" and not str(layer.get("fit_status") or "ok").startswith("ok"):
            return "fit failed"
        return status + (f" ({len(layer['warnings'])} warn)" if layer.get("warnings") else "")
    return fmt_num(layer.get(key))


def table_layers(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The layers as the table shows them: the experts of one stacked tensor (results with a
    ``group``) as one row of pooled figures (worst cond, max sigma_max, mean alpha), in place of
    the first member; every expert stays in the JSON/CSV report."""
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
    return [[_cell(layer, key) for _, key in COLUMNS] for layer in table_layers(report)]


def skipped_lines(report: dict[str, Any], limit: int = 20) -> list[str]:
    """Skipped tensors with reasons; beyond ``limit`` the rest are counted by reason."""
    skipped = report.get("skipped", [])
    lines = [f"{s['name']}: {s['reason']}" for s in skipped[:limit]]
    rest = Counter(s["reason"] for s in skipped[limit:])
    lines += [f"... and {n} more: {reason}" for reason, n in rest.most_common()]
    return lines


def summary_line(report: dict[str, Any]) -> str:
    s = report.get("summary", {})
    src = report.get("source", {})
    settings = report.get("settings", {})
    return (
        f"{src.get('path')} ({src.get('format')}): {s.get('n_layers')} layers analysed, "
        f"{s.get('n_skipped')} tensors skipped; fit={settings.get('fit')}; "
        f"mean alpha {fmt_num(s.get('mean_alpha'), 3)}, "
        f"mean FARMS alpha {fmt_num(s.get('mean_farms_alpha'), 3)}, "
        f"max cond {fmt_num(s.get('max_condition_number'), 3)}"
    )


def render_plain(report: dict[str, Any]) -> str:
    """Aligned plain text: header, one line per layer, skipped tensors, summary."""
    header = [title for title, _ in COLUMNS]
    body = rows(report)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
           for r in [header, *body]]
    warned = [(layer["name"], w) for layer in report.get("layers", []) for w in layer["warnings"]]
    if warned:
        out.append("")
        out.append("warnings:")
        out += [f"  {name}: {w}" for name, w in warned]
    if report.get("skipped"):
        out.append("")
        out.append("skipped:")
        out += [f"  {line}" for line in skipped_lines(report)]
    out.append("")
    out.append(summary_line(report))
    return "\n".join(out) + "\n"


def print_rich(report: dict[str, Any], console: Any) -> None:
    """The same content as :func:`render_plain`, as a rich table for a terminal."""
    from rich.table import Table

    table = Table(title="spectracli analyze", show_lines=False, header_style="bold")
    for title, _ in COLUMNS:
        numeric = title not in ("layer", "kind", "shape", "status")
        table.add_column(title, justify="right" if numeric else "left", no_wrap=title == "layer")
    for layer, row in zip(table_layers(report), rows(report), strict=True):
        style = None if layer.get("status") == "ok" and not layer.get("warnings") else "yellow"
        table.add_row(*row, style=style)
    console.print(table)
    for layer in report.get("layers", []):
        for w in layer["warnings"]:
            console.print(f"[yellow]warning[/] {layer['name']}: {w}", highlight=False)
    if report.get("skipped"):
        console.print(f"[dim]skipped {len(report['skipped'])} tensors:[/]")
        for line in skipped_lines(report):
            console.print(f"[dim]  {line}[/]", highlight=False)
    console.print(summary_line(report), highlight=False)
