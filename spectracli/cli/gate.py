"""``spectracli gate`` and ``spectracli baseline``: threshold rules for CI (see docs/ci.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from spectracli.cli.analyze import progress_callback
from spectracli.cli.common import (
    TRUST_PICKLE_HELP,
    check_outputs,
    choice_option,
    device_option,
    emit,
    handle_errors,
    stdout_console,
    verbose_option,
)
from spectracli.options import GateFormat
from spectracli.report.text import article, display_path, plural

TARGET_HELP = "A checkpoint (analysed) or a saved report (.json)."


def _config(config: Path | None, no_config: bool):
    from spectracli.gate.rules import GateConfig, find_config, load_config

    if config is not None:
        return load_config(config)
    if no_config:
        return GateConfig()
    found = find_config()
    return load_config(found) if found else GateConfig()


@handle_errors
def gate(
    target: Path = typer.Argument(..., metavar="TARGET", help=TARGET_HELP),
    config: Path | None = typer.Option(
        None, "--config", "-c", metavar="FILE", help="Config file (default: nearest "
        "spectracli.toml or pyproject.toml with [tool.spectracli])."
    ),
    no_config: bool = typer.Option(False, "--no-config", help="Ignore config files."),
    baseline: Path | None = typer.Option(
        None, "--baseline", "-b", metavar="REPORT",
        help="Baseline report to compare with (overrides the config)."
    ),
    min_: list[str] = typer.Option(
        [], "--min", metavar="METRIC=VALUE",
        help="Quick rule METRIC[@GLOB]=VALUE: the metric must be >= VALUE."
    ),
    max_: list[str] = typer.Option(
        [], "--max", metavar="METRIC=VALUE",
        help="Quick rule METRIC[@GLOB]=VALUE: the metric must be <= VALUE."
    ),
    confident: bool = typer.Option(
        False, "--confident", help="--min/--max on alpha or farms.alpha fail only when the "
        "whole alpha_ci interval is past the limit."
    ),
    max_rel_increase: list[str] = typer.Option(
        [], "--max-rel-increase", metavar="METRIC=VALUE",
        help="Quick rule METRIC[@GLOB]=R: at most (1+R) x baseline."
    ),
    max_abs_change: list[str] = typer.Option(
        [], "--max-abs-change", metavar="METRIC=VALUE",
        help="Quick rule METRIC[@GLOB]=D: within D of the baseline."
    ),
    output_format: GateFormat = choice_option(
        GateFormat.TABLE, "--format", "-f",
        help="Findings format (table with --output writes Markdown, as markdown does)."),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                       help="Write the findings to this file instead of stdout."),
    junit: Path | None = typer.Option(None, "--junit", metavar="FILE",
                                      help="Write JUnit XML here."),
    sarif: Path | None = typer.Option(None, "--sarif", metavar="FILE",
                                      help="Write SARIF 2.1.0 here."),
    github: bool = typer.Option(
        False, "--github", help="Print GitHub annotations; append to $GITHUB_STEP_SUMMARY."
    ),
    strict: bool = typer.Option(False, "--strict", help="Warnings fail too (exit 1)."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even when rules fail."),
    device: str | None = device_option(None, " Checkpoints only."),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help=TRUST_PICKLE_HELP),
    verbose: bool = verbose_option(),
) -> None:
    """Check a checkpoint or report against threshold rules; exit 1 when an error rule fails.

    Exit codes: 0 pass, 1 an error-severity violation (or any warning with --strict),
    2 usage, config or load error.
    \f

    Raises:
        ConfigError: no rules to check, or options that exclude each other (one line, exit 2).
        SpectraError: a config, baseline or input that cannot be used (one line, exit 2).
        typer.Exit: the gate's exit code.
    """
    from spectracli.gate.baseline import load_baseline
    from spectracli.gate.evaluate import evaluate
    from spectracli.gate.inputs import load_input
    from spectracli.gate.rules import (
        ConfigError,
        check_consistent,
        check_unique_ids,
        parse_quick_rule,
    )

    if github and output_format == GateFormat.JSON and output is None:
        # Annotations are stdout lines too: they would corrupt the JSON document.
        raise ConfigError("--github prints annotations on stdout: with --format json, "
                          "write the JSON with --output FILE")
    check_outputs({"--output": output, "--junit": junit, "--sarif": sarif})
    cfg = _config(config, no_config)
    for kind, texts in (("min", min_), ("max", max_), ("max_rel_increase", max_rel_increase),
                        ("max_abs_change", max_abs_change)):
        cfg.rules.extend(parse_quick_rule(kind, t, confident=confident) for t in texts)
    if confident and not any(r.confidence for r in cfg.rules):
        raise ConfigError("--confident applies to --min/--max rules on alpha or farms.alpha, "
                          "and none was given")
    check_unique_ids(cfg.rules)
    check_consistent(cfg.rules)
    baseline_path = baseline or cfg.baseline
    if not cfg.rules and not baseline_path:
        where = f"{cfg.source} has no rules" if cfg.source else "no config file was found"
        raise ConfigError(f"no rules to check: {where}; add [[tool.spectracli.gate.rules]] to "
                          "pyproject.toml (see docs/ci.md), pass --max/--min METRIC=VALUE, or "
                          "--baseline FILE for the default drift checks")
    base = load_baseline(baseline_path) if baseline_path else None
    if not cfg.rules and base is not None:
        from spectracli.gate.rules import default_rules

        cfg.rules = default_rules(str(base.get("kind")))
        limits = ", ".join(
            f"{r.metric} +{r.max_rel_increase:.0%}" if r.max_rel_increase is not None
            else f"{r.metric} +-{r.max_abs_change:g}" for r in cfg.rules)
        print(f"note: no rules configured, so the default checks against the baseline run: "
              f"layer set and shapes (errors), drift of {limits} (warnings); see docs/ci.md",
              file=sys.stderr)
    with progress_callback() as progress:
        report = load_input(
            target, cfg.analyze, origin=str(cfg.source or "config"), progress=progress,
            device=device, trust_pickle=trust_pickle or None, store_esd=False,
        )
    result = evaluate(
        cfg, report, base, source=display_path(target),
        baseline_source=display_path(baseline_path),
    )
    strict = strict or cfg.strict
    _write_findings(result, strict, junit=junit, sarif=sarif, github=github,
                    output_format=output_format, output=output, verbose=verbose)
    raise typer.Exit(result.exit_code(strict=strict, exit_zero=exit_zero))


def _write_findings(result: Any, strict: bool, *, junit: Path | None, sarif: Path | None,
                    github: bool, output_format: GateFormat, output: Path | None,
                    verbose: bool) -> None:
    """The gate's outputs: JUnit and SARIF files, GitHub annotations, then the findings."""
    from spectracli.gate import render

    if junit is not None:
        from spectracli.fileio import write_text_atomic
        from spectracli.gate.junit import to_junit

        write_text_atomic(junit, to_junit(result, strict))
    if sarif is not None:
        from spectracli.fileio import write_text_atomic
        from spectracli.gate.sarif import to_sarif_json

        write_text_atomic(sarif, to_sarif_json(result) + "\n")
    if github:
        from spectracli.gate.github import annotations, append_step_summary

        for line in annotations(result):
            print(line)
        append_step_summary(result, strict)
    if output_format == GateFormat.JSON:
        emit(render.to_json(result, strict), output)
    elif output is not None or output_format == GateFormat.MARKDOWN:
        emit(render.to_markdown(result, strict), output)
    else:
        render.print_table(result, stdout_console(), strict, verbose=verbose)
    sys.stdout.flush()


@handle_errors
def baseline(
    target: Path = typer.Argument(..., metavar="TARGET", help=TARGET_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", metavar="FILE",
        help="Where to write (default: the config's gate.baseline)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", metavar="FILE",
                                       help="Config file."),
    no_config: bool = typer.Option(False, "--no-config", help="Ignore config files."),
    device: str | None = device_option(None, " Checkpoints only."),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help=TRUST_PICKLE_HELP),
) -> None:
    """Write (or overwrite, to update) a baseline report for `gate --baseline`.

    \f

    Raises:
        ConfigError: no output given and no ``baseline`` in the config (one line, exit 2).
    """
    from spectracli.fileio import write_text_atomic
    from spectracli.gate.baseline import make_baseline
    from spectracli.gate.inputs import load_input
    from spectracli.gate.rules import ConfigError
    from spectracli.results import dumps_report

    cfg = _config(config, no_config)
    target_path = output or cfg.baseline
    if target_path is None:
        raise ConfigError("no output: pass --output baseline.json or set 'baseline' in the "
                          "[tool.spectracli.gate] table")
    check_outputs({"--output" if output else "the config's baseline": target_path})
    with progress_callback() as progress:
        report = load_input(
            target, cfg.analyze, origin=str(cfg.source or "config"), progress=progress,
            device=device, trust_pickle=trust_pickle or None, store_esd=False,
        )
    data = make_baseline(report, display_path(target))
    write_text_atomic(target_path, dumps_report(data) + "\n")
    n = len(data.get("layers") or []) if data.get("kind") == "analyze" else 1
    print(f"wrote {display_path(target_path)}: {article(str(data.get('kind')))} baseline of "
          f"{display_path(target)} ({plural(n, 'layer')})", file=sys.stderr)
