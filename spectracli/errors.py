"""The library's exceptions: standard Python exception types, messages in the library's words.

Every error spectracli raises for bad input is a :class:`SpectraError`, which is a
``ValueError``; a missing file is also a ``FileNotFoundError`` and an argument of the wrong type
also a ``TypeError``, so ``except ValueError`` (or ``FileNotFoundError``, ``TypeError``) in a
notebook or a script catches what it should. Messages are one line that say what was expected
and what came, naming parameters as the Python API spells them::

    >>> from spectracli.analyze import AnalyzeConfig
    >>> AnalyzeConfig(min_tail=1).validate()
    Traceback (most recent call last):
        ...
    spectracli.errors.SpectraError: min_tail must be at least 2, got 1

``params`` lists the parameters a message names, so a client can say them in its own words: the
CLI prints them as its flags (``--min-tail must be at least 2, got 1``), with its one table of
parameter names to flags in ``spectracli.cli.common`` (``PARAM_FLAGS``).
"""

from __future__ import annotations

from collections.abc import Iterable


class SpectraError(ValueError):
    """A user-facing failure: bad input, unreadable file, invalid option.

    Args:
        message: one line, in the library's words (parameter names, not CLI flags).
        params: the parameter names the message speaks of, e.g. ``("min_tail",)``; when empty,
            a message of the form ``"<name> must be ..."`` is taken to name ``<name>``.
    """

    def __init__(self, message: str = "", *, params: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.params: tuple[str, ...] = tuple(params)


class SpectraTypeError(SpectraError, TypeError):
    """An argument of a type the function does not take (e.g. ``analyze(42)``)."""


class CheckpointError(SpectraError):
    """A checkpoint that cannot be read (missing, corrupt, unsafe, unknown format)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path (or Hugging Face id) that does not exist."""


class NoWeightMatricesError(CheckpointError):
    """A checkpoint read without error that holds no weight matrix to analyse.

    Every tensor is skipped (1-D norm scales and biases, integer buffers, matrices below
    ``min_size``...); the message counts them by reason. ``spectracli track`` lists such a
    checkpoint as not read and goes on with the others.
    """


class UnsafeReferenceError(CheckpointError):
    """A file named by a checkpoint's manifest that lies outside the checkpoint's directory.

    The manifest is a sharded index's ``weight_map`` or an ONNX tensor's external data location;
    outside means an absolute path, a ``..`` that climbs out, or a symlink that leads out.
    Refused before the file is opened.
    """


class ReportError(SpectraError):
    """A JSON file that is not a spectracli report, or one of an unsupported schema version."""
