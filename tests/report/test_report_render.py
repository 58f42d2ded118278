"""Markdown and HTML reports: the numbers come back out, flagged layers come first with reasons,
the HTML is self-contained (embedded images, no network), and `report` re-renders saved files."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spectracli.cli.app import app
from spectracli.errors import ReportError
from spectracli.report.html import render_html
from spectracli.report.markdown import LAYER_COLUMNS, flag_reasons, render_markdown
from spectracli.results import SCHEMA_VERSION, dumps_report

# %.6g keeps 6 significant digits: |x - printed| <= 0.5e-5 * 10^floor(log10|x|) <= 5e-6 |x|.
SIX_DIGITS_REL = 5e-6


@pytest.fixture(scope="module")
def analyze_html(analyze_report) -> str:
    return render_html(analyze_report)


def md_tables(text: str) -> dict[str, list[list[str]]]:
    """Markdown tables by the heading above them: rows of cells (header row first)."""
    tables: dict[str, list[list[str]]] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|") and heading is not None:
            if re.fullmatch(r"\|(-+:?\|)+", line.replace(" ", "")):
                continue
            cells = [c.strip().replace("\\|", "|")
                     for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            tables.setdefault(heading, []).append(cells)
    return tables


def parse_cell(cell: str):
    if cell == "-":
        return None
    if cell in ("inf", "-inf", "nan"):
        return float(cell)
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def assert_same_number(printed, value, where):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        assert printed is None, where
    elif isinstance(value, bool):
        assert printed == ("yes" if value else "no"), where
    elif isinstance(value, int):
        assert printed == value, where
    elif isinstance(value, float) and math.isinf(value):
        assert printed == value, where
    elif isinstance(value, float):
        assert isinstance(printed, (int, float)), where
        assert printed == pytest.approx(value, rel=SIX_DIGITS_REL, abs=0), where
    else:
        assert printed == value, where


def test_markdown_round_trips_every_layer_number(analyze_report):
    tables = md_tables(render_markdown(analyze_report))
    layers = analyze_report["layers"]
    table = tables[f"Layers ({len(layers)})"]
    header, rows = table[0], table[1:]
    assert header == ["#"] + [h for h, _ in LAYER_COLUMNS]
    assert len(rows) == len(layers)
    checked = 0
    for i, (row, layer) in enumerate(zip(rows, layers, strict=True)):
        assert parse_cell(row[0]) == i
        for (name, get), cell in zip(LAYER_COLUMNS, row[1:], strict=True):
            value = get(layer)
            if name in ("layer", "kind", "matrix", "fit", "status"):
                assert cell == (value if value is not None else "-"), (layer["name"], name)
                continue
            assert_same_number(parse_cell(cell), value, (layer["name"], name))
            checked += 1
    assert checked >= 11 * len(layers)


def test_markdown_summary_numbers_round_trip(analyze_report):
    summary = {row[0]: parse_cell(row[1]) for row in md_tables(render_markdown(analyze_report))[
        "Summary"][1:]}
    s = analyze_report["summary"]
    for label, key in [("mean alpha", "mean_alpha"), ("mean FARMS alpha", "mean_farms_alpha"),
                       ("max sigma_max", "max_sigma_max"), ("layers analysed", "n_layers"),
                       ("max condition number", "max_condition_number"),
                       ("tensors skipped", "n_skipped"), ("fits failed", "n_fit_failed")]:
        assert_same_number(summary[label], s[key], label)


def test_flagged_layers_first_with_reasons(analyze_report):
    text = render_markdown(analyze_report)
    assert text.index("## Summary") < text.index("## Flagged layers") < text.index("## Layers")
    flagged = {row[0]: row[1] for row in md_tables(text)[
        next(k for k in md_tables(text) if k.startswith("Flagged"))][1:]}
    assert "rank deficient" in flagged["low_rank.weight"]
    assert "alpha fit too_few_eigenvalues" in flagged["tiny.weight"]
    assert "status nonfinite" in flagged["broken.weight"]
    # Every layer whose alpha is outside [2, 6] is flagged, with the heuristic label.
    for layer in analyze_report["layers"]:
        a = layer.get("alpha")
        if isinstance(a, float) and not 2 <= a <= 6:
            assert "heuristic range [2, 6]" in flagged[layer["name"]]
    assert "fc1.weight" not in flagged


def test_flag_reasons_do_not_repeat_what_analyze_warned():
    layer = {"name": "x", "status": "ok", "fit_status": "ok", "alpha": 7.0,
             "rank_deficient": True, "numerical_rank": 3,
             "warnings": ["alpha 7.00 is above 6 (light tail, random-like); heuristic range "
                          "[2, 6], not a verdict on training",
                          "rank deficient: condition number is infinite"]}
    assert flag_reasons(layer) == layer["warnings"]
    bare = dict(layer, warnings=[])
    reasons = flag_reasons(bare)
    assert len(reasons) == 2 and "rank deficient" in reasons[0] and "above 6" in reasons[1]


def test_markdown_skipped_tensors_with_reasons(analyze_report):
    tables = md_tables(render_markdown(analyze_report))
    skipped = tables["Skipped tensors (2)"][1:]
    assert skipped == [[s["name"], "x".join(map(str, s["shape"])), s["reason"]]
                       for s in analyze_report["skipped"]]


def test_markdown_escapes_pipes_in_names(analyze_report):
    report = json.loads(dumps_report(analyze_report))
    report["layers"][0]["name"] = "odd|name"
    rows = md_tables(render_markdown(report))[f"Layers ({len(report['layers'])})"]
    assert rows[1][1] == "odd|name"
    assert len(rows[1]) == len(rows[0])


def test_hessian_markdown_round_trips_eigenvalues(hessian_report):
    text = render_markdown(hessian_report)
    rows = md_tables(text)[f"Top eigenvalues ({len(hessian_report['eigenvalues'])})"][1:]
    for k, row in enumerate(rows):
        assert parse_cell(row[0]) == k + 1
        assert_same_number(parse_cell(row[1]), hessian_report["eigenvalues"][k], k)
        assert_same_number(parse_cell(row[2]), hessian_report["residuals"][k], k)
        assert row[3] == ("yes" if hessian_report["converged"][k] else "no")
    assert "**Not converged**: eigenpairs 8" in text
    summary = {r[0]: parse_cell(r[1]) for r in md_tables(text)["Summary"][1:]}
    assert_same_number(summary["trace (Hutch++)"], hessian_report["trace"]["estimate"], "trace")
    assert summary["parameters"] == hessian_report["n_params"]


@pytest.mark.parametrize("bad", [{"kind": "other"}, {"kind": "analyze"}, {"kind": "hessian"}, []])
def test_renderers_refuse_what_is_not_a_report(bad):
    with pytest.raises(ReportError):
        render_markdown(bad)
    with pytest.raises(ReportError):
        render_html(bad)


# ---------------------------------------------------------------------------------------------
# HTML


class Collector(HTMLParser):
    """Elements with attributes and the text of table cells, via the stdlib parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.rows: dict[str, list[str]] = {}  # tr id -> cell texts
        self._row: str | None = None
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "tr" and attrs.get("id"):
            self._row = attrs["id"]
            self.rows[self._row] = []
        if tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            self.rows[self._row].append("".join(self._cell))
            self._cell = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse_html(text: str) -> Collector:
    parser = Collector()
    parser.feed(text)
    parser.close()
    return parser


def test_html_is_self_contained_with_summary_rows_and_images(analyze_report, analyze_html):
    text = analyze_html
    doc = parse_html(text)
    tags = [t for t, _ in doc.elements]
    assert tags[0] == "html"
    ids = [a.get("id") for _, a in doc.elements if a.get("id")]
    # Summary first, then flagged layers, table, figures, skipped.
    order = ["summary", "flagged", "layers", "figures", "skipped"]
    assert [i for i in ids if i in order] == order
    # One table row per layer, in depth order, with the layer's name and exact sort values.
    for i, layer in enumerate(analyze_report["layers"]):
        cells = doc.rows[f"layer-{i}"]
        assert cells[1] == layer["name"]
    sort_values = [a["data-v"] for t, a in doc.elements if t == "td" and "data-v" in a]
    sigma = [la["sigma_max"] for la in analyze_report["layers"] if la["sigma_max"] is not None]
    for value in sigma:
        assert repr(value) in sort_values  # exact, round-trips through float()
    # Embedded images: each a valid PNG of the stated size; nothing loaded from elsewhere.
    images = [a for t, a in doc.elements if t == "img"]
    assert len(images) >= 3
    for img in images:
        assert img["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (int(img["width"]), int(img["height"]))
    for tag, attrs in doc.elements:
        for key in ("src", "href"):
            value = attrs.get(key, "")
            assert not re.match(r"^(https?:)?//", value), (tag, value)
        if tag in ("script", "link", "iframe", "object", "embed"):
            assert "src" not in attrs and "href" not in attrs
    csp = next(a["content"] for t, a in doc.elements if a.get("http-equiv") ==
               "Content-Security-Policy")
    assert "default-src 'none'" in csp and "img-src data:" in csp


def test_html_escapes_names_and_flags_rows(analyze_report, analyze_html):
    text = analyze_html
    assert "model<1>" not in text and "model&lt;1&gt;" in text
    doc = parse_html(text)
    flagged_rows = [a["id"] for t, a in doc.elements if t == "tr" and a.get("class") == "flagged"]
    expected = [f"layer-{i}" for i, la in enumerate(analyze_report["layers"]) if flag_reasons(la)]
    assert flagged_rows == expected
    body_text = "".join(doc.text)
    for s in analyze_report["skipped"]:
        assert s["reason"] in body_text


def test_html_hessian_and_svg_images(hessian_report):
    doc = parse_html(render_html(hessian_report, image_format="svg"))
    images = [a for t, a in doc.elements if t == "img"]
    assert len(images) == 2
    for img in images:
        assert img["src"].startswith("data:image/svg+xml;base64,")
        assert b"<svg" in base64.b64decode(img["src"].split(",", 1)[1])
    assert "Not converged:" in "".join(doc.text)


# ---------------------------------------------------------------------------------------------
# The `report` command


def _save(tmp_path: Path, report: dict, name: str = "r.json") -> Path:
    path = tmp_path / name
    path.write_text(dumps_report(report))
    return path


def test_report_command_rerenders_markdown_to_stdout(tmp_path, analyze_report):
    path = _save(tmp_path, analyze_report)
    result = CliRunner().invoke(app, ["report", str(path), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == render_markdown(analyze_report).strip()


def test_report_command_writes_html_and_json_files(tmp_path, analyze_report, hessian_report):
    path = _save(tmp_path, dict(analyze_report, layers=analyze_report["layers"][:1]))
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(path), "-f", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    hpath = _save(tmp_path, hessian_report, "h.json")
    result = CliRunner().invoke(app, ["report", str(hpath), "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["eigenvalues"] == hessian_report["eigenvalues"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"schema_version": 1, "kind": "analyze", "layers": [', "not valid JSON"),
        ('{"hello": "world"}', "not a spectracli report"),
        (json.dumps({"schema_version": SCHEMA_VERSION + 1, "kind": "analyze", "layers": []}),
         "upgrade spectracli"),
        (json.dumps({"schema_version": 0, "kind": "analyze", "layers": []}), "re-run analyze"),
    ],
)
def test_report_command_bad_input_one_line_exit_2_nothing_written(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = tmp_path / "out.md"
    result = CliRunner().invoke(app, ["report", str(path), "-o", str(out)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spectracli: error:") and message in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_report_command_unknown_format(tmp_path, analyze_report):
    path = _save(tmp_path, analyze_report)
    result = CliRunner().invoke(app, ["report", str(path), "-f", "pdf"])
    assert result.exit_code == 2 and "--format" in result.stderr


def test_report_command_table_and_csv_of_analyze_reports(tmp_path, analyze_report):
    path = _save(tmp_path, analyze_report)
    table = CliRunner().invoke(app, ["report", str(path)])  # default: table
    assert table.exit_code == 0, table.output
    for layer in analyze_report["layers"]:
        assert layer["name"] in table.stdout
    csv_out = CliRunner().invoke(app, ["report", str(path), "-f", "csv"])
    assert csv_out.exit_code == 0, csv_out.output
    assert len(csv_out.stdout.strip().splitlines()) == 1 + len(analyze_report["layers"])


def test_report_command_hessian_table_is_markdown_and_csv_is_refused(tmp_path, hessian_report):
    path = _save(tmp_path, hessian_report, "h.json")
    table = CliRunner().invoke(app, ["report", str(path)])
    assert table.exit_code == 0 and table.stdout.strip() == render_markdown(hessian_report).strip()
    csv_out = CliRunner().invoke(app, ["report", str(path), "-f", "csv"])
    assert csv_out.exit_code == 2 and "csv is for analyze reports" in csv_out.stderr
