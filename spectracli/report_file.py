"""The JSON report file: strict JSON out, checked dicts in.

JSON has no inf or nan, so :func:`dumps_report` writes them as the strings ``"inf"``, ``"-inf"``
and ``"nan"`` (documented in docs/reports.md) and :func:`parse_report` reads them back as
floats. A file that is not a report of this schema version is a one-line
:class:`~spectracli.errors.ReportError`.

Example::

    >>> from spectracli.report_file import dumps_report, parse_report
    >>> text = dumps_report({"schema_version": 1, "kind": "hessian", "trace": float("inf")},
    ...                     indent=None)
    >>> text
    '{"schema_version": 1, "kind": "hessian", "trace": "inf"}'
    >>> parse_report(text)["trace"]
    inf
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spectracli.errors import ReportError
from spectracli.schema import NONFINITE, REPORT_KINDS, SCHEMA_VERSION, nonfinite_text


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_safe(obj: Any) -> Any:
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan" (documented)."""
    if isinstance(obj, float):
        text = nonfinite_text(obj)
        return obj if text is None else text
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _restore(obj: Any) -> Any:
    if isinstance(obj, str) and obj in NONFINITE:
        return float(obj)
    if isinstance(obj, dict):
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    return obj


def dumps_report(report: dict[str, Any] | Any, indent: int | None = 2) -> str:
    """Serialise a report dict (or anything with ``to_dict``) to strict JSON."""
    data = report.to_dict() if hasattr(report, "to_dict") else report
    return json.dumps(json_safe(data), indent=indent, default=_json_default, allow_nan=False)


def parse_report(text: str, origin: str = "<string>") -> dict[str, Any]:
    """Parse and check a report: a JSON object with a known ``kind`` and our schema version.

    Returns:
        The report dict, ``"inf"``/``"nan"`` strings restored to floats.

    Raises:
        ReportError: not JSON, not a report, another schema version (the message says whether
            to upgrade or re-run), an unknown kind, or a kind without its main list.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{origin} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "kind" not in data:
        raise ReportError(f"{origin} is not a spectracli report (no schema_version/kind)")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "upgrade spectracli" if newer else "re-run analyze with this version"
        raise ReportError(
            f"{origin} has schema_version {version!r}; this spectracli reads "
            f"{SCHEMA_VERSION} ({hint})"
        )
    if data["kind"] not in REPORT_KINDS:
        raise ReportError(f"{origin} has unknown report kind {data['kind']!r}")
    if data["kind"] == "analyze" and not isinstance(data.get("layers"), list):
        raise ReportError(f"{origin} is an analyze report without a 'layers' list")
    if data["kind"] == "track" and not (
        isinstance(data.get("steps"), list)
        and all(isinstance(s, dict) and isinstance(s.get("layers"), list) for s in data["steps"])
    ):
        raise ReportError(f"{origin} is a track report without a 'steps' list of layer results")
    return _restore(data)


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a saved report.

    Returns:
        The report dict (:func:`parse_report`).

    Raises:
        ReportError: no such file, unreadable, or not a report of this schema (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such report file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read ({exc})") from None
    return parse_report(text, str(path))


def looks_like_report(path: str | Path) -> bool:
    """True for a ``.json`` path: a report rather than a checkpoint."""
    return str(path).lower().endswith(".json")
