"""A minimal value-object base: equality and repr from ``__slots__``.

``dataclasses`` costs about 10 ms to import, paid at every container start; the
few records dind needs get the two methods that matter from here instead.
"""

from __future__ import annotations


class Record:
    """Compare and print instances field by field (the fields are ``__slots__``)."""

    __slots__ = ()

    def _names(self) -> tuple[str, ...]:
        """Slot names of the whole class chain, base classes first."""
        names: list[str] = []
        for cls in reversed(type(self).__mro__):
            names.extend(cls.__dict__.get("__slots__", ()))
        return tuple(names)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._names())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._names())
        return f"{type(self).__name__}({args})"
