"""The JSON report contract: strict JSON, inf/nan round trip, schema version checks."""

import json
import math

import pytest

from spectracli.errors import ReportError
from spectracli.results import SCHEMA_VERSION, dumps_report, layer_metric, parse_report


def _report(**over):
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": "analyze",
        "layers": [{"name": "a", "condition_number": math.inf, "farms": {"alpha": 2.5}}],
    }
    data.update(over)
    return data


def test_infinities_are_strict_json_and_round_trip():
    text = dumps_report(_report())
    json.loads(text)  # strict JSON: no bare Infinity
    assert '"inf"' in text
    back = parse_report(text)
    assert back["layers"][0]["condition_number"] == math.inf


def test_farms_metric_lookup():
    layer = _report()["layers"][0]
    assert layer_metric(layer, "farms.alpha") == 2.5
    assert layer_metric(layer, "condition_number") == math.inf
    assert layer_metric({"farms": None}, "farms.alpha") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "not a spectracli report"),
        (json.dumps(_report(schema_version=SCHEMA_VERSION + 1)), "upgrade spectracli"),
        (json.dumps(_report(kind="weird")), "unknown report kind"),
        (json.dumps(_report(layers=None)), "without a 'layers' list"),
    ],
)
def test_bad_reports_are_refused_with_one_line(text, message):
    with pytest.raises(ReportError, match=message):
        parse_report(text, "r.json")


def test_results_re_exports_each_piece_from_the_module_that_owns_it():
    # One concern per module (docs/design.md); ``spectracli.results`` keeps every name it had.
    import spectracli.records
    import spectracli.report_file
    import spectracli.results
    import spectracli.schema
    import spectracli.spectral.powerlaw
    import spectracli.spectral.results
    import spectracli.summary

    owners = {
        spectracli.schema: ("SCHEMA_VERSION", "REPORT_KINDS", "LAYER_METRICS", "layer_metric"),
        spectracli.records: ("Record", "as_record", "JsonFields"),
        spectracli.spectral.results: ("EsdSample", "FarmsResult"),
        spectracli.spectral.powerlaw: ("PowerLawFit",),
        spectracli.summary: ("summarize", "group_summaries", "norm_products"),
        spectracli.report_file: ("dumps_report", "parse_report", "load_report",
                                 "looks_like_report"),
    }
    for module, names in owners.items():
        for name in names:
            assert getattr(spectracli.results, name) is getattr(module, name), name
            assert name in spectracli.results.__all__, name
    # The result types of the spectra are the math's, not the report's.
    assert spectracli.results.FarmsResult.__module__ == "spectracli.spectral.results"
