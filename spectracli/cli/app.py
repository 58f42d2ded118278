"""The ``spectracli`` command: a typer app with one module per command."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import typer
import typer.core

from spectracli import __version__


class OneLineErrors(typer.core.TyperGroup):
    """The command group, with every parsing error as one line and exit code 2.

    A bad value, unknown option or missing argument is printed as one ``spectracli: error:
    ...`` line on stderr, like the errors of the commands themselves.
    """

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Run the command line; parsing errors as one line on stderr, exit code 2."""
        from spectracli.cli.common import EXIT_USAGE, usage_error_line

        args = _with_format_aliases(_argv(args))
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                # `spectracli` alone (or a group without its command): the help, exit 2.
                print(exc.format_message(), file=sys.stderr)
                code = EXIT_USAGE
            else:
                command = _command_of(args)
                where = f"{command}: " if command else ""
                print(f"spectracli: error: {where}{usage_error_line(exc, _argv(args))} "
                      f"(see 'spectracli {command + ' ' if command else ''}--help')",
                      file=sys.stderr)
                code = getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE
            if not standalone_mode:
                raise
            sys.exit(code)
        except typer.Abort:
            print("spectracli: error: aborted", file=sys.stderr)
            if not standalone_mode:
                raise
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


class PlainUsage(typer.core.TyperCommand):
    """A command whose usage line writes arguments plainly (``CHECKPOINT``, ``A B``).

    Typer puts required ones in braces, which read as a set of choices.
    """

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line's pieces, required arguments without typer's braces."""
        pieces = []
        for piece in super().collect_usage_pieces(ctx):
            match = re.match(r"^\{(.*)\}((?:\.\.\.)?)$", piece)
            if match:
                inner, dots = match.groups()
                piece = inner if inner.endswith("...") else inner + dots
            pieces.append(piece)
        return pieces


def command(name: str) -> Any:
    """Register a command (with :class:`PlainUsage`): ``command("analyze")(analyze)``."""
    return app.command(name, cls=PlainUsage)


def _argv(args: Any) -> list[str]:
    return [str(a) for a in (sys.argv[1:] if args is None else args)]


def _with_format_aliases(argv: list[str]) -> list[str]:
    """``argv`` with ``--format``/``-f`` aliases spelled as their choices.

    Returns:
        A copy of ``argv`` where each format value that is an alias (``md``, any case) reads
        as its choice (``markdown``; :data:`spectracli.options.FORMAT_ALIASES`).
    """
    from spectracli.options import FORMAT_ALIASES

    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("--format", "-f") and i + 1 < len(out):
            out[i + 1] = FORMAT_ALIASES.get(out[i + 1].lower(), out[i + 1])
        elif arg.startswith("--format="):
            value = arg.split("=", 1)[1]
            out[i] = "--format=" + FORMAT_ALIASES.get(value.lower(), value)
        elif arg.startswith("-f") and len(arg) > 2 and not arg.startswith("--"):
            out[i] = "-f" + FORMAT_ALIASES.get(arg[2:].lower(), arg[2:])
    return out


def _command_of(args: Any) -> str:
    return next((a for a in _argv(args) if not a.startswith("-")), "")


app = typer.Typer(
    cls=OneLineErrors,
    name="spectracli",
    help="Spectral diagnostics of neural networks: weight ESDs (with FARMS), heavy-tail fits, "
    "Hessian spectra, and a CI gate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"spectracli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Spectral diagnostics of neural networks."""


# Command registration: one line per command module (imports stay light: no torch here).
from spectracli.cli import analyze as _analyze  # noqa: E402

command("analyze")(_analyze.analyze)
from spectracli.cli import gate as _gate  # noqa: E402

command("gate")(_gate.gate)
command("baseline")(_gate.baseline)

from spectracli.cli import compare as _compare  # noqa: E402
from spectracli.cli import plot as _plot  # noqa: E402
from spectracli.cli import report as _report  # noqa: E402

command("report")(_report.report)
command("plot")(_plot.plot)
command("compare")(_compare.compare)

from spectracli.cli import hessian as _hessian  # noqa: E402

command("hessian")(_hessian.hessian)

from spectracli.cli import track as _track  # noqa: E402

command("track")(_track.track)


def main() -> None:
    """The ``spectracli`` console script."""
    # OpenMP threads that spin while waiting made the eigen solves 10-20x slower on a busy
    # 2-core machine and 13% slower on a quiet one (docs/benchmarks.md). It must be set before
    # torch (and its OpenMP runtime) loads; commands import torch lazily, so here is early enough.
    # A user's own (non-empty) setting wins.
    if not os.environ.get("OMP_WAIT_POLICY"):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    app()
