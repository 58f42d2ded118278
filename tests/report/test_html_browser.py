"""The HTML report in a real browser: headless Chromium renders it with every embedded image
decoded (naturalWidth > 0) and writes a screenshot next to the HTML. Skipped when `chromium` is
not on PATH (.ci/run installs it where it can)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import build_analyze_report

from spectracli.report.html import render_html
from spectracli.results import summarize

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

WIDTH, HEIGHT = 1280, 2000

# Injected into a copy of the report only: records, after load, how many images decoded.
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images-total", String(imgs.length));
  document.body.setAttribute("data-images-ok", String(ok.length));
  document.body.setAttribute("data-widths",
    ok.map(function (i) { return i.naturalWidth; }).join(","));
});
</script>"""


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )


@pytest.fixture(scope="module")
def html_file(tmp_path_factory) -> Path:
    report = build_analyze_report()
    report["layers"] = report["layers"][:3]  # three layers keep the page (and test) small
    report["summary"] = summarize(report["layers"], len(report["skipped"]))
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


def test_chromium_screenshot_of_the_report(html_file, tmp_path):
    shot = html_file.with_suffix(".png")  # next to the HTML it shows
    result = chromium([f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
                       html_file.as_uri()], tmp_path / "profile")
    assert shot.is_file(), result.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    grey = pixels[..., :3].mean(axis=2)
    # A rendered page, not a blank one: some dark text and a good share of non-white pixels
    # (the figures and tables), measured on the whole 1280x2000 viewport.
    assert (grey < 0.3).mean() > 0.005
    assert (grey < 0.97).mean() > 0.05
    # More than two distinct colours: plots, tables and text, not a solid error page.
    assert len(np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def test_chromium_decodes_every_embedded_image(html_file, tmp_path):
    text = html_file.read_text(encoding="utf-8")
    n_img = text.count("<img ")
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
                      tmp_path / "profile")
    dom = result.stdout
    assert "<body" in dom, result.stderr[-2000:]
    total = re.search(r'data-images-total="(\d+)"', dom)
    ok = re.search(r'data-images-ok="(\d+)"', dom)
    assert total and ok, dom[:500]
    assert int(total.group(1)) == n_img >= 3
    assert int(ok.group(1)) == n_img
    widths = re.search(r'data-widths="([\d,]+)"', dom).group(1).split(",")
    declared = re.findall(r'<img [^>]*width="(\d+)"', text)
    assert widths == declared  # decoded images have the size the report states


OVERFLOW_PROBE = """<script>
window.addEventListener("load", function () {
  var doc = document.documentElement;
  var wide = Array.prototype.slice.call(document.querySelectorAll("body *")).filter(
    function (e) { var r = e.getBoundingClientRect();
                   return r.right > window.innerWidth + 1 && !e.closest(".scroll"); });
  document.body.setAttribute("data-scroll-width", String(doc.scrollWidth));
  document.body.setAttribute("data-inner-width", String(window.innerWidth));
  document.body.setAttribute("data-wide", wide.slice(0, 5).map(
    function (e) { return e.tagName + "." + e.className; }).join(","));
});
</script>"""


@pytest.mark.parametrize("kind", ["analyze", "hessian"])
def test_no_horizontal_overflow_at_1280_px(kind, tmp_path):
    """At 1280 px the page (tables, figures at their HTML size, long layer names) needs no
    horizontal scrolling: no element reaches past the viewport's right edge, except inside a
    container that scrolls on its own (the wide per-layer table)."""
    from report_fixtures import build_hessian_report

    if kind == "analyze":
        report = build_analyze_report(n_extra=2)
        report["layers"][0]["name"] = ("model.encoder.layers.11.self_attention."
                                       "query_key_value.weight_with_a_very_long_suffix")
        report["summary"] = summarize(report["layers"], len(report["skipped"]))
    else:
        report = build_hessian_report()
    page = tmp_path / "report.html"
    page.write_text(render_html(report).replace("</body>", OVERFLOW_PROBE + "</body>"),
                    encoding="utf-8")
    result = chromium([f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=10000",
                       "--dump-dom", page.as_uri()], tmp_path / "profile")
    dom = result.stdout
    scroll = re.search(r'data-scroll-width="(\d+)"', dom)
    inner = re.search(r'data-inner-width="(\d+)"', dom)
    assert scroll and inner, result.stderr[-2000:]
    assert int(inner.group(1)) == WIDTH
    wide = re.search(r'data-wide="([^"]*)"', dom).group(1)
    assert int(scroll.group(1)) <= WIDTH and not wide, (scroll.group(1), wide)


TABLE_PROBE = """<script>
window.addEventListener("load", function () {
  var box = document.querySelector("#layers .scroll");
  var row = document.querySelector("#layer-table tbody tr");
  function shown() { return Array.prototype.filter.call(row.cells, function (c) {
    return getComputedStyle(c).display !== "none"; }).length; }
  document.body.setAttribute("data-table", [box.scrollWidth, box.clientWidth, shown()].join(","));
  document.getElementById("all-columns").checked = true;
  document.body.setAttribute("data-all", String(shown()));
});
</script>"""


def test_the_layer_table_fits_1280_px_and_toggles_every_column(tmp_path):
    """The 19-column layer table scrolled inside its box at 1280 px: by default it shows the
    main columns and fits; one checkbox shows all 19 (the layer name stays in view, sticky)."""
    report = build_analyze_report(n_extra=2)
    report["layers"][0]["name"] = ("model.encoder.layers.11.self_attention."
                                   "query_key_value.weight_with_a_very_long_suffix")
    report["summary"] = summarize(report["layers"], len(report["skipped"]))
    page = tmp_path / "report.html"
    page.write_text(render_html(report).replace("</body>", TABLE_PROBE + "</body>"),
                    encoding="utf-8")
    result = chromium([f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=10000",
                       "--dump-dom", page.as_uri()], tmp_path / "profile")
    table = re.search(r'data-table="(\d+),(\d+),(\d+)"', result.stdout)
    assert table, result.stderr[-2000:]
    scroll_width, client_width, shown = map(int, table.groups())
    assert scroll_width <= client_width and shown == 11
    assert re.search(r'data-all="(\d+)"', result.stdout).group(1) == "19"
