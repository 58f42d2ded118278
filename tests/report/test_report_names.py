"""Layer names in tables: shortened names stay distinct at any width, and a name holding a
newline or a '|' cannot break a row (fresh users' findings)."""

from __future__ import annotations

import io

import pytest
from report_fixtures import build_analyze_report
from rich.console import Console

from spectracli.report.text import shorten_unique
from spectracli.results import summarize

NAMES = [f"encoder.layers.{i}.attention.self.query.weight" for i in (0, 1, 10, 11)]


@pytest.mark.parametrize("width", [8, 10, 12, 16, 20, 24, 30])
def test_shortened_names_stay_distinct(width):
    short = shorten_unique([*NAMES, NAMES[0]], width)
    assert all(len(s) <= width for s in short)
    assert len(set(short[:4])) == 4 and short[4] == short[0]  # equal inputs stay equal
    assert shorten_unique(["fc1.weight", "fc2.weight"], 40) == ["fc1.weight", "fc2.weight"]


@pytest.mark.parametrize("width", [60, 80])
def test_a_narrow_analyze_table_never_shows_two_layers_as_one(width):
    from spectracli.report.table import print_rich

    report = build_analyze_report(n_extra=3)
    for layer, name in zip(report["layers"], NAMES, strict=False):
        layer["name"] = name
    report["summary"] = summarize(report["layers"], len(report["skipped"]))
    buf = io.StringIO()
    print_rich(report, Console(file=buf, width=width, no_color=True, highlight=False,
                               force_terminal=False))
    rows = [line.split()[0] for line in buf.getvalue().splitlines()
            if line.startswith("enc")]
    first_table = rows[:len(NAMES)]  # the key column of the first table
    assert all(name not in first_table for name in NAMES)  # they were shortened
    assert len(set(first_table)) == len(NAMES), first_table


def test_a_newline_in_a_tensor_name_stays_in_its_row():
    import torch

    import spectracli
    from spectracli.report import render
    from spectracli.report.text import printable

    assert printable("a\nb\tc\x00") == "a\\nb\\tc\\x00" and printable("é q") == "é q"
    gen = torch.Generator().manual_seed(0)
    report = spectracli.analyze({"enc.a\nb.weight": torch.randn(32, 32, generator=gen),
                                 "x|y.weight": torch.randn(32, 32, generator=gen)},
                                farms=False, fit="median").to_dict()
    table = render(report, "table")
    rows = [line for line in table.splitlines() if "linear" in line]
    assert [r.split()[0] for r in rows] == ["enc.a\\nb.weight", "x|y.weight"]
    assert not any(line.startswith("b.weight") for line in table.splitlines())
    md = render(report, "markdown")
    assert "| enc.a\\nb.weight |" in md and "x\\|y.weight" in md


def test_a_fused_tensor_without_any_config_does_not_blame_config_json():
    import torch

    import spectracli

    gen = torch.Generator().manual_seed(0)
    state = {"gpt_neox.layers.0.attention.query_key_value.weight":
             torch.randn(96, 32, generator=gen)}
    (layer,) = spectracli.analyze(state, farms=False, fit="median").layers
    assert layer.rule == "fused.query_key_value.kept"
    (note,) = layer.warnings
    assert "config.json gives no" not in note
    assert "no config came with the weights to give num_attention_heads" in note
