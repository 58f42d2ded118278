"""Errors that the CLI turns into one line on stderr and exit code 2."""


class SpectraError(Exception):
    """A user-facing failure: bad input, unreadable file, invalid option.

    The message is one line that says what was expected and what came; the CLI prints it
    without a traceback and exits with code 2.
    """


class CheckpointError(SpectraError):
    """A checkpoint that cannot be read (missing, corrupt, unsafe, unknown format)."""


class ReportError(SpectraError):
    """A JSON file that is not a spectracli report, or one of an unsupported schema version."""
