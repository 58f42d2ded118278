"""A report in a notebook: a flat DataFrame, an HTML summary, matplotlib figures.

- :func:`flatten_layer` / :func:`layers_frame`: one row per analysed matrix, one column per key
  of the layer's JSON, nested objects joined with ``_`` (``farms`` -> ``farms_alpha``,
  ``farms_window_rows``...), so the columns are the JSON's names and the values its values
  (``*_ci`` intervals as ``*_ci_low`` / ``*_ci_high``; other lists such as ``shape`` and
  ``warnings`` stay lists; the stored eigenvalues, ``esd``, only with ``esd=True``). pandas
  is an optional extra: ``pip install "spectracli[pandas]"``.
- :func:`report_html`: what a notebook shows for a report: the source, the summary and the
  flagged layers with their reasons (the HTML report's pieces, without its page or figures).
- :func:`figures`: the report's figures as matplotlib ``Figure`` objects (no pyplot, no files).
"""

from __future__ import annotations

from html import escape
from typing import Any

PANDAS_HINT = 'to_pandas() needs pandas: pip install "spectracli[pandas]" (or pip install pandas)'


def flatten_layer(layer: dict[str, Any], esd: bool = False) -> dict[str, Any]:
    """A layer's JSON object with nested objects flattened, one column per number.

    ``{"farms": {"alpha": a}}`` -> ``{"farms_alpha": a}`` (a ``None`` object stays one column:
    ``farms: None``), and a confidence interval ``alpha_ci: [low, high]`` as ``alpha_ci_low``,
    ``alpha_ci_high``. The ESD arrays are left out unless ``esd``.

    Returns:
        The flat dict, keys in the layer's order.

    Example::

        >>> flatten_layer({"name": "w", "alpha_ci": [2.1, 2.9], "farms": {"esd": None}})
        {'name': 'w', 'alpha_ci_low': 2.1, 'alpha_ci_high': 2.9}
    """
    out: dict[str, Any] = {}

    def walk(obj: dict[str, Any], prefix: str) -> None:
        for key, value in obj.items():
            if key == "esd" and not esd:
                continue
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}_")
            elif key.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
                out[f"{prefix}{key}_low"], out[f"{prefix}{key}_high"] = value
            else:
                out[f"{prefix}{key}"] = value

    walk(layer, "")
    return out


def layers_frame(report: dict[str, Any], esd: bool = False) -> Any:
    """One row per analysed matrix of an analyze report dict, flat columns (see module doc).

    Returns:
        A ``pandas.DataFrame``, columns in first-seen order (:func:`flatten_layer`).

    Raises:
        ImportError: pandas is not installed.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(PANDAS_HINT) from None
    rows = [flatten_layer(layer, esd) for layer in report.get("layers") or []]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return pd.DataFrame(rows, columns=list(columns))


def report_html(report: dict[str, Any]) -> str:
    """The notebook view of an analyze report dict: source, summary, flagged layers (HTML)."""
    from spectracli.report.html import _kv_table, flagged_html, flagged_layers
    from spectracli.report.markdown import source_line, summary_rows

    layers = report.get("layers") or []
    flagged = flagged_layers(layers)
    source = source_line(report.get("source") or {}).replace("`", "")
    return "\n".join([
        '<div class="spectracli-report">',
        f"<p><b>spectracli weight spectra</b> of <code>{escape(source)}</code></p>",
        _kv_table(summary_rows(report)),
        f"<p><b>Flagged layers ({len(flagged)})</b></p>",
        flagged_html(flagged, link=False),
        '<p class="note">All layers: <code>report.to_pandas()</code>; figures: '
        "<code>report.plot()</code>.</p>",
        "</div>",
    ])


def figures(report: dict[str, Any]) -> list[Any]:
    """The figures of a report as matplotlib ``Figure`` objects.

    Returns:
        Alpha and norms by depth, then the ESDs, as in
        :func:`spectracli.report.plots.render_figures`; empty without layers.
    """
    from spectracli.report import plots

    layers = [layer for layer in report.get("layers") or [] if isinstance(layer, dict)]
    out = [plots.alpha_figure(layers), plots.norms_figure(layers)] if layers else []
    return out + [plots.esd_figure(group) for group in plots.esd_groups(layers)]
