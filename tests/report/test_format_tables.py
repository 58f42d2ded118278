"""Every ReportFormat member has its own renderer, for analyze and track reports (issue 18)."""

import importlib

from spectracli import report
from spectracli.options import ReportFormat
from spectracli.report import track


def test_every_report_format_has_a_renderer():
    assert set(report._RENDERERS) == set(ReportFormat) == set(track._TRACK_RENDERERS)
    for module, name in report._RENDERERS.values():
        assert callable(getattr(importlib.import_module(module), name))
    assert len(set(track._TRACK_RENDERERS.values())) == len(ReportFormat)
