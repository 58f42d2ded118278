"""Pieces every command shares: error handling, consoles, output writing, device choice."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer

from spectracli.errors import SpectraError
from spectracli.fileio import write_text_atomic

F = TypeVar("F", bound=Callable[..., Any])

# One wording for every command that reads checkpoints.
TRUST_PICKLE_HELP = (
    "Unpickle with weights_only=False, which runs code from the file: only for files you "
    "trust, and needed only when a tensor can only be built by the file's own classes (foreign "
    "objects beside the weights are read as inert placeholders without it)."
)

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``spectracli: error: message`` as one line on stderr and return the Exit to raise."""
    line = " ".join(str(message).split())
    # Under torchrun every rank meets a usage error (they share argv and gather their failures,
    # spectracli.distributed): rank 0 alone says it, once.
    if code != EXIT_USAGE or os.environ.get("RANK", "0") in ("", "0"):
        print(f"spectracli: error: {line}", file=sys.stderr)
    return typer.Exit(code=code)


# The one table from library parameter names to CLI flags, for the names the default rule
# (``min_tail`` -> ``--min-tail``) does not give. Library errors name parameters as the Python
# API spells them (spectracli/errors.py); every command prints them through `in_cli_words`.
# ``name=True`` / ``name=False`` in a message become the flag / its negative form.
PARAM_FLAGS: dict[str, str] = {
    "fmt": "--format",
    "farms": "--farms/--no-farms",
    "store_esd": "--esd/--no-esd",
    "k": "--top-k",
    "source": "CHECKPOINT",
    "path": "CHECKPOINT",
}
_LEADING_PARAM = re.compile(r"^([a-z_][a-z0-9_]*) must be\b")
_BOOL_KEYWORD = re.compile(r"(?<![\w.-])([a-z_][a-z0-9_]*)=(?:True|False)\b")


def flag_for(param: str, value: bool | None = None) -> str:
    """The CLI's spelling of a library parameter (``value`` picks one side of a boolean pair)."""
    flag = PARAM_FLAGS.get(param, "--" + param.replace("_", "-"))
    if value is not None and "/" in flag:
        on, off = flag.split("/", 1)
        return on if value else off
    return flag


@functools.lru_cache(maxsize=1)
def command_parameters() -> frozenset[str]:
    """The parameter names of every registered command (each is an option or argument)."""
    import inspect

    from spectracli.cli.app import app

    names: set[str] = set()
    for info in app.registered_commands:
        if info.callback is not None:
            names.update(inspect.signature(info.callback).parameters)
    return frozenset(names)


def in_cli_words(exc: SpectraError) -> str:
    """A library error's message with the parameters it names written as this CLI's flags.

    Only the parameters the error declares (``exc.params``, or the leading name of a
    ``"<name> must be ..."`` message, or a keyword spelled ``name=True``/``name=False`` that is
    one of the commands' parameters) are rewritten, as whole words.

    Returns:
        The message, e.g. ``top_k must be >= 1`` -> ``--top-k must be >= 1``.
    """
    message = str(exc)
    params = tuple(getattr(exc, "params", ()) or ())
    if not params and (lead := _LEADING_PARAM.match(message)):
        params = (lead.group(1),)
    # a keyword spelled out as Python (``pass trust_pickle=True``) is a parameter when this CLI
    # has it as an option (numpy's ``allow_pickle=False`` in a reader's message is not a flag)
    params += tuple(k for k in dict.fromkeys(_BOOL_KEYWORD.findall(message))
                    if k in command_parameters())
    for param in params:
        name = re.escape(param)
        message = re.sub(
            rf"(?<![\w.-]){name}=(True|False)\b",
            lambda m, p=param: flag_for(p, m.group(1) == "True"),
            message,
        )
        message = re.sub(rf"(?<![\w.-]){name}(?![\w-])", lambda _m, p=param: flag_for(p),
                         message)
    return message


_CHOICE_ERROR = re.compile(r"^(?P<value>.+?) is not one of (?P<choices>.+?)\.?$", re.S)
_HINT = re.compile(r"^Invalid value for (?P<hint>.+?): (?P<rest>.*)$", re.S)


def _typed_value(argv: list[str] | None, names: list[str]) -> str | None:
    """The value given to an option (any of ``names``: ``--x V``, ``--x=V``, ``-x V``)."""
    argv = argv or []
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg[len(name) + 1:]
    return None


_WORDS = {"greater than or equal to": ">=", "less than or equal to": "<=",
          "greater than": ">", "less than": "<", "a valid integer": "an integer",
          "a valid number": "a number", "a valid boolean": "true or false"}


def usage_error_line(exc: Exception, argv: list[str] | None = None) -> str:
    """A typer/click parsing error as one line in the project's words.

    ``Invalid value for '--which': 'middle' is not one of 'largest', 'smallest', 'both'.``
    becomes ``--which must be one of 'largest', 'smallest', 'both'; got 'middle'`` (the
    library's form, spectracli/options.py); every other message keeps its text, on one line,
    with the option named without quotes.

    Returns:
        The line, without the ``spectracli: error:`` prefix.
    """
    fmt = getattr(exc, "format_message", None)
    text = fmt() if callable(fmt) else str(exc)
    text = " ".join(str(text).split())
    match = _HINT.match(text)
    if match:
        names = [n.strip().strip("'\"") for n in match["hint"].split("/")]
        hint = next((n for n in names if n.startswith("--")), names[0])
        rest = re.sub(r"^Value error, ", "", match["rest"])
        choice = _CHOICE_ERROR.match(rest)
        if choice:
            choices = ", ".join(repr(c.strip().strip("'\""))
                                for c in choice["choices"].split(","))
            return f"{hint} must be one of {choices}; got {choice['value']}"
        if rest.startswith("Input should be "):
            need = rest[len("Input should be "):].split(",")[0].rstrip(".")
            for long, short in _WORDS.items():
                need = need.replace(long, short)
            value = _typed_value(argv, names)
            return f"{hint} must be {need}" + (f", got {value!r}" if value is not None else "")
        return f"invalid value for {hint}: {rest.rstrip('.')}"
    return text.rstrip(".")


def handle_errors(fn: F) -> F:
    """Turn library errors into one line and exit code 2; never show a traceback for bad input.

    Unexpected exceptions are bugs: one line and exit code 3, the traceback only with
    ``SPECTRACLI_DEBUG=1``.

    Returns:
        The wrapped command.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SpectraError as exc:
            error = fail(in_cli_words(exc))
            _leave_process_group(exc)
            raise error from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence of the CLI
            if os.environ.get("SPECTRACLI_DEBUG"):
                raise
            raise fail(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set SPECTRACLI_DEBUG=1 for the traceback and please report it)",
                code=EXIT_INTERNAL,
            ) from None

    return wrapper  # type: ignore[return-value]


def _leave_process_group(exc: BaseException) -> None:
    """Under torchrun, leave the group together after a failure every rank learnt of.

    The failure is a ``spectracli.distributed.RankError``; leaving together means no rank is
    killed before rank 0 has printed the one line.
    """
    dist = sys.modules.get("spectracli.distributed")
    if dist is not None and isinstance(exc, dist.RankError):
        with contextlib.suppress(Exception):
            dist.shutdown()


def is_plain_output(stream: Any = None) -> bool:
    """Plain text (no colour, no boxes, no progress bars) when piped or NO_COLOR is set."""
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("NO_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def remaining_seconds(elapsed: float | None, done: float, total: float | None) -> float | None:
    """Time left if the rest goes at the mean rate so far: elapsed x (total - done) / done.

    The mean over the whole run, not rich's recent-window speed: with work units (a modelled
    cost per matrix) the rate is steady, while a 30 s window holds no sample during one long
    matrix (rich then shows no estimate, or a stale one).

    Args:
        elapsed: seconds since the bar started (None before it starts).
        done: work done, in the bar's units.
        total: all the work, in the same units (None when not known yet).

    Returns:
        Seconds left (0 when done), or None before any work is done.
    """
    if elapsed is None or total is None or done <= 0:
        return None
    return max(0.0, elapsed * (total - done) / done)


def _work_eta_column() -> Any:
    """A rich column showing :func:`remaining_seconds` of its task as H:MM:SS."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class WorkRemainingColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            left = remaining_seconds(task.elapsed, task.completed, task.total)
            if left is None:
                return Text("-:--:--", style="progress.remaining")
            minutes, seconds = divmod(round(left), 60)
            hours, minutes = divmod(minutes, 60)
            return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")

    return WorkRemainingColumn()


@contextlib.contextmanager
def terminal_progress(
    description: str, info: bool = False, eta: bool = False, work: bool = False
) -> Iterator[Callable[..., None] | None]:
    """A transient rich progress bar on stderr when it is a terminal.

    ``info=True`` adds a free-text column filled by ``update(info=...)``; ``eta=True`` adds the
    time remaining, estimated by rich from the steps done so far. ``work=True``: the bar's
    completed/total are work units (e.g. modelled flops), a ``count`` text column filled by
    ``update(count=...)`` replaces the step counter, and the time remaining is the mean rate
    so far (:func:`remaining_seconds`).

    Yields:
        ``update(**fields)`` for ``Progress.update`` of its one task; ``None`` when piped or
        ``NO_COLOR`` is set.
    """
    if is_plain_output(sys.stderr):
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    counter = TextColumn("{task.fields[count]}") if work else MofNCompleteColumn()
    columns = [TextColumn("{task.description}"), BarColumn(), counter]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    columns.append(TimeElapsedColumn())
    if eta or work:
        columns += [TextColumn("eta"), _work_eta_column() if work else TimeRemainingColumn()]
    fields = {**({"info": ""} if info else {}), **({"count": ""} if work else {})}
    with Progress(*columns, console=stderr_console(), transient=True) as bar:
        task = bar.add_task(description, total=None, **fields)
        yield functools.partial(bar.update, task)


def stdout_console():
    """A rich console on stdout: plain (no colour, 200 columns) when piped."""
    from rich.console import Console

    plain = is_plain_output(sys.stdout)
    return Console(
        file=sys.stdout,
        no_color=plain,
        highlight=False,
        soft_wrap=False,
        width=None if not plain else 200,
    )


def stderr_console():
    """A rich console on stderr, without colour when piped or ``NO_COLOR`` is set."""
    from rich.console import Console

    return Console(file=sys.stderr, no_color=is_plain_output(sys.stderr), highlight=False)


def emit(text: str, output: Path | None) -> None:
    """Write machine output to ``output`` atomically, or to stdout when no file is given."""
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    else:
        write_text_atomic(output, text if text.endswith("\n") else text + "\n")


def check_outputs(files: dict[str, Path | None] | None = None,
                  dirs: dict[str, Path | None] | None = None) -> None:
    """Fail before the work starts when an output cannot be written (every command calls it).

    Each file must be creatable (its directory exists and takes a new file; it is not a
    directory), each directory creatable or writable: the check ``emit`` and the atomic writers
    would otherwise make only at the end, after minutes of analysis. Under torchrun only rank 0
    writes, so only rank 0 checks.

    Args:
        files: ``{flag: path}`` of the file outputs given (None: not given).
        dirs: ``{flag: path}`` of the directory outputs given.

    Raises:
        SpectraError: one line naming the flag and what is wrong (exit code 2).
    """
    from spectracli.fileio import check_writable, check_writable_dir

    if os.environ.get("RANK", "0") not in ("", "0"):
        return
    checks = [(flag, p, check_writable) for flag, p in (files or {}).items()]
    checks += [(flag, p, check_writable_dir) for flag, p in (dirs or {}).items()]
    for flag, path, check in checks:
        if path is None:
            continue
        try:
            check(path)
        except SpectraError as exc:
            raise SpectraError(f"{flag}: {exc}") from None


# One definition per shared option: the same name means the same thing in every command.
def output_option() -> Any:
    """``--output/-o FILE``: machine output to a file, written atomically."""
    return typer.Option(None, "--output", "-o", metavar="FILE",
                        help="Write to this file (atomically) instead of stdout.")


def device_option(default: str | None = "auto", note: str = "") -> Any:
    """``--device``: auto, cpu, cuda or cuda:N (``note`` ends the help text)."""
    return typer.Option(default, "--device", metavar="auto|cpu|cuda[:N]",
                        help="Where the math runs: auto (CUDA when torch sees a GPU), cpu, cuda "
                        f"or cuda:N.{note}")


def verbose_option() -> Any:
    """``--verbose/-v``: every warning and skipped tensor instead of counts."""
    return typer.Option(False, "--verbose", "-v",
                        help="List every warning and every skipped tensor (default: counts).")


def choice_option(default: Any, *names: str, help: str, **kw: Any) -> Any:
    """An option whose type is a :mod:`spectracli.options` Enum.

    Returns:
        The typer option: choices shown in --help, accepted in any case.
    """
    return typer.Option(default, *names, case_sensitive=False, help=help, **kw)


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(callable(isatty) and isatty())


def refuse_binary_to_terminal(fmt: str, output: Path | None) -> None:
    """``--format html`` (embedded base64 figures) to a terminal floods it: ask for ``-o``."""
    from spectracli.options import BINARY_FORMATS

    if output is None and str(fmt) in BINARY_FORMATS and stdout_is_terminal():
        raise fail(f"--format {fmt} writes a file with embedded figures: pass --output "
                   f"FILE (e.g. -o report.{fmt}) or pipe it")


CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz", ".gguf", ".onnx")


def load_saved_report(path: Path, command: str, instead: str,
                      save: str | None = None) -> dict[str, Any]:
    """A saved JSON report for ``report``/``plot``; a checkpoint is refused.

    Returns:
        The report dict.

    Raises:
        typer.Exit: ``path`` is a checkpoint (exit 2; the message names the command to run
            instead: ``instead``, with ``{path}`` filled in, and when given the command that
            saves a report, ``save``; each quoted on its own).
        SpectraError: ``path`` is not a readable report.
    """  # noqa: DOC501 - the typer.Exit comes from fail(), which ruff reads as an exception
    from spectracli.results import load_report, looks_like_report

    if not looks_like_report(path) and (
        path.is_dir() or path.suffix.lower() in CHECKPOINT_SUFFIXES
    ):
        shown = os.path.normpath(str(path))
        also = f" (or save a report first: '{save.format(path=shown)}')" if save else ""
        raise fail(f"{shown} is a checkpoint; 'spectracli {command}' reads a saved JSON report. "
                   f"Run '{instead.format(path=shown)}' instead{also}")
    return load_report(path)
