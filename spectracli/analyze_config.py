"""The analyze settings, defined once: :class:`AnalyzeConfig` and what each field may be.

Every field carries a :class:`Setting` (its ``dataclasses.field`` metadata): the TOML types a
config file may give it, what it must be in words, the check of a value, and the library's
rule. :meth:`AnalyzeConfig.validate` (the Python API and the CLI) and the config-file
validation (``gate/rules.validate_analyze``) both read them, and the choices come from the
``str`` Enums of :mod:`spectracli.options`, so a new setting or a new choice is written here
once. This module imports neither torch nor numpy: a config file is checked without them.

Example::

    >>> from spectracli.analyze_config import AnalyzeConfig, file_settings
    >>> AnalyzeConfig(min_tail=1).validate()
    Traceback (most recent call last):
        ...
    spectracli.errors.SpectraError: min_tail must be at least 2, got 1
    >>> file_settings()["fit"].expected
    '"ks", "median" or "peak"'
    >>> "trust_pickle" in file_settings()  # unpickling is decided on the command line
    False
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spectracli.errors import SpectraError
from spectracli.options import (
    Choice,
    ConvView,
    Dtype,
    FarmsGrid,
    FarmsPrecision,
    FitMethod,
    check_device,
)

if TYPE_CHECKING:  # pragma: no cover - annotations only
    import torch

    from spectracli.io.base import Checkpoint
    from spectracli.layers import LayerOptions


@dataclass(frozen=True)
class Setting:
    """How one :class:`AnalyzeConfig` field is checked.

    Attributes:
        types: the TOML types a config file may give (``bool`` is never an ``int`` here).
        expected: what a value must be, in words, for config-file messages
            (``an integer >= 2``).
        check: the test of a value of those types (None: any value of the types).
        rule: the library's own rule, for ``<field> must be <rule>, got <value>`` from
            :meth:`AnalyzeConfig.validate` (None: the library checks it elsewhere, or not).
        choice: the options Enum of a choice field (files accept any case; the library the
            exact values).
        in_files: False for settings a config file may not carry.
    """

    types: type | tuple[type, ...]
    expected: str
    check: Callable[[Any], bool] | None = None
    rule: str | None = None
    choice: type[Choice] | None = None
    in_files: bool = True

    def accepts(self, value: Any) -> bool:
        """Whether a config-file value is of the types and passes the check."""
        ok = isinstance(value, self.types) and not (
            isinstance(value, bool) and self.types is not bool)
        return ok and (self.check is None or bool(self.check(value)))


def _quoted(choice: type[Choice]) -> str:
    vals = [f'"{v}"' for v in choice.values()]
    return ", ".join(vals[:-1]) + f" or {vals[-1]}"


def _setting(default: Any = None, *, factory: Callable[[], Any] | None = None,
             **spec: Any) -> Any:
    meta = {"setting": Setting(**spec)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _choice(default: str, choice: type[Choice]) -> Any:
    return _setting(default, types=str, expected=_quoted(choice),
                    check=lambda v: v.lower() in choice.values(), choice=choice)


def _is_device(value: str) -> bool:
    try:
        check_device(value)
    except SpectraError:
        return False
    return True


def _globs(value: list) -> bool:
    return all(isinstance(x, str) for x in value)


_POSITIVE_INT = {"types": int, "expected": "a positive integer", "check": lambda v: v > 0}
_POSITIVE_NUMBER = {"types": (int, float), "expected": "a positive finite number",
                    "check": lambda v: 0 < v < math.inf}  # inf, nan: no grid can be laid
_BOOL = {"types": bool, "expected": "true or false"}


@dataclass
class AnalyzeConfig:
    """Every option that changes a number in the report (recorded in ``settings``).

    The fields mean what the ``analyze`` options of the same name mean (docs/metrics.md,
    docs/ci.md); each field's :class:`Setting` says what it may be.
    """

    fit: str = _choice("ks", FitMethod)  # xmin rule: a FitMethod value
    min_tail: int = _setting(10, types=int, expected="an integer >= 2",
                             check=lambda v: v >= 2, rule="at least 2")
    farms: bool = _setting(True, **_BOOL)
    farms_window: int = _setting(2000, **_POSITIVE_INT)
    farms_ratio: float = _setting(1.0, **_POSITIVE_NUMBER)
    farms_steps: int = _setting(10, **_POSITIVE_INT)  # offsets per dimension (released grid)
    farms_grid: str = _choice("bounded", FarmsGrid)  # spectracli.spectral.farms
    # bounded grid: window solves at most this x the plain ESD's
    farms_budget: float = _setting(1.0, **_POSITIVE_NUMBER, rule="a finite number > 0")
    # window eigen solves: auto (float32 where its bound allows), float64 or float32
    farms_precision: str = _choice("auto", FarmsPrecision)
    min_size: int = _setting(10, **_POSITIVE_INT, rule="at least 1")
    include: Sequence[str] = _setting((), types=list, expected="a list of glob strings",
                                      check=_globs)
    exclude: Sequence[str] = _setting((), types=list, expected="a list of glob strings",
                                      check=_globs)
    normalize: bool = _setting(False, **_BOOL)
    # checked by spectracli.device.resolve_device in the library
    device: str = _setting("auto", types=str, expected='"auto", "cpu", "cuda" or "cuda:N"',
                           check=_is_device)
    dtype: str = _choice("float64", Dtype)
    threads: int | None = _setting(None, **_POSITIVE_INT, rule="at least 1")
    # unpickling is a command-line decision, never one a file in a repository can switch on
    trust_pickle: bool = _setting(False, **_BOOL, in_files=False)
    base: str | Path | Checkpoint | None = _setting(  # a path, or an open checkpoint
        None, types=str, expected="a checkpoint path")
    store_esd: bool = _setting(True, **_BOOL, in_files=False)  # an output choice
    ci_level: float = _setting(0.95, types=(int, float), expected="a number in (0, 1)",
                               check=lambda v: 0 < v < 1, rule="in (0, 1)")
    # bootstrap resamples per fit; 0: the analytic interval
    ci_resamples: int = _setting(200, types=int, expected="0 or an integer >= 10",
                                 check=lambda v: v == 0 or v >= 10,
                                 rule="0 (analytic interval) or at least 10")
    conv_view: str = _choice("auto", ConvView)  # spectracli.layers.conv
    split: bool = _setting(True, **_BOOL)  # cut fused tensors (q/k/v, gates, gate/up)
    # branch, tag or commit when the path is a Hugging Face id
    revision: str | None = _setting(None, types=str,
                                    expected="a branch, tag or commit (for a Hugging Face id)")

    def layer_options(self) -> LayerOptions:
        """The settings that change which matrices the layer model builds."""
        from spectracli.layers import LayerOptions

        return LayerOptions(min_size=self.min_size, conv_view=self.conv_view, split=self.split)

    def validate(self) -> None:
        """Check every option (choices as spectracli.options spells them, exactly).

        Raises:
            SpectraError: (a ``ValueError``) naming the first bad option by its field name.
        """
        if (self.farms_window < 2 or self.farms_steps < 1
                or not 0 < self.farms_ratio < math.inf):
            raise SpectraError(
                "FARMS needs farms_window >= 2, farms_steps >= 1 and a finite farms_ratio > 0, got "
                f"{self.farms_window}, {self.farms_steps}, {self.farms_ratio}",
                params=("farms_window", "farms_steps", "farms_ratio"),
            )
        for f in fields(self):
            spec: Setting = f.metadata["setting"]
            value = getattr(self, f.name)
            if spec.choice is not None:
                setattr(self, f.name, spec.choice.check(value, f.name))
            elif spec.rule is not None and value is not None and not spec.check(value):
                raise SpectraError(f"{f.name} must be {spec.rule}, got {value}")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype of the eigen solves (``dtype``)."""
        import torch

        return torch.float64 if self.dtype == "float64" else torch.float32

    def settings(self, device: str) -> dict:
        """The report's ``settings``.

        Args:
            device: the device the solves ran on, as resolved.

        Returns:
            Every field (``base`` as its path), ``device`` as resolved, and the ESD convention.
        """
        # Not asdict: it deep-copies, and ``base`` may be an open (in-memory) checkpoint.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(include=list(self.include), exclude=list(self.exclude), device=device)
        out["base"] = None if self.base is None else str(getattr(self.base, "path", self.base))
        out["esd_convention"] = "lambda = sigma^2 of W" + (" / max(m, n)" if self.normalize else "")
        return out


def file_settings() -> dict[str, Setting]:
    """The settings a config file's ``[analyze]`` table may carry, in field order."""
    return {
        f.name: f.metadata["setting"]
        for f in fields(AnalyzeConfig)
        if f.metadata["setting"].in_files
    }
