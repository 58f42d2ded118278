"""Baselines: a saved report that later reports are compared against.

The baseline format *is* the versioned report (``spectracli.results``): any saved
``analyze --format json`` or ``hessian --format json`` output can serve, and
``spectracli baseline`` writes one with the stored ESD samples dropped (they are only for plots)
and a ``"baseline"`` block saying where and when it was made. Layers are matched by name.
"""

from __future__ import annotations

import copy
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectracli.errors import SpectraError
from spectracli.gate.subjects import Subject, subjects
from spectracli.report.text import article
from spectracli.results import load_report

# Settings that change no number, so differing values between report and baseline are fine.
# (For Hessian reports: batching, HVP mode and Lanczos caps change the cost, not the operator;
# the batch count, the process count and a warm start follow from those.)
NEUTRAL_SETTINGS = frozenset({
    "device", "threads", "store_esd", "trust_pickle", "include", "exclude", "progress",
    "batch_size", "hvp_mode", "max_basis", "max_hvps", "check_determinism",
    "n_batches", "n_empty_batches", "world_size", "graph_cached", "warm_start",
    "warm_start_vector",
})
# Outcomes a Hessian report keeps beside its settings (what the solver did, not what was
# asked): never a "settings differ" note.
SOLVER_OUTCOMES = frozenset({"n_restarts", "n_deflations", "deflation_hvps"})


class BaselineError(SpectraError):
    """A baseline that cannot be compared with the report (another kind or another model)."""


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline: any spectracli report file.

    Returns:
        The report dict.

    Raises:
        BaselineError: ``path`` is not a saved report (a checkpoint, say).
        ReportError: the file cannot be read as a report.
    """
    from spectracli.results import looks_like_report

    if not looks_like_report(path):
        from spectracli.track import CHECKPOINT_SUFFIXES

        p = Path(path)
        if p.is_dir() or p.name.lower().endswith((*CHECKPOINT_SUFFIXES, ".gguf", ".onnx")):
            raise BaselineError(f"baseline {path} is not a saved report (.json); write one with "
                                f"'spectracli baseline {path} --output baseline.json'")
        raise BaselineError(
            f"baseline {path} is not a saved JSON report (only the JSON report keeps every "
            "number); write one from the checkpoint with 'spectracli baseline CHECKPOINT "
            "--output baseline.json'")
    return load_report(path)


def make_baseline(report: dict[str, Any], origin: str) -> dict[str, Any]:
    """A baseline from a report dict: the report minus ESD samples, plus a provenance block."""
    out = copy.deepcopy(report)
    for layer in out.get("layers") or []:
        if isinstance(layer, dict):
            layer["esd"] = None
            if isinstance(layer.get("farms"), dict):
                layer["farms"]["esd"] = None
    out["baseline"] = {
        "from": origin,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return out


@dataclass
class LayerDiff:
    """How the report's layers line up with the baseline's (by name)."""

    common: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the baseline, not in the report
    new: list[str] = field(default_factory=list)  # in the report, not in the baseline
    shape_changes: dict[str, tuple[list[int] | None, list[int] | None]] = field(
        default_factory=dict
    )  # name -> (baseline shape, current shape)


def diff_layers(
    report: dict[str, Any], baseline: dict[str, Any], baseline_origin: str = "baseline"
) -> tuple[LayerDiff, dict[str, Subject]]:
    """Match layers by name; refuse a baseline of another kind or with no layer in common.

    Args:
        report: the report dict being gated.
        baseline: the baseline report dict.
        baseline_origin: how messages name the baseline (its path).

    Returns:
        The diff (common, missing, new layers and shape changes) and the baseline's subjects by
        name.

    Raises:
        BaselineError: the baseline is of another report kind, or shares no layer with the
            report.
    """
    kind, base_kind = report.get("kind"), baseline.get("kind")
    if kind != base_kind:
        raise BaselineError(f"{baseline_origin} is {article(str(base_kind))} report but the "
                            f"input is {article(str(kind))} report; a baseline must be of the "
                            "same kind")
    now = subjects(report)
    before = {s.name: s for s in subjects(baseline)}
    names_now = [s.name for s in now]
    diff = LayerDiff(
        common=[n for n in names_now if n in before],
        missing=[n for n in before if n not in set(names_now)],
        new=[n for n in names_now if n not in before],
    )
    if now and before and not diff.common:
        sample_now = ", ".join(names_now[:3])
        sample_base = ", ".join(list(before)[:3])
        raise BaselineError(
            f"{baseline_origin} shares no layer with the input (baseline has {sample_base}...; "
            f"input has {sample_now}...): is it a baseline of another model?"
        )
    by_name = {s.name: s for s in now}
    for name in diff.common:
        old, cur = before[name].shape, by_name[name].shape
        if old is not None and cur is not None and list(old) != list(cur):
            diff.shape_changes[name] = (list(old), list(cur))
    return diff, before


def settings_differences(report: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """Analysis settings that differ between report and baseline and change the numbers."""
    now = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    old = baseline.get("settings") if isinstance(baseline.get("settings"), dict) else {}
    out = []
    for key in sorted(set(now) | set(old)):
        if key in NEUTRAL_SETTINGS or key in SOLVER_OUTCOMES:
            continue
        if key in now and key in old and now[key] != old[key]:
            out.append(f"{key}: {old[key]!r} in the baseline, {now[key]!r} now")
    return out
