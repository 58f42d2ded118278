"""Attribute access to report JSON: ``layer.alpha`` reads ``layer.to_dict()["alpha"]``.

Result objects (analyze's layers and report, FARMS results) and the JSON objects of a loaded
report read their keys as attributes, so a new field of the report is an attribute without
further code. The module imports nothing of the package, so every room may use it
(docs/design.md).

Example::

    >>> from spectracli.records import Record
    >>> layer = Record({"name": "fc1.weight", "farms": {"alpha": 2.5}})
    >>> layer.farms.alpha
    2.5
"""

from __future__ import annotations

from typing import Any


class Record(dict):
    """A JSON object of a report with attribute access to its keys.

    ``rec.alpha`` is ``rec["alpha"]``, nested objects included (``rec.farms.alpha``).
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        """The value of key ``name``.

        Returns:
            The value, its dicts as records.

        Raises:
            AttributeError: no such key; the message lists the keys.
        """
        try:
            return as_record(self[name])
        except KeyError:
            raise AttributeError(f"no field {name!r}; fields: {', '.join(self)}") from None

    def __dir__(self) -> list[str]:
        """The dict's attributes and the string keys (for completion in a notebook)."""
        return [*super().__dir__(), *(k for k in self if isinstance(k, str))]


def as_record(value: Any) -> Any:
    """Dicts (also inside lists) as :class:`Record`; anything else as it is.

    Args:
        value: a JSON value.

    Returns:
        ``value`` with its dicts (at the top and in a list) wrapped as records.
    """
    if isinstance(value, dict) and not isinstance(value, Record):
        return Record(value)
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return [as_record(v) for v in value]
    return value


class JsonFields:
    """Attribute access mirrors the JSON of ``to_dict()``.

    Every key of ``to_dict()`` that is not an attribute already is read from it
    (``layer.alpha``, ``layer.farms.alpha``), so a new field of the report is an attribute
    without further code.
    """

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        """The JSON form.

        Raises:
            NotImplementedError: in this base class.
        """
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        """The JSON key ``name``.

        Returns:
            The value of the key in ``to_dict()``, its dicts as records.

        Raises:
            AttributeError: a private name, or a key the JSON does not have.
        """
        if name.startswith("_"):  # copy, pickle and dataclass machinery: never the JSON
            raise AttributeError(name)
        data = self.to_dict()
        if name in data:
            return as_record(data[name])
        raise AttributeError(
            f"{type(self).__name__} has no field {name!r}; JSON keys: {', '.join(data)}"
        )

    def __dir__(self) -> list[str]:
        """The attributes and the JSON keys."""
        return sorted({*super().__dir__(), *self.to_dict()})
