"""Every choice an option can take, defined once.

Each set of choices is a ``str`` Enum: the library validates with it (:meth:`Choice.parse`,
exact values, as the Python API spells them), the config-file validation (``gate/rules.py``)
checks with it, and typer shows its values in ``--help`` and accepts them in any case on the
command line (``-f JSON``). Members compare equal to their string
values (``FitMethod.KS == "ks"``), format as them (``f"{FitMethod.KS}"`` is ``ks``) and
serialise as them in JSON, so a result built from a member or from a plain string is the same.

Example::

    >>> from spectracli.options import FitMethod
    >>> FitMethod.parse("median")
    <FitMethod.MEDIAN: 'median'>
    >>> FitMethod.parse("mle", "fit")
    Traceback (most recent call last):
        ...
    spectracli.errors.SpectraError: fit must be one of 'ks', 'median', 'peak'; got 'mle'
    >>> FitMethod.values()
    ('ks', 'median', 'peak')
    >>> f"{FitMethod.PEAK}"
    'peak'
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from spectracli.errors import SpectraError

C = TypeVar("C", bound="Choice")
T = TypeVar("T")


class Choice(str, Enum):
    """A ``str`` Enum whose members print, format and compare as their values."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The accepted spellings, in definition order."""
        return tuple(m.value for m in cls)

    @classmethod
    def text(cls, sep: str = ", ", last: str | None = None) -> str:
        """The values joined for a message: ``ks, median, peak`` (or ``ks, median or peak``)."""
        vals = cls.values()
        if last is None or len(vals) < 2:
            return sep.join(vals)
        return f"{sep.join(vals[:-1])} {last} {vals[-1]}"

    @classmethod
    def parse(cls: type[C], value: Any, name: str | None = None,
              case_sensitive: bool = True) -> C:
        """The member spelled ``value`` (a member passes through).

        Returns:
            The member.

        Raises:
            SpectraError: ``value`` is none of the values; the message names ``name`` (the
                parameter, e.g. ``fit``; in ``params`` for the CLI to say as its flag), lists
                the values and quotes what came.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value if case_sensitive else value.strip().lower()
            for member in cls:
                if member.value == key:
                    return member
        label = name or cls.__name__
        raise SpectraError(
            f"{label} must be one of {', '.join(map(repr, cls.values()))}; got {value!r}",
            params=(name,) if name else (),
        )

    @classmethod
    def check(cls, value: Any, name: str | None = None, case_sensitive: bool = True) -> str:
        """:meth:`parse`, returned as the plain ``str`` value (what results store)."""
        return cls.parse(value, name, case_sensitive).value

    @classmethod
    def entry(cls, table: Mapping[Any, T], value: Any, what: str) -> T:
        """The entry of ``value`` in a dispatch table keyed by this choice's members.

        Args:
            table: member -> implementation (an xmin rule, a resample path, ...).
            value: a member or its string value.
            what: what an entry is, for the message (``"xmin rule for method"``).

        Returns:
            ``table``'s entry for ``value``'s member.

        Raises:
            ValueError: ``value`` is not a member, or ``table`` has no entry for it (a member
                added without its entry raises instead of running as another one).
        """
        try:
            member = cls(value)
        except ValueError:
            member = None
        found = table.get(member) if member is not None else None
        if found is None:
            raise ValueError(f"no {what} {value!r} (known: {', '.join(m.value for m in table)})")
        return found


class FitMethod(Choice):
    """The xmin rule of the power-law fit (docs/metrics.md)."""

    KS = "ks"  # Clauset scan minimising the KS distance, with a minimum tail
    MEDIAN = "median"  # xmin = the median eigenvalue (TempBalance's PL_Alpha_Hill)
    PEAK = "peak"  # around the log-histogram peak (AlphaPruning)


class Dtype(Choice):
    """Precision of the eigen solves (analyze) or of the HVPs (hessian)."""

    FLOAT64 = "float64"
    FLOAT32 = "float32"


class Device(Choice):
    """Where the math runs; ``cuda:N`` names one GPU (see :func:`check_device`)."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def check_device(value: Any, name: str = "device") -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, in lower case (any case accepted).

    A ``torch.device`` (from Python: ``device=torch.device("cuda", 1)``) counts as its name.

    Returns:
        The device string in lower case.

    Raises:
        SpectraError: anything else.
    """
    torch = sys.modules.get("torch")  # a torch.device exists only once torch is loaded
    if torch is not None and isinstance(value, torch.device):
        value = str(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in Device.values():
            return low
        if low.startswith("cuda:") and low[5:].isdigit():
            return low
    names = ", ".join(map(repr, Device.values()))
    raise SpectraError(f"{name} must be {names} or 'cuda:N'; got {value!r}", params=(name,))


class Which(Choice):
    """Which end of the Hessian spectrum Lanczos returns."""

    LARGEST = "largest"
    SMALLEST = "smallest"
    BOTH = "both"


class Operator(Choice):
    """The curvature matrix: the Hessian or the generalized Gauss-Newton."""

    HESSIAN = "hessian"
    GGN = "ggn"


class HvpMode(Choice):
    """How a Hessian-vector product is differentiated (docs/hessian.md)."""

    REVERSE_OVER_REVERSE = "reverse-over-reverse"
    FORWARD_OVER_REVERSE = "forward-over-reverse"


class BuiltinLoss(Choice):
    """The built-in losses of the Hessian.

    A ``file.py:callable`` is accepted beside them; spectracli/hessian/losses.py defines them.
    """

    CROSS_ENTROPY = "cross_entropy"
    TOKEN_CROSS_ENTROPY = "token_cross_entropy"
    MSE = "mse"
    MODEL = "model"


class Blocks(Choice):
    """Diagonal blocks of the Hessian, one per module or per parameter tensor."""

    MODULE = "module"
    PARAMETER = "parameter"


class ConvView(Choice):
    """How a conv kernel (out, in, *k) is read as matrices (spectracli.layers.conv)."""

    AUTO = "auto"  # unfold depthwise kernels, RGB stems and slices below min_size
    SLICES = "slices"  # prod(k) slices of (out, in)
    UNFOLD = "unfold"  # one (out, in * prod(k)) matrix


class FarmsGrid(Choice):
    """How FARMS lays its windows on a matrix (spectracli.spectral.farms)."""

    BOUNDED = "bounded"  # released windows, as many as a cost budget allows
    RELEASED = "released"  # the released code's steps x steps overlapping grid


class FarmsPrecision(Choice):
    """Precision of the FARMS window eigen solves (spectracli.spectral.farms)."""

    AUTO = "auto"  # float32 where its error bound leaves alpha unchanged, else float64
    FLOAT64 = "float64"
    FLOAT32 = "float32"


class ImageFormat(Choice):
    """Figure files."""

    PNG = "png"
    SVG = "svg"


class ReportFormat(Choice):
    """Every rendering of an analyze report (``table`` is the terminal/plain-text table)."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"
    HTML = "html"


class CompareFormat(Choice):
    """Renderings of a comparison of two reports."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


class GateFormat(Choice):
    """Renderings of gate findings (``-o FILE`` with ``table`` writes Markdown)."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


class HessianFormat(Choice):
    """Renderings of a Hessian result."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


# Other spellings of --format values that users type (``-f md``), mapped to the one value.
FORMAT_ALIASES = {"md": "markdown"}

# Formats that are not plain text on a terminal: refused without --output.
BINARY_FORMATS = frozenset({"html"})
