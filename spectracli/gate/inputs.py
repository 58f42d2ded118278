"""The gate's input: a saved report (read, never recomputed) or a checkpoint (analysed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spectracli.gate.rules import ConfigError
from spectracli.results import load_report, looks_like_report


def analyze_config(settings: dict[str, Any], origin: str, **overrides: Any) -> Any:
    """An ``AnalyzeConfig`` from a config's analyze settings plus command-line overrides.

    Returns:
        The config; overrides that are None leave the setting as the file has it.

    Raises:
        ConfigError: a key that is not an analyze setting (``origin`` names the file).
    """
    from spectracli.analyze_config import AnalyzeConfig

    known = {f.name for f in dataclasses.fields(AnalyzeConfig)}
    for key in settings:
        if key not in known:
            raise ConfigError(f"{origin}: analyze key {key!r} is not an analyze setting of this "
                              f"spectracli; valid: {', '.join(sorted(known))}")
    values = dict(settings)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return AnalyzeConfig(**values)


def load_input(
    path: str | Path,
    settings: dict[str, Any] | None = None,
    *,
    origin: str = "config",
    progress: Callable[[int, int, str], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A report dict: a saved report is loaded, anything else analysed as a checkpoint.

    A checkpoint is analysed with ``settings`` (the config's analyze table) and ``overrides``.

    Returns:
        The report dict (``kind`` analyze, hessian or track).
    """
    if looks_like_report(path):
        return load_report(path)
    from spectracli.analyze import analyze_checkpoint

    config = analyze_config(settings or {}, origin, **overrides)
    return analyze_checkpoint(path, config, progress=progress).to_dict()
