"""GitHub Actions output: workflow-command annotations and a step-summary Markdown table.

Annotations are ``::error file=F,title=T::message`` lines on stdout. GitHub shows at most 10
annotations of each type per step (and 50 per job), so the findings, already worst first, are
cut at :data:`MAX_PER_TYPE` per severity and one ``::notice`` says how many were left out.
Workflow-command escaping: in the message ``%``, CR and LF become ``%25``, ``%0D``, ``%0A``;
property values additionally escape ``:`` and ``,`` (``%3A``, ``%2C``).
"""

from __future__ import annotations

import os
from pathlib import Path

from spectracli.gate.evaluate import GateResult
from spectracli.gate.render import to_markdown

MAX_PER_TYPE = 10
LEVELS = {"error": "error", "warning": "warning"}


def escape_data(text: str) -> str:
    """``text`` escaped for a workflow command's message (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """``text`` escaped for a workflow command's property (also ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _repo_path(path: str) -> str:
    """GitHub matches ``file=`` against repository paths: relative to the working directory."""
    try:
        rel = os.path.relpath(Path(path).resolve(), Path.cwd().resolve())
    except ValueError:
        return path
    return path if rel.startswith("..") else Path(rel).as_posix()


def annotations(result: GateResult, max_per_type: int = MAX_PER_TYPE) -> list[str]:
    """The annotation lines, worst first, at most ``max_per_type`` errors and warnings each."""
    lines: list[str] = []
    shown = {level: 0 for level in LEVELS}
    left_out = 0
    for f in result.findings:
        level = LEVELS[f.severity]
        if shown[level] >= max_per_type:
            left_out += 1
            continue
        shown[level] += 1
        props = []
        if result.source:
            props.append(f"file={escape_property(_repo_path(result.source))}")
        title = f"spectracli {f.rule_id}" + (f": {f.layer}" if f.layer else "")
        props.append(f"title={escape_property(title)}")
        lines.append(f"::{level} {','.join(props)}::{escape_data(f.message)}")
    if left_out:
        lines.append(f"::notice title=spectracli gate::{left_out} more finding"
                     f"{'s' * (left_out != 1)} not annotated (GitHub shows {max_per_type} per "
                     "type per step); see the step summary or --format json")
    return lines


def append_step_summary(result: GateResult, strict: bool = False) -> Path | None:
    """Append the Markdown summary to ``$GITHUB_STEP_SUMMARY`` when it is set."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    # Appending is the protocol here (other steps' summaries share the file), not a rewrite.
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(to_markdown(result, strict) + "\n")
    return path
